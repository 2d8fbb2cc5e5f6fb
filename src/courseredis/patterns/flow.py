"""One implementation of each pattern's Redis logic, run by a sync or an asyncio driver.

A pattern's logic is a generator (a *flow*) that yields what it needs done (a command, a
Lua script, a batch, a pause, a call to the caller's loader) and receives the result, or
has the error thrown in. `run_sync` and `run_async` execute the same flow with a sync or
an asyncio client, so the two APIs cannot drift apart: only the I/O differs.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from redis.exceptions import NoScriptError

from courseredis import keys
from courseredis.connection import AsyncClient, SyncClient
from courseredis.patterns.evalsha import (
    evalsha,
    evalsha_async,
    queue_evalsha,
    redo_missing,
    redo_missing_async,
)
from courseredis.patterns.lua import LuaScript

T = TypeVar("T")


@dataclass(frozen=True)
class Command:
    """One Redis command; in a cluster it goes to the node owning its key.

    `options` go to redis-py's reply parser (e.g. `get=True` for `SET ... GET`, whose
    reply is the old value rather than OK).
    """

    args: tuple[Any, ...]
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Script:
    """One Lua script call (EVALSHA, falling back to EVAL when the node lacks the script)."""

    script: LuaScript
    keys: tuple[str, ...]
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Batch:
    """Commands sent together in one round trip (one pipeline per node on a cluster).

    Not a transaction: each result is the command's reply or its exception, in order.
    """

    ops: tuple[Command | Script, ...]


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Call:
    """Call a function of the caller's (a loader); the async driver awaits what it returns."""

    function: Callable[[], Any]


Op: TypeAlias = Command | Script | Batch | Sleep | Call
Flow: TypeAlias = Generator[Op, Any, T]


# Deadlines use the monotonic clock: wall-clock jumps must not stretch a wait.
monotonic = time.monotonic


# --- sync -------------------------------------------------------------------------------------


def _script_sync(client: SyncClient, op: Script) -> Any:
    return evalsha(client.execute_command, op.script, op.keys, op.args)


def _queue(pipe: Any, op: Command | Script) -> None:
    if isinstance(op, Command):
        pipe.execute_command(*op.args, **dict(op.options))
    else:
        queue_evalsha(pipe, op)


def _batch_sync(client: SyncClient, batch: Batch) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for op in batch.ops:
        _queue(pipe, op)
    results: list[Any] = pipe.execute(raise_on_error=False)
    redo_missing(client.execute_command, batch.ops, results)
    return results


def _execute_sync(client: SyncClient, op: Op) -> Any:
    # type() identity rather than isinstance: the ops are final, and this runs for each one.
    if type(op) is Command:
        if op.options:
            return client.execute_command(*op.args, **dict(op.options))  # type: ignore[no-untyped-call]
        return client.execute_command(*op.args)  # type: ignore[no-untyped-call]
    if type(op) is Script:
        return _script_sync(client, op)
    if type(op) is Batch:
        return _batch_sync(client, op)
    if type(op) is Sleep:
        time.sleep(op.seconds)
        return None
    assert type(op) is Call
    result = op.function()
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()  # never awaited: close it, or Python warns at collection
        raise TypeError("a sync API was given an async loader; use the asyncio API")
    return result


def execute_sync(client: SyncClient, op: Op) -> Any:
    """Run one operation (say a Batch assembled from several patterns) outside a flow."""
    return _execute_sync(client, op)


def run_sync(client: SyncClient, flow: Flow[T]) -> T:
    try:
        op = next(flow)  # before touching the client: a flow may refuse its input first
        # Commands and scripts, nearly every op, skip the general dispatch: a few Python
        # calls per op are a visible share of a loopback round trip's client CPU.
        execute: Any = client.execute_command
        while True:
            try:
                if type(op) is Command:
                    if op.options:
                        result = execute(*op.args, **dict(op.options))
                    else:
                        result = execute(*op.args)
                elif type(op) is Script:
                    result = evalsha(execute, op.script, op.keys, op.args)
                else:
                    result = _execute_sync(client, op)
            except Exception as error:  # handed to the flow, which decides
                op = flow.throw(error)
            else:
                op = flow.send(result)
    except StopIteration as stop:
        value: T = stop.value
        return value


# --- asyncio ----------------------------------------------------------------------------------


async def _batch_async(client: AsyncClient, batch: Batch) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for op in batch.ops:
        _queue(pipe, op)
    results: list[Any] = await pipe.execute(raise_on_error=False)
    await redo_missing_async(client.execute_command, batch.ops, results)
    return results


async def _execute_async(client: AsyncClient, op: Op) -> Any:
    if type(op) is Command:
        if op.options:
            return await client.execute_command(*op.args, **dict(op.options))
        return await client.execute_command(*op.args)
    if type(op) is Script:
        return await evalsha_async(client.execute_command, op.script, op.keys, op.args)
    if type(op) is Batch:
        return await _batch_async(client, op)
    if type(op) is Sleep:
        await asyncio.sleep(op.seconds)
        return None
    assert type(op) is Call
    result = op.function()
    if inspect.isawaitable(result):
        return await result
    return result


async def execute_async(client: AsyncClient, op: Op) -> Any:
    """Run one operation (say a Batch assembled from several patterns) outside a flow."""
    return await _execute_async(client, op)


async def run_async(client: AsyncClient, flow: Flow[T]) -> T:
    try:
        op = next(flow)  # before touching the client: a flow may refuse its input first
        # Commands and scripts, nearly every op, are awaited right here (a script as in
        # `evalsha_async`, inlined): with many tasks on one event loop, each coroutine
        # layer per op is CPU the PING baseline does not pay.
        execute = client.execute_command
        while True:
            try:
                if type(op) is Command:
                    if op.options:
                        result = await execute(*op.args, **dict(op.options))
                    else:
                        result = await execute(*op.args)
                elif type(op) is Script:
                    try:
                        result = await execute(
                            "EVALSHA", op.script.sha, len(op.keys), *op.keys, *op.args
                        )
                    except NoScriptError:
                        result = await execute(
                            "EVAL", op.script.source, len(op.keys), *op.keys, *op.args
                        )
                else:
                    result = await _execute_async(client, op)
            except Exception as error:
                op = flow.throw(error)
            else:
                op = flow.send(result)
    except StopIteration as stop:
        value: T = stop.value
        return value


# --- helpers for flows ------------------------------------------------------------------------


def text(value: Any) -> str | None:
    """A reply as text, whatever `decode_responses` the client was built with."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def backoff_delays(
    *, base_s: float, cap_s: float, rng: Callable[[float, float], float]
) -> Generator[float, None, None]:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**n)].

    Jitter spreads contenders that failed together, so they do not retry in lockstep.
    """
    ceiling = base_s
    while True:
        yield rng(0.0, ceiling)
        ceiling = min(cap_s, ceiling * 2)


_REMEMBERED_KEYS = 16384


K = TypeVar("K")


def remembered(build: Callable[[K], T]) -> Callable[[K], T]:
    """`build`, remembering what it returned for string arguments that it accepted.

    For pure builders of what a flow sends (a validated key, the command on it): a hot key
    is then one dict lookup, not a validation plus fresh objects. The ops are frozen, so
    sharing one is safe. At most `_REMEMBERED_KEYS` are kept; when full, the memory starts
    over. Whatever `build` refuses, it refuses each time.
    """
    memo: dict[Any, T] = {}

    def get(argument: K) -> T:
        if type(argument) is not str:
            return build(argument)
        try:
            return memo[argument]
        except KeyError:
            pass
        value = build(argument)
        if len(memo) >= _REMEMBERED_KEYS:
            memo.clear()
        memo[argument] = value
        return value

    return get


def key_checker(*allowed: keys.KeyPattern) -> Callable[[str], None]:
    """`keys.check(key, *allowed)`, `remembered`: a key that passed passes again for free.

    A key's validity never changes, and a service checks the same keys over and over (its
    users' and clients' rate-limit keys, its hot courses). Checking one from scratch is a
    regex match, and for some keys a rebuild through the validators; a remembered key costs
    a dict lookup. A bad key is refused, with the same error, each time.
    """

    def check(key: str) -> None:
        keys.check(key, *allowed)

    return remembered(check)

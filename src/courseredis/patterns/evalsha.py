"""Calling a Lua script by its SHA, with EVAL when the node lacks it: the one copy.

A node's script cache is its own and not replicated: a restarted node, a `SCRIPT FLUSH`
or a replica just promoted answers NOSCRIPT. EVAL then runs the script and caches it on
that node, so the next EVALSHA there finds it.

The callers pass `execute_command` itself, not the client: on the hot path (every rate
limit decision, every flow's script) a client method lookup per call is measurable. For the
same reason `flow.run_async` and `AsyncRateLimiter.hit` inline `evalsha_async`'s two lines
rather than await one more coroutine per op.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableSequence, Sequence
from typing import Any, Protocol, cast

from redis.exceptions import NoScriptError

from courseredis.patterns.lua import LuaScript


class ScriptCall(Protocol):
    """One call of a script: what `flow.Script` holds."""

    @property
    def script(self) -> LuaScript: ...

    @property
    def keys(self) -> tuple[str, ...]: ...

    @property
    def args(self) -> tuple[Any, ...]: ...


def evalsha(
    execute: Callable[..., Any], script: LuaScript, keys: Sequence[str], args: Sequence[Any]
) -> Any:
    """The script's reply through a sync `execute_command`."""
    try:
        return execute("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return execute("EVAL", script.source, len(keys), *keys, *args)


async def evalsha_async(
    execute: Callable[..., Awaitable[Any]],
    script: LuaScript,
    keys: Sequence[str],
    args: Sequence[Any],
) -> Any:
    """The script's reply through an asyncio `execute_command`."""
    try:
        return await execute("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return await execute("EVAL", script.source, len(keys), *keys, *args)


def queue_evalsha(pipe: Any, call: ScriptCall) -> None:
    """Queue the call's EVALSHA on a pipeline; its NOSCRIPT reply is for `redo_missing`.

    As a raw command: redis-py's cluster pipeline blocks its `evalsha()` method, yet routes
    a raw EVALSHA by its first key like any other keyed command.
    """
    pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)


def redo_missing(
    execute: Callable[..., Any], calls: Sequence[object], replies: MutableSequence[Any]
) -> None:
    """Replace each NOSCRIPT among a pipeline's `replies` by its call's reply, alone.

    `calls[i]` is what was queued for `replies[i]`, a `ScriptCall` wherever that reply is
    a NOSCRIPT. The fallback's own failure becomes that reply, as any other command's error
    is in a pipeline: the others' replies (say a revocation check) still stand.
    """
    for i, reply in enumerate(replies):
        if isinstance(reply, NoScriptError):
            call = cast(ScriptCall, calls[i])
            try:
                replies[i] = evalsha(execute, call.script, call.keys, call.args)
            except Exception as error:
                replies[i] = error


async def redo_missing_async(
    execute: Callable[..., Awaitable[Any]],
    calls: Sequence[object],
    replies: MutableSequence[Any],
) -> None:
    """`redo_missing` through an asyncio `execute_command`."""
    for i, reply in enumerate(replies):
        if isinstance(reply, NoScriptError):
            call = cast(ScriptCall, calls[i])
            try:
                replies[i] = await evalsha_async(execute, call.script, call.keys, call.args)
            except Exception as error:
                replies[i] = error

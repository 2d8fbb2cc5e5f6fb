"""Rate limiting: one round trip per decision, several limits at once.

The algorithms, and what each promises, are the records of `courseredis.ratelimit_algorithms`.

Every decision is one Lua call that reads Redis `TIME`, so allowed, remaining, retry-after
and reset are computed on the clock all gateways share, to the millisecond. All the limits
of a policy (say 10 per second and 1000 per hour) live in the one key of their (identity,
route), so they are decided atomically without hash tags and never raise CROSSSLOT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from random import getrandbits
from typing import Any, Literal, NoReturn

from redis.exceptions import NoScriptError

from courseredis import keys
from courseredis.connection import REDIS_UNAVAILABLE, AsyncClient, SyncClient
from courseredis.patterns.evalsha import evalsha
from courseredis.patterns.flow import Script, key_checker
from courseredis.patterns.lua import LuaScript, load

# Algorithm is re-exported: routes and callers name it with the limiter.
from courseredis.ratelimit_algorithms import Algorithm as Algorithm
from courseredis.ratelimit_algorithms import spec

_require_rate_limit_key = key_checker(
    keys.RATE_LIMIT_IP, keys.RATE_LIMIT_USER, keys.RATE_LIMIT_ACCOUNT
)


class RateLimitUnavailable(RuntimeError):
    """Redis could not decide and the policy fails closed: answer 503, not 429 or 200."""


@dataclass(frozen=True)
class Limit:
    limit: int
    window: timedelta
    # Computed once: every decision reads it, and timedelta arithmetic is not free.
    _window_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"a limit is a positive int, not {self.limit!r}")
        if not timedelta(milliseconds=1) <= self.window <= keys.RATE_LIMIT_MAX_WINDOW:
            raise ValueError(
                f"a window is between 1 ms and {keys.RATE_LIMIT_MAX_WINDOW}, not {self.window}"
            )
        object.__setattr__(self, "_window_ms", int(self.window / timedelta(milliseconds=1)))

    @property
    def window_ms(self) -> int:
        return self._window_ms


@dataclass(frozen=True)
class Policy:
    """The limits one route applies to one identity, decided together."""

    limits: tuple[Limit, ...]
    algorithm: Algorithm = Algorithm.SLIDING_LOG
    # Open: admit when Redis cannot answer (availability first, e.g. course reads).
    # Closed: refuse with 503 (protection first, e.g. login against password guessing).
    on_redis_error: Literal["open", "closed"] = "open"
    # Derived once: every decision reads them.
    _script: LuaScript = field(init=False, repr=False, compare=False)
    _args: tuple[int, ...] = field(init=False, repr=False, compare=False)  # (limit, window_ms)*
    _nonce: bool = field(init=False, repr=False, compare=False)
    _argv_of_one: tuple[Any, ...] = field(init=False, repr=False, compare=False)  # cost 1, no nonce
    _max_cost: int = field(init=False, repr=False, compare=False)  # the smallest limit

    def __post_init__(self) -> None:
        if not self.limits:
            raise ValueError("a policy needs at least one limit")
        windows = [limit.window_ms for limit in self.limits]
        if len(set(windows)) != len(windows):
            raise ValueError("two limits of one policy may not share a window")
        flat: list[int] = []
        for limit in self.limits:
            flat += [limit.limit, limit.window_ms]
        algorithm = spec(self.algorithm)
        object.__setattr__(self, "_script", load(algorithm.script))
        object.__setattr__(self, "_nonce", algorithm.nonce)
        object.__setattr__(self, "_args", tuple(flat))
        object.__setattr__(self, "_argv_of_one", (1, "", *flat))
        object.__setattr__(self, "_max_cost", min(limit.limit for limit in self.limits))

    @classmethod
    def of(
        cls,
        *limits: tuple[int, timedelta],
        algorithm: Algorithm = Algorithm.SLIDING_LOG,
        on_redis_error: Literal["open", "closed"] = "open",
    ) -> Policy:
        return cls(tuple(Limit(n, w) for n, w in limits), algorithm, on_redis_error)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int  # of the binding limit: the one with the fewest hits left
    window_ms: int
    remaining: int
    retry_after_ms: int  # 0 when allowed
    reset_ms: int  # until the binding limit is whole again
    degraded: bool = False  # Redis did not answer; decided by the policy's on_redis_error

    def headers(self) -> dict[str, str]:
        """`RateLimit-*` headers (IETF draft) and, when refused, `Retry-After` (seconds)."""
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(-(-self.reset_ms // 1000)),
            "RateLimit-Policy": f"{self.limit};w={-(-self.window_ms // 1000)}",
        }
        if not self.allowed:
            out["Retry-After"] = str(max(1, -(-self.retry_after_ms // 1000)))
        return out


def _argv(key: str, policy: Policy, cost: int) -> tuple[Any, ...]:
    """ARGV of the policy's script for `cost` hits on `key`, once both are checked."""
    _require_rate_limit_key(key)
    if type(cost) is not int or not 0 < cost <= policy._max_cost:
        _refuse_cost(cost, policy)
    if policy._nonce:
        # The nonce keeps members distinct (see the sliding log's script): uniqueness, not
        # secrecy, so the fast `random` (reseeded in forked children) over `secrets`.
        return (cost, f"{getrandbits(32):x}", *policy._args)
    # The others ignore ARGV[2].
    return policy._argv_of_one if cost == 1 else (cost, "", *policy._args)


def _refuse_cost(cost: object, policy: Policy) -> NoReturn:
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
        raise ValueError(f"cost must be a positive int, not {cost!r}")
    raise ValueError(f"cost {cost} exceeds a limit of the policy: it could never pass")


def hit_script(key: str, policy: Policy, cost: int = 1) -> Script:
    """The one Lua call that decides `cost` hits on `key`; for batching with other calls."""
    return Script(policy._script, (key,), _argv(key, policy, cost))


def parse_decision(policy: Policy, reply: Sequence[Any]) -> Decision:
    # Integer replies come back as ints whatever `decode_responses` the client has.
    allowed, remaining, retry_after, reset, binding = reply
    limit = policy.limits[binding - 1]
    return Decision(allowed == 1, limit.limit, limit._window_ms, remaining, retry_after, reset)


def decision_of(policy: Policy, reply: Any) -> Decision:
    """The decision of a batched script's reply, which may be the error it failed with:
    the policy's failure mode for an outage (`REDIS_UNAVAILABLE`), else the error raised:
    an open policy must not quietly stop limiting on a NOPERM."""
    if isinstance(reply, REDIS_UNAVAILABLE):
        return degraded_decision(policy)
    if isinstance(reply, BaseException):
        raise reply
    return parse_decision(policy, reply)


def degraded_decision(policy: Policy) -> Decision:
    """What a policy answers when Redis cannot: admit (open) or raise (closed)."""
    if policy.on_redis_error == "closed":
        raise RateLimitUnavailable("rate limiter unavailable: Redis did not answer")
    first = policy.limits[0]
    return Decision(True, first.limit, first.window_ms, first.limit, 0, 0, degraded=True)


# A decision is a single script call, so `hit` sends it directly instead of running a flow
# (patterns.flow): on loopback the generator and op dispatch cost more than all the other
# Python around the call. Everything but the I/O (arguments, reply, failure policy) is the
# shared functions above; the sync and asyncio `hit` differ only in `await`, as flow's own
# script runners do.


class RateLimiter:
    """Sync API. `hit(keys.ratelimit_user(42, "enroll"), policy)` decides one request."""

    def __init__(self, client: SyncClient) -> None:
        self._client = client

    def hit(self, key: str, policy: Policy, cost: int = 1) -> Decision:
        argv = _argv(key, policy, cost)
        script = policy._script
        execute: Any = self._client.execute_command
        try:
            reply = evalsha(execute, script, (key,), argv)
        except REDIS_UNAVAILABLE:
            return degraded_decision(policy)
        return parse_decision(policy, reply)


class AsyncRateLimiter:
    """Asyncio API, same logic as `RateLimiter`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def hit(self, key: str, policy: Policy, cost: int = 1) -> Decision:
        argv = _argv(key, policy, cost)
        script = policy._script
        execute: Any = self._client.execute_command
        try:
            # `evalsha_async` inlined: one coroutine layer fewer on every decision.
            try:
                reply = await execute("EVALSHA", script.sha, 1, key, *argv)
            except NoScriptError:
                reply = await execute("EVAL", script.source, 1, key, *argv)
        except REDIS_UNAVAILABLE:
            return degraded_decision(policy)
        return parse_decision(policy, reply)

"""Cache-aside for courses: JSON values with a TTL, one loader per key, no stale fills.

The key holds one of three things: the value as JSON; a not-found marker (negative
caching, shorter TTL); or a load lease `<LEASE>token` taken with SET NX by the one caller
that loads. Others see the lease and poll until the value appears. The loader writes its
value with compare-and-set against its lease, and an invalidation is a plain DEL: a load
that began before the invalidation finds its lease gone and its (possibly stale) value is
returned to its caller but never cached. That is the versioned write, without a second key.
"""

from __future__ import annotations

import enum
import json
import random
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from courseredis import keys
from courseredis.connection import REDIS_UNAVAILABLE, AsyncClient, SyncClient
from courseredis.patterns.flow import (
    Call,
    Command,
    Flow,
    Script,
    Sleep,
    backoff_delays,
    key_checker,
    monotonic,
    remembered,
    run_async,
    run_sync,
    text,
)
from courseredis.patterns.lua import load

_MS = timedelta(milliseconds=1)
_require_course = key_checker(keys.COURSE_CACHE)
# JSON never starts with a NUL byte, so the markers cannot be mistaken for a value.
C = TypeVar("C", SyncClient, AsyncClient)
_MISSING = "\x00missing"
_LEASE = "\x00lease:"


class CacheStatus(enum.StrEnum):
    HIT = "hit"  # served from Redis
    MISS = "miss"  # loaded by this caller and cached
    STALE = "stale"  # loaded, but an invalidation raced the load: returned, not cached
    BYPASS = "bypass"  # Redis did not answer: loaded straight from the source


@dataclass(frozen=True)
class CacheResult:
    value: Any  # None when the source has no such item
    status: CacheStatus


_HIT = CacheStatus.HIT
_json = json.JSONDecoder().decode  # json.loads without its per-call checks: values are str


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    stale: int = 0
    loads: int = 0
    bypasses: int = 0

    def count(self, status: CacheStatus) -> None:
        if status is CacheStatus.HIT:
            self.hits += 1
        elif status is CacheStatus.MISS:
            self.misses += 1
        elif status is CacheStatus.STALE:
            self.stale += 1
        else:
            self.bypasses += 1


@dataclass(frozen=True)
class CacheOptions:
    ttl: timedelta = keys.COURSE_CACHE_TTL
    negative_ttl: timedelta = timedelta(seconds=30)
    load_lease: timedelta = timedelta(seconds=5)  # longest a load may hold others waiting
    poll_base: timedelta = timedelta(milliseconds=2)
    poll_cap: timedelta = timedelta(milliseconds=50)

    def __post_init__(self) -> None:
        limit = keys.COURSE_CACHE_TTL
        for name in ("ttl", "negative_ttl", "load_lease"):
            value = getattr(self, name)
            if not timedelta(milliseconds=1) <= value <= limit:
                raise ValueError(f"{name} must be between 1 ms and {limit}")


def _get_or_load(
    key: str,
    loader: Callable[[], Any],
    options: CacheOptions,
    stats: CacheStats,
    rng: random.Random,
) -> Flow[CacheResult]:
    read = _read_command(key)  # checks the key first
    # The lease token, the deadline and the backoff matter only past a miss: a hit, most
    # reads, pays for none of them.
    lease = ""
    deadline = 0.0
    delays: Iterator[float]
    try:
        while True:
            reply = yield read
            raw = reply if type(reply) is str else text(reply)
            if raw is not None and not raw.startswith(_LEASE):
                stats.hits += 1
                return CacheResult(None if raw == _MISSING else _json(raw), _HIT)
            if not lease:
                lease = _LEASE + secrets.token_hex(8)
                deadline = monotonic() + options.load_lease.total_seconds()
                delays = backoff_delays(
                    base_s=options.poll_base.total_seconds(),
                    cap_s=options.poll_cap.total_seconds(),
                    rng=rng.uniform,
                )
            if raw is None:
                previous = yield Command(
                    ("SET", key, lease, "NX", "PX", options.load_lease // _MS, "GET"),
                    (("get", True),),
                )
                if previous is None or text(previous) == lease:  # ours, even if retried
                    break
                continue  # someone else claimed it between our GET and SET: read again
            if monotonic() >= deadline:
                # The loader is slower than its lease allows: load without caching, rather
                # than keep this request waiting on someone else's trouble.
                break
            yield Sleep(next(delays))
    except REDIS_UNAVAILABLE:
        value = yield Call(loader)
        stats.loads += 1
        stats.count(CacheStatus.BYPASS)
        return CacheResult(value, CacheStatus.BYPASS)

    try:
        value = yield Call(loader)
    except Exception:  # not GeneratorExit: a closed flow must not yield again
        yield Script(load("compare_and_delete"), (key,), (lease,))
        raise
    stats.loads += 1
    encoded = _MISSING if value is None else json.dumps(value, separators=(",", ":"))
    ttl = options.negative_ttl if value is None else options.ttl
    try:
        written = yield Script(load("compare_and_set"), (key,), (lease, encoded, ttl // _MS))
    except REDIS_UNAVAILABLE:
        written = 0
    status = CacheStatus.MISS if written else CacheStatus.STALE
    stats.count(status)
    return CacheResult(value, status)


@remembered  # a hot course's read is then one dict lookup
def _read_command(key: str) -> Command:
    _require_course(key)
    return Command(("GET", key))


def invalidate_command(key: str) -> Command:
    _require_course(key)
    return Command(("DEL", key))


def _invalidate(key: str) -> Flow[bool]:
    deleted = yield invalidate_command(key)
    return int(deleted) == 1


class _CacheState(Generic[C]):
    """What both APIs hold: the client, the options, the counters, the jitter source."""

    def __init__(
        self,
        client: C,
        options: CacheOptions = CacheOptions(),
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._client: C = client
        self.options = options
        self.stats = CacheStats()
        self._rng = rng or random.Random()


class CourseCache(_CacheState[SyncClient]):
    """Sync API: `cache.get_or_load(keys.course(7), lambda: db.course(7))`."""

    def get_or_load(self, key: str, loader: Callable[[], Any]) -> CacheResult:
        return run_sync(
            self._client, _get_or_load(key, loader, self.options, self.stats, self._rng)
        )

    def invalidate(self, key: str) -> bool:
        return run_sync(self._client, _invalidate(key))


class AsyncCourseCache(_CacheState[AsyncClient]):
    """Asyncio API, same logic; the loader may be a coroutine function."""

    async def get_or_load(
        self, key: str, loader: Callable[[], Any | Awaitable[Any]]
    ) -> CacheResult:
        return await run_async(
            self._client, _get_or_load(key, loader, self.options, self.stats, self._rng)
        )

    async def invalidate(self, key: str) -> bool:
        return await run_async(self._client, _invalidate(key))

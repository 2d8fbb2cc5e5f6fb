"""The operations measured: ours (`ours.<pattern>.<operation>`) and the peers' (named after
their library), each built on a client the harness gives, sync and asyncio.

Every operation gets the very client the PING baseline runs on: the project's
`create_client` / `open_async_client` with the stack's settings. The peers that build
their own client from a URL (`limits`) are handed that client instead, so connection
settings (timeouts, retries, pool, decoding) are the same for everyone.

Workloads, the same for ours and the peers:
- rate limits: 10,000 identities in turn, one limit of 1000 per minute (or 100 per second
  and 1000 per minute for "two limits"), so every decision is an admission that writes;
- locks: acquire then release a free lock, 10,000 lock names in turn (32 tasks never
  share one);
- cache hit: 100 cached courses (JSON as the courses service stores them) in turn.
"""

from __future__ import annotations

import collections
import itertools
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import limits
import limits.aio.storage
import limits.aio.strategies
import limits.storage
import limits.strategies
import redis.asyncio.cluster
import redis.cluster
import redis_lock  # type: ignore[import-untyped]
from pottery import AIORedlock, Redlock

from benchmarks.measure import AsyncOp, SyncOp
from courseredis import keys
from courseredis.connection import AsyncClient, SyncClient
from courseredis.patterns import (
    Algorithm,
    AsyncBlacklist,
    AsyncCourseCache,
    AsyncIdempotency,
    AsyncLock,
    AsyncRateLimiter,
    AsyncRefreshTokens,
    AsyncSessions,
    Blacklist,
    CourseCache,
    Idempotency,
    Lock,
    Policy,
    RateLimiter,
    RefreshTokens,
    Sessions,
)

IDENTITIES = 10_000
LOCK_NAMES = 10_000
CACHED_COURSES = 100
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)

Topology = Literal["single", "cluster"]
SyncFactory = Callable[[SyncClient, Topology], SyncOp]
AsyncFactory = Callable[[AsyncClient, Topology], Awaitable[AsyncOp]]


@dataclass(frozen=True)
class Operation:
    name: str
    library: str  # "ours", "raw", or the peer's library
    round_trips: int  # sequential round trips per call
    sync: SyncFactory | None
    aio: AsyncFactory | None
    # The figure to reach, as a ratio to PING on one sync connection, per topology.
    target_single: float | None = None
    target_cluster: float | None = None
    note: str = ""


def course_json(course_id: int) -> str:
    """A course as the courses service caches it (same fields, typical sizes)."""
    return json.dumps(
        {
            "id": course_id,
            "title": f"Course {course_id}: Distributed Systems",
            "description": (
                f"Distributed Systems, section {course_id}: lectures, weekly exercises and a "
                "final project. Demo data created by `python -m courseredis.services.db seed`."
            ),
            "capacity": 50,
            "enrolled": 17,
            "version": 3,
            "updated_at": "2026-05-09T07:35:25+00:00",
        },
        separators=(",", ":"),
    )


def _route(algorithm: Algorithm, two: bool) -> str:
    return f"bench{'2' if two else '1'}.{algorithm.value.replace('_', '-')}"


def _policy(algorithm: Algorithm, two: bool) -> Policy:
    if two:
        return Policy.of((100, SECOND), (1000, MINUTE), algorithm=algorithm)
    return Policy.of((1000, MINUTE), algorithm=algorithm)


# --- ours ---------------------------------------------------------------------------------


def _ratelimit(algorithm: Algorithm, two: bool) -> tuple[SyncFactory, AsyncFactory]:
    policy = _policy(algorithm, two)
    route = _route(algorithm, two)

    def sync(client: SyncClient, _: Topology) -> SyncOp:
        limiter = RateLimiter(client)
        names = [keys.ratelimit_user(i, route) for i in range(1, IDENTITIES + 1)]
        turn = itertools.cycle(names)
        return lambda: limiter.hit(next(turn), policy)

    async def aio(client: AsyncClient, _: Topology) -> AsyncOp:
        limiter = AsyncRateLimiter(client)
        names = [keys.ratelimit_user(i, route) for i in range(1, IDENTITIES + 1)]
        turn = itertools.cycle(names)
        return lambda: limiter.hit(next(turn), policy)

    return sync, aio


def _lock_names() -> itertools.cycle[str]:
    return itertools.cycle(
        [keys.enrollment_lock(1 + i // 100, 1 + i % 100) for i in range(LOCK_NAMES)]
    )


def _ours_lock_sync(client: SyncClient, _: Topology) -> SyncOp:
    lock, turn = Lock(client), _lock_names()

    def op() -> None:
        lock.release(lock.acquire(next(turn)))

    return op


async def _ours_lock_async(client: AsyncClient, _: Topology) -> AsyncOp:
    lock, turn = AsyncLock(client), _lock_names()

    async def op() -> None:
        await lock.release(await lock.acquire(next(turn)))

    return op


def _course_keys() -> list[str]:
    return [keys.course(i) for i in range(1, CACHED_COURSES + 1)]


def _fill_courses(client: SyncClient) -> None:
    for i in range(1, CACHED_COURSES + 1):
        client.set(
            keys.course(i), course_json(i), px=keys.COURSE_CACHE_TTL // timedelta(0, 0, 0, 1)
        )


async def _afill_courses(client: AsyncClient) -> None:
    for i in range(1, CACHED_COURSES + 1):
        await client.set(
            keys.course(i), course_json(i), px=keys.COURSE_CACHE_TTL // timedelta(0, 0, 0, 1)
        )


def _never() -> Any:
    raise AssertionError("a cache hit never loads")


def _ours_cache_sync(client: SyncClient, _: Topology) -> SyncOp:
    _fill_courses(client)
    cache, turn = CourseCache(client), itertools.cycle(_course_keys())
    return lambda: cache.get_or_load(next(turn), _never)


async def _ours_cache_async(client: AsyncClient, _: Topology) -> AsyncOp:
    await _afill_courses(client)
    cache, turn = AsyncCourseCache(client), itertools.cycle(_course_keys())
    return lambda: cache.get_or_load(next(turn), _never)


_JTIS = [str(uuid.UUID(int=i + 1)) for i in range(1000)]


def _ours_blacklist_sync(client: SyncClient, _: Topology) -> SyncOp:
    blacklist = Blacklist(client)
    for jti in _JTIS[::10]:
        blacklist.revoke(jti, 2**31)
    turn = itertools.cycle(_JTIS)
    return lambda: blacklist.is_revoked(next(turn))


async def _ours_blacklist_async(client: AsyncClient, _: Topology) -> AsyncOp:
    blacklist = AsyncBlacklist(client)
    for jti in _JTIS[::10]:
        await blacklist.revoke(jti, 2**31)
    turn = itertools.cycle(_JTIS)
    return lambda: blacklist.is_revoked(next(turn))


def _ours_sessions_sync(client: SyncClient, _: Topology) -> SyncOp:
    sessions = Sessions(client)
    ids = [sessions.create(i + 1, ["student"]).session_id for i in range(1000)]
    turn = itertools.cycle(ids)
    return lambda: sessions.touch(next(turn))


async def _ours_sessions_async(client: AsyncClient, _: Topology) -> AsyncOp:
    sessions = AsyncSessions(client)
    ids = [(await sessions.create(i + 1, ["student"])).session_id for i in range(1000)]
    turn = itertools.cycle(ids)
    return lambda: sessions.touch(next(turn))


def _event_ids() -> Callable[[], str]:
    # A fresh event per call; a random prefix keeps runs on one Redis apart.
    prefix = uuid.uuid4().int & ~((1 << 64) - 1)
    counter = itertools.count(1)
    return lambda: str(uuid.UUID(int=prefix | next(counter)))


def _ours_idempotency_sync(client: SyncClient, _: Topology) -> SyncOp:
    idem, event = Idempotency(client), _event_ids()

    def op() -> None:
        idem.complete(idem.claim("bench", event()))

    return op


async def _ours_idempotency_async(client: AsyncClient, _: Topology) -> AsyncOp:
    idem, event = AsyncIdempotency(client), _event_ids()

    async def op() -> None:
        await idem.complete(await idem.claim("bench", event()))

    return op


def _ours_refresh_sync(client: SyncClient, _: Topology) -> SyncOp:
    tokens = RefreshTokens(client)
    pool = collections.deque(tokens.issue(i + 1, "student").token for i in range(64))

    def op() -> None:
        rotation = tokens.rotate(pool.popleft())
        assert rotation.ok, rotation
        assert rotation.token is not None
        pool.append(rotation.token)

    return op


async def _ours_refresh_async(client: AsyncClient, _: Topology) -> AsyncOp:
    tokens = AsyncRefreshTokens(client)
    pool = collections.deque([(await tokens.issue(i + 1, "student")).token for i in range(64)])

    async def op() -> None:
        rotation = await tokens.rotate(pool.popleft())
        assert rotation.ok, rotation
        assert rotation.token is not None
        pool.append(rotation.token)

    return op


# --- raw commands ---------------------------------------------------------------------------


def ping_sync(client: SyncClient, topology: Topology) -> SyncOp:
    """The baseline: one PING round trip (on a cluster, to each master in turn)."""
    if isinstance(client, redis.cluster.RedisCluster):
        cluster: Any = client
        turn = itertools.cycle(cluster.get_primaries())
        return lambda: cluster.execute_command("PING", target_nodes=next(turn))
    return client.ping


async def ping_async(client: AsyncClient, topology: Topology) -> AsyncOp:
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        turn = itertools.cycle(client.get_primaries())
        return lambda: client.execute_command("PING", target_nodes=next(turn))
    return client.ping


def _raw_get_sync(client: SyncClient, _: Topology) -> SyncOp:
    _fill_courses(client)
    turn = itertools.cycle(_course_keys())
    return lambda: json.loads(client.get(next(turn)) or "null")


async def _raw_get_async(client: AsyncClient, _: Topology) -> AsyncOp:
    await _afill_courses(client)
    turn = itertools.cycle(_course_keys())

    async def op() -> Any:
        return json.loads(await client.get(next(turn)) or "null")

    return op


# --- limits -------------------------------------------------------------------------------


_LIMITS_STRATEGIES: dict[str, tuple[Any, Any]] = {
    "moving_window": (
        limits.strategies.MovingWindowRateLimiter,
        limits.aio.strategies.MovingWindowRateLimiter,
    ),
    "sliding_window_counter": (
        limits.strategies.SlidingWindowCounterRateLimiter,
        limits.aio.strategies.SlidingWindowCounterRateLimiter,
    ),
    "fixed_window": (
        limits.strategies.FixedWindowRateLimiter,
        limits.aio.strategies.FixedWindowRateLimiter,
    ),
}


def limits_storage(client: SyncClient, prefix: str) -> limits.storage.Storage:
    """A `limits` storage on `client` itself (its scripts registered on it)."""
    if isinstance(client, redis.cluster.RedisCluster):
        cluster: Any = client
        node = cluster.get_default_node()
        # It connects (to read the slots) as it is built: give it the same account.
        auth = cluster.nodes_manager.connection_kwargs
        storage: Any = limits.storage.RedisClusterStorage(
            f"redis+cluster://{node.host}:{node.port}",
            key_prefix=prefix,
            username=auth.get("username"),
            password=auth.get("password"),
        )
        own = storage.storage
        storage.storage = client
        storage.initialize_storage("")
        own.close()
        result: limits.storage.Storage = storage
        return result
    else:
        storage = limits.storage.RedisStorage(
            "redis://unused", connection_pool=client.connection_pool, key_prefix=prefix
        )
    storage.storage = client
    storage.initialize_storage("")
    single: limits.storage.Storage = storage
    return single


async def limits_async_storage(client: AsyncClient, prefix: str) -> Any:
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        node = client.get_default_node()
        storage: Any = limits.aio.storage.RedisClusterStorage(
            f"async+redis+cluster://{node.host}:{node.port}",
            implementation="redispy",
            key_prefix=prefix,
        )
    else:
        storage = limits.aio.storage.RedisStorage(
            "async+redis://127.0.0.1:1", implementation="redispy", key_prefix=prefix
        )
    old = storage.bridge.storage
    storage.bridge.storage = client
    storage.bridge.connection_getter = lambda _readonly: client
    storage.bridge.register_scripts()
    await old.aclose()
    return storage


def _limits(
    strategy: str, mode: Literal["hit", "hit_stats", "two"]
) -> tuple[SyncFactory, AsyncFactory]:
    sync_cls, async_cls = _LIMITS_STRATEGIES[strategy]
    one = limits.parse("1000/minute")
    two = [limits.parse("100/second"), one]
    prefix = f"LIMITS-{strategy}-{mode}"

    def sync(client: SyncClient, _: Topology) -> SyncOp:
        limiter = sync_cls(limits_storage(client, prefix))
        turn = itertools.cycle([str(i) for i in range(1, IDENTITIES + 1)])
        if mode == "hit":
            return lambda: limiter.hit(one, next(turn))
        if mode == "hit_stats":

            def hit_stats() -> Any:
                who = next(turn)
                return limiter.hit(one, who), limiter.get_window_stats(one, who)

            return hit_stats

        def both() -> bool:
            who = next(turn)
            return all([limiter.hit(item, who) for item in two])

        return both

    async def aio(client: AsyncClient, _: Topology) -> AsyncOp:
        limiter = async_cls(await limits_async_storage(client, prefix))
        turn = itertools.cycle([str(i) for i in range(1, IDENTITIES + 1)])
        if mode == "hit":
            return lambda: limiter.hit(one, next(turn))
        if mode == "hit_stats":

            async def hit_stats() -> Any:
                who = next(turn)
                return await limiter.hit(one, who), await limiter.get_window_stats(one, who)

            return hit_stats

        async def both() -> bool:
            who = next(turn)
            return all([await limiter.hit(item, who) for item in two])

        return both

    return sync, aio


# --- locks --------------------------------------------------------------------------------


def _peer_lock_names(topology: Topology) -> itertools.cycle[str]:
    # python-redis-lock's release touches two keys (the lock and its signal list): on a
    # cluster they need a hash tag to share a slot, or the release raises CROSSSLOT.
    if topology == "cluster":
        return itertools.cycle([f"{{bench-{i}}}" for i in range(LOCK_NAMES)])
    return itertools.cycle([f"bench-{i}" for i in range(LOCK_NAMES)])


def _redis_py_lock_sync(client: SyncClient, topology: Topology) -> SyncOp:
    turn = _peer_lock_names(topology)

    def op() -> None:
        lock = client.lock(f"lock:{next(turn)}", timeout=30)
        assert lock.acquire(blocking=False)
        lock.release()

    return op


async def _redis_py_lock_async(client: AsyncClient, topology: Topology) -> AsyncOp:
    turn = _peer_lock_names(topology)

    async def op() -> None:
        lock = client.lock(f"lock:{next(turn)}", timeout=30)
        assert await lock.acquire(blocking=False)
        await lock.release()

    return op


def _python_redis_lock_sync(client: SyncClient, topology: Topology) -> SyncOp:
    turn = _peer_lock_names(topology)

    def op() -> None:
        lock = redis_lock.Lock(client, next(turn), expire=30, strict=topology == "single")
        assert lock.acquire(blocking=False)
        lock.release()

    return op


def _pottery_sync(client: SyncClient, topology: Topology) -> SyncOp:
    turn = _peer_lock_names(topology)

    def op() -> None:
        lock = Redlock(key=next(turn), masters={client}, auto_release_time=30)  # type: ignore[arg-type]
        assert lock.acquire(blocking=False)
        lock.release()

    return op


async def _pottery_async(client: AsyncClient, topology: Topology) -> AsyncOp:
    turn = _peer_lock_names(topology)

    async def op() -> None:
        lock = AIORedlock(key=next(turn), masters={client}, auto_release_time=30)  # type: ignore[arg-type]
        assert await lock.acquire(blocking=False)
        await lock.release()

    return op


# --- the table ----------------------------------------------------------------------------

RATE_TARGET_SINGLE, RATE_TARGET_CLUSTER = 0.85, 0.80
TWO_LIMITS_TARGET = 0.80
LOCK_TARGET = 0.45
CACHE_TARGET = 0.90
ASYNC_TARGET_PER_ROUND_TRIP = 0.80

PING = Operation("raw.PING", "raw", 1, ping_sync, ping_async, note="the baseline")


def _ours_ratelimit_operations() -> list[Operation]:
    out = []
    for algorithm in Algorithm:
        sync, aio = _ratelimit(algorithm, two=False)
        out.append(
            Operation(
                f"ours.ratelimit.decide_{algorithm.value}",
                "ours",
                1,
                sync,
                aio,
                RATE_TARGET_SINGLE,
                RATE_TARGET_CLUSTER,
                "allowed, remaining, retry-after, reset; 1000/min",
            )
        )
    for algorithm in Algorithm:
        sync, aio = _ratelimit(algorithm, two=True)
        out.append(
            Operation(
                f"ours.ratelimit.decide_two_limits_{algorithm.value}",
                "ours",
                1,
                sync,
                aio,
                TWO_LIMITS_TARGET,
                TWO_LIMITS_TARGET,
                "100/s and 1000/min decided atomically",
            )
        )
    return out


def _limits_operations() -> list[Operation]:
    out = []
    for strategy in _LIMITS_STRATEGIES:
        sync, aio = _limits(strategy, "hit")
        out.append(Operation(f"limits.{strategy}.hit", "limits", 1, sync, aio, note="allowed only"))
    for strategy in _LIMITS_STRATEGIES:
        sync, aio = _limits(strategy, "hit_stats")
        out.append(
            Operation(
                f"limits.{strategy}.hit_and_window_stats",
                "limits",
                2,
                sync,
                aio,
                note="allowed, then remaining and reset",
            )
        )
    sync, aio = _limits("moving_window", "two")
    out.append(
        Operation(
            "limits.moving_window.two_limits",
            "limits",
            2,
            sync,
            aio,
            note="two hits, one per limit (not atomic)",
        )
    )
    return out


def all_operations() -> list[Operation]:
    return [
        PING,
        *_ours_ratelimit_operations(),
        *_limits_operations(),
        Operation(
            "ours.lock.acquire_release",
            "ours",
            2,
            _ours_lock_sync,
            _ours_lock_async,
            LOCK_TARGET,
            LOCK_TARGET,
            "SET NX PX GET, then compare-and-delete",
        ),
        Operation(
            "redis-py.Lock.acquire_release",
            "redis-py",
            2,
            _redis_py_lock_sync,
            _redis_py_lock_async,
        ),
        Operation(
            "python-redis-lock.Lock.acquire_release",
            "python-redis-lock",
            2,
            _python_redis_lock_sync,
            None,
            note="no asyncio API",
        ),
        Operation(
            "pottery.Redlock.acquire_release",
            "pottery",
            2,
            _pottery_sync,
            _pottery_async,
            note="one master",
        ),
        Operation(
            "ours.cache.get_or_load_hit",
            "ours",
            1,
            _ours_cache_sync,
            _ours_cache_async,
            CACHE_TARGET,
            CACHE_TARGET,
            "GET + JSON decode",
        ),
        Operation("raw.GET", "raw", 1, _raw_get_sync, _raw_get_async, note="GET + JSON decode"),
        Operation(
            "ours.blacklist.is_revoked", "ours", 1, _ours_blacklist_sync, _ours_blacklist_async
        ),
        Operation("ours.sessions.touch", "ours", 1, _ours_sessions_sync, _ours_sessions_async),
        Operation(
            "ours.idempotency.claim_complete",
            "ours",
            2,
            _ours_idempotency_sync,
            _ours_idempotency_async,
        ),
        Operation("ours.refresh.rotate", "ours", 1, _ours_refresh_sync, _ours_refresh_async),
    ]

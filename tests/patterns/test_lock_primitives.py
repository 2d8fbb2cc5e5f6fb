"""The lock's release and extension keep one contract, natively or by script, on every server.

Each target is a real server and the primitives its lock uses: the machine's engine (single
node and cluster) with what detection finds there (the scripts), Valkey 8.1 with what it
finds (`SET ... IFEQ` for the extension) and with the scripts forced, Redis 8.0 (HSETEX but
no IFEQ: the scripts). The same assertions run on each, sync and asyncio.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import redis

from courseredis import keys, server_features
from courseredis.connection import create_client, open_async_client
from courseredis.patterns.lock import AsyncLock, Lock, LockLost, LockOptions
from courseredis.server_features import LUA_ONLY, Primitives
from tests import newer_servers
from tests.newer_servers import NewerServer
from tests.support import settings_for

_ids = itertools.count(1)
SHORT = LockOptions(lease=timedelta(seconds=2))


@pytest.fixture(scope="session")
def newer_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NewerServer]:
    yield from newer_servers.serve("redis-8.0", tmp_path_factory)


@pytest.fixture(scope="session")
def newer_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NewerServer]:
    yield from newer_servers.serve("valkey-8.1", tmp_path_factory)


@dataclass(frozen=True)
class Target:
    name: str
    sync: str  # how to make a client: "host" (the fixture's stack) or a NewerServer's name
    forced: Primitives | None  # None: what detection finds
    expected: Primitives  # what the lock then uses


TARGETS = [
    Target("host-single", "single_node", None, LUA_ONLY),
    Target("host-cluster", "cluster", None, LUA_ONLY),
    Target("valkey-8.1-native", "newer_valkey", None, Primitives(renew=True)),
    Target("valkey-8.1-lua", "newer_valkey", LUA_ONLY, LUA_ONLY),
    Target("redis-8.0", "newer_redis", None, Primitives(hash_field_ttl=True)),
]


@pytest.fixture(params=TARGETS, ids=[t.name for t in TARGETS])
def target(request: pytest.FixtureRequest) -> tuple[Target, object]:
    chosen: Target = request.param
    return chosen, request.getfixturevalue(chosen.sync)


@pytest.fixture
def sync_client(target: tuple[Target, Any]) -> Iterator[Any]:
    _, server = target
    if isinstance(server, NewerServer):
        client: Any = server.client()
    else:
        client = create_client(settings_for(server))
    yield client
    client.close()


@pytest.fixture
async def async_client(target: tuple[Target, Any]) -> AsyncIterator[Any]:
    _, server = target
    if isinstance(server, NewerServer):
        client: Any = server.async_client()
    else:
        client = await open_async_client(settings_for(server))
    yield client
    await client.aclose()


@pytest.fixture
def lock(target: tuple[Target, object], sync_client: redis.Redis) -> Lock:
    chosen, _ = target
    return Lock(sync_client, native=chosen.forced)


@pytest.fixture
def alock(target: tuple[Target, object], async_client: redis.asyncio.Redis) -> AsyncLock:
    chosen, _ = target
    return AsyncLock(async_client, native=chosen.forced)


def fresh_key() -> str:
    return keys.enrollment_lock(next(_ids) + 500_000, 7)


def test_the_lock_uses_what_detection_finds_there(target, lock, sync_client):
    chosen, _ = target
    assert lock.primitives == chosen.expected
    if chosen.forced is None:
        assert server_features.detect(sync_client) == chosen.expected


async def test_asyncio_detection_agrees(target, alock):
    chosen, _ = target
    assert await alock.primitives() == chosen.expected


def test_the_owner_releases_and_the_key_is_gone(lock, sync_client):
    lease = lock.acquire(fresh_key(), SHORT)
    lock.release(lease)
    assert sync_client.exists(lease.key) == 0


def test_release_of_a_gone_lease_raises_lock_lost(lock, sync_client):
    lease = lock.acquire(fresh_key(), SHORT)
    sync_client.delete(lease.key)
    with pytest.raises(LockLost):
        lock.release(lease)


def test_nobody_releases_or_extends_another_owners_lock(lock, sync_client):
    lease = lock.acquire(fresh_key(), SHORT)
    sync_client.set(lease.key, "another-owner", px=5000)  # the lease passed on
    with pytest.raises(LockLost):
        lock.release(lease)
    with pytest.raises(LockLost):
        lock.extend(lease, 60_000)
    assert sync_client.get(lease.key) == "another-owner"
    assert 0 < sync_client.pttl(lease.key) <= 5000


def test_extension_changes_the_ttl_only(lock, sync_client):
    lease = lock.acquire(fresh_key(), SHORT)
    lock.extend(lease, 60_000)
    assert sync_client.get(lease.key) == lease.token
    assert sync_client.type(lease.key) == "string"
    assert 2000 < sync_client.pttl(lease.key) <= 60_000
    lock.extend(lease)  # back to the lease's own length
    assert 0 < sync_client.pttl(lease.key) <= 2000
    lock.release(lease)


def test_extension_of_a_gone_lease_creates_nothing(lock, sync_client):
    lease = lock.acquire(fresh_key(), SHORT)
    sync_client.delete(lease.key)
    with pytest.raises(LockLost):
        lock.extend(lease, 60_000)
    assert sync_client.exists(lease.key) == 0


def test_an_extension_of_less_than_a_millisecond_is_refused_before_sending(lock, sync_client):
    lease = lock.acquire(fresh_key(), SHORT)
    with pytest.raises(ValueError, match="at least 1"):
        lock.extend(lease, -5)
    assert sync_client.get(lease.key) == lease.token
    lock.release(lease)


def test_a_key_of_another_type_is_an_error_not_a_lost_lease(lock, sync_client):
    lease = lock.acquire(fresh_key(), SHORT)
    sync_client.delete(lease.key)
    sync_client.sadd(lease.key, lease.token)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        lock.release(lease)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        lock.extend(lease)
    assert sync_client.smembers(lease.key) == {lease.token}
    sync_client.delete(lease.key)


async def test_asyncio_keeps_the_same_contract(alock, async_client):
    lease = await alock.acquire(fresh_key(), SHORT)
    await alock.extend(lease, 60_000)
    assert await async_client.get(lease.key) == lease.token
    assert 2000 < await async_client.pttl(lease.key) <= 60_000
    await alock.release(lease)
    assert await async_client.exists(lease.key) == 0
    with pytest.raises(LockLost):
        await alock.release(lease)
    with pytest.raises(LockLost):
        await alock.extend(lease)
    assert await async_client.exists(lease.key) == 0

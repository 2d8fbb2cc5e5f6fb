"""The enrollment lock: owner-only release and extension, bounded waits, renewal."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from datetime import timedelta

import pytest

from courseredis import keys
from courseredis.patterns.lock import AsyncLock, Lock, LockLost, LockNotAcquired, LockOptions
from tests.support import assert_follows_schema

_ids = itertools.count(1)
WAIT_LONG = LockOptions(wait=timedelta(seconds=60), backoff_cap=timedelta(milliseconds=20))


def fresh_key() -> str:
    return keys.enrollment_lock(next(_ids), 42)


async def test_200_async_contenders_never_hold_the_lock_twice_at_once(aclient):
    key, lock = fresh_key(), AsyncLock(aclient)
    holders, most, acquired = 0, 0, 0

    async def contend() -> None:
        nonlocal holders, most, acquired
        async with lock.hold(key, WAIT_LONG):
            holders += 1
            most = max(most, holders)
            await asyncio.sleep(0.001)
            holders -= 1
            acquired += 1

    await asyncio.gather(*(contend() for _ in range(200)))
    assert most == 1
    assert acquired == 200
    assert await aclient.exists(key) == 0


def test_200_threads_never_hold_the_lock_twice_at_once(client):
    key, lock = fresh_key(), Lock(client)
    guard = threading.Lock()
    state = {"holders": 0, "most": 0, "acquired": 0}

    def contend() -> None:
        with lock.hold(key, WAIT_LONG):
            with guard:
                state["holders"] += 1
                state["most"] = max(state["most"], state["holders"])
            time.sleep(0.0005)
            with guard:
                state["holders"] -= 1
                state["acquired"] += 1

    threads = [threading.Thread(target=contend) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state == {"holders": 0, "most": 1, "acquired": 200}


def test_a_held_lock_has_the_lease_as_ttl_and_an_owner_token(client):
    lock = Lock(client)
    lease = lock.acquire(fresh_key())
    assert client.get(lease.key) == lease.token
    assert_follows_schema(client, lease.key)
    lock.release(lease)
    assert client.exists(lease.key) == 0


def test_a_bounded_wait_gives_up_with_a_clear_error(client):
    lock = Lock(client)
    lease = lock.acquire(fresh_key())
    started = time.monotonic()
    with pytest.raises(LockNotAcquired, match="held by another owner"):
        lock.acquire(lease.key, LockOptions(wait=timedelta(milliseconds=150)))
    assert time.monotonic() - started >= 0.15
    lock.release(lease)


def test_only_the_owner_releases_or_extends(client):
    lock = Lock(client)
    lease = lock.acquire(fresh_key(), LockOptions(lease=timedelta(milliseconds=50)))
    time.sleep(0.08)  # the lease expires ...
    other = lock.acquire(lease.key)  # ... and another owner takes the lock
    with pytest.raises(LockLost):
        lock.release(lease)
    with pytest.raises(LockLost):
        lock.extend(lease)
    assert lock.is_held(other)
    lock.release(other)


def test_renewal_keeps_a_lock_past_its_lease(client):
    lock = Lock(client)
    options = LockOptions(lease=timedelta(milliseconds=150))
    with lock.hold(fresh_key(), options, renew=True) as lease:
        time.sleep(0.5)
        assert lock.is_held(lease)
    assert client.exists(lease.key) == 0


def test_a_lost_lease_is_reported_when_the_block_ends(client):
    lock = Lock(client)
    options = LockOptions(lease=timedelta(milliseconds=300))
    with pytest.raises(LockLost), lock.hold(fresh_key(), options, renew=True) as lease:
        client.delete(lease.key)  # an operator, or an expiry during a long pause
        other = lock.acquire(lease.key)
        time.sleep(0.3)
    assert lock.is_held(other)
    lock.release(other)


async def test_async_renewal_and_loss(aclient):
    lock = AsyncLock(aclient)
    options = LockOptions(lease=timedelta(milliseconds=150))
    async with lock.hold(fresh_key(), options, renew=True) as lease:
        await asyncio.sleep(0.4)
        assert await lock.is_held(lease)
    with pytest.raises(LockLost):
        async with lock.hold(fresh_key(), options, renew=True) as lease:
            await aclient.delete(lease.key)
            await asyncio.sleep(0.2)


def test_bad_keys_and_options_are_refused():
    with pytest.raises(ValueError, match="is not a key of"):
        Lock(None).acquire("lock:enrollment:1")  # type: ignore[arg-type]
    with pytest.raises(keys.InvalidIdentifier):
        keys.enrollment_lock(1, "2; DEL")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lease"):
        LockOptions(lease=timedelta(minutes=5))

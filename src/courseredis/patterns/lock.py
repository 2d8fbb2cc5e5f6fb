"""The enrollment lock: `SET NX PX` with an owner token, released and extended by the owner.

The lock is an efficiency guard that keeps two requests for the same enrollment from doing
the work twice; the database's unique constraint is what makes a double enrollment
impossible, because a lease can always expire under a paused process.

Release and extension compare the owner's token and act in one step: with a Lua script on
any server, or natively where the server has it (`courseredis.server_features`: `DELIFEQ`
or `DELEX ... IFEQ` for the release, `SET ... IFEQ ... PX` for the extension). Both answer
alike: done, or `LockLost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta

from courseredis import keys
from courseredis.connection import AsyncClient, SyncClient
from courseredis.patterns.flow import (
    Command,
    Flow,
    Script,
    Sleep,
    backoff_delays,
    key_checker,
    monotonic,
    run_async,
    run_sync,
    text,
)
from courseredis.patterns.lua import load
from courseredis.server_features import (
    Primitives,
    ReleaseCommand,
    primitives,
    primitives_async,
    release_command,
    renew_command,
)

_MS = timedelta(milliseconds=1)
_require_lock = key_checker(keys.ENROLLMENT_LOCK)
_COMPARE_AND_DELETE = load("compare_and_delete")
_COMPARE_AND_PEXPIRE = load("compare_and_pexpire")


class LockError(RuntimeError):
    pass


class LockNotAcquired(LockError):
    """Another owner held the lock for the whole wait."""


class LockLost(LockError):
    """The lease expired or was taken over before the owner released or extended it.

    Whatever the owner did after losing it may have overlapped another owner's work.
    """


@dataclass(frozen=True)
class Lease:
    key: str
    token: str
    lease_ms: int


@dataclass(frozen=True)
class LockOptions:
    lease: timedelta = keys.LOCK_LEASE
    wait: timedelta = timedelta(0)  # how long to keep trying; 0 = one attempt
    backoff_base: timedelta = timedelta(milliseconds=5)
    backoff_cap: timedelta = timedelta(milliseconds=200)

    @functools.cached_property
    def lease_ms(self) -> int:
        return self.lease // _MS

    def __post_init__(self) -> None:
        if not timedelta(milliseconds=1) <= self.lease <= keys.LOCK_LEASE:
            raise ValueError(f"lease must be 1 ms to {keys.LOCK_LEASE}")
        if self.wait < timedelta(0):
            raise ValueError("wait must not be negative")


def _acquire(key: str, options: LockOptions, rng: random.Random) -> Flow[Lease]:
    _require_lock(key)
    lease = Lease(key, secrets.token_hex(16), options.lease_ms)
    # With no wait (the default) there is one attempt, and no clock to read.
    deadline = monotonic() + options.wait.total_seconds() if options.wait else 0.0
    # The backoff matters only once the lock was found taken: a free lock (the usual case)
    # pays for none of it.
    delays: Iterator[float] | None = None
    while True:
        # GET returns the previous value: ours too when the client retried a SET whose reply
        # was lost, which plain SET NX would report as a failure while we hold the lock.
        previous = yield Command(
            ("SET", key, lease.token, "NX", "PX", lease.lease_ms, "GET"), (("get", True),)
        )
        if previous is None or text(previous) == lease.token:
            return lease
        if delays is None:
            delays = backoff_delays(
                base_s=options.backoff_base.total_seconds(),
                cap_s=options.backoff_cap.total_seconds(),
                rng=rng.uniform,
            )
        left = deadline - monotonic()
        if left <= 0:
            raise LockNotAcquired(f"{key} is held by another owner")
        yield Sleep(min(next(delays), left))


def _release(lease: Lease, native: ReleaseCommand | None) -> Flow[None]:
    # Both answer 1 when they deleted the key, 0 when it was gone or held another token.
    if native is not None:
        deleted = yield Command(release_command(native, lease.key, lease.token))
    else:
        deleted = yield Script(_COMPARE_AND_DELETE, (lease.key,), (lease.token,))
    if not deleted:
        raise LockLost(f"{lease.key}: the lease had expired or passed to another owner")


def _extend(lease: Lease, lease_ms: int | None, native: bool) -> Flow[None]:
    ms = lease_ms or lease.lease_ms
    # PEXPIRE with 0 or less deletes the key (and the script would report it extended);
    # SET PX refuses it: refused here, the same way on both paths.
    if ms < 1:
        raise ValueError(f"lease_ms must be at least 1, not {ms}")
    if native:
        # SET rewrites the value with the token it compared, so only the TTL changes: OK
        # when done, nil when the key was gone or held another token.
        extended = yield Command(renew_command(lease.key, lease.token, ms))
    else:
        extended = yield Script(_COMPARE_AND_PEXPIRE, (lease.key,), (lease.token, ms))
    if not extended:
        raise LockLost(f"{lease.key}: the lease had expired or passed to another owner")


def _held(lease: Lease) -> Flow[bool]:
    value = yield Command(("GET", lease.key))
    return text(value) == lease.token


class Lock:
    """Sync API.

    with Lock(client).hold(keys.enrollment_lock(7, 42), LockOptions(wait=...), renew=True):
        ...   # raises LockNotAcquired before, LockLost after if the lease was lost
    """

    def __init__(
        self,
        client: SyncClient,
        *,
        rng: random.Random | None = None,
        native: Primitives | None = None,
    ) -> None:
        """`native`: the primitives to use (`server_features.LUA_ONLY` forces the scripts);
        by default the client's, detected at the first release or extension."""
        self._client = client
        self._rng = rng or random.Random()
        self._native = native

    @property
    def primitives(self) -> Primitives:
        if self._native is None:
            self._native = primitives(self._client)
        return self._native

    def acquire(self, key: str, options: LockOptions = LockOptions()) -> Lease:
        return run_sync(self._client, _acquire(key, options, self._rng))

    def release(self, lease: Lease) -> None:
        run_sync(self._client, _release(lease, self.primitives.release))

    def extend(self, lease: Lease, lease_ms: int | None = None) -> None:
        run_sync(self._client, _extend(lease, lease_ms, self.primitives.renew))

    def is_held(self, lease: Lease) -> bool:
        return run_sync(self._client, _held(lease))

    @contextlib.contextmanager
    def hold(
        self, key: str, options: LockOptions = LockOptions(), *, renew: bool = False
    ) -> Iterator[Lease]:
        """Hold the lock for the block; with `renew`, extend it every third of the lease.

        A renewal that finds the lease gone stops renewing; the exit then raises LockLost
        rather than releasing someone else's lock.
        """
        lease = self.acquire(key, options)
        if renew:
            _ = self.primitives  # detected now, not within the first renewal's period
        stop = threading.Event()
        lost: list[BaseException] = []

        def renew_loop() -> None:
            while not stop.wait(lease.lease_ms / 3000):
                try:
                    self.extend(lease)
                except LockLost as error:
                    lost.append(error)
                    return
                except Exception:  # a blip: the next period tries again within the lease
                    continue

        renewer = threading.Thread(target=renew_loop, daemon=True) if renew else None
        if renewer:
            renewer.start()
        try:
            yield lease
        finally:
            stop.set()
            if renewer:
                renewer.join()
            if lost:
                raise lost[0]
            self.release(lease)


class AsyncLock:
    """Asyncio API, same logic as `Lock`; renewal runs as a task."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        rng: random.Random | None = None,
        native: Primitives | None = None,
    ) -> None:
        self._client = client
        self._rng = rng or random.Random()
        self._native = native

    async def primitives(self) -> Primitives:
        if self._native is None:
            self._native = await primitives_async(self._client)
        return self._native

    async def acquire(self, key: str, options: LockOptions = LockOptions()) -> Lease:
        return await run_async(self._client, _acquire(key, options, self._rng))

    async def release(self, lease: Lease) -> None:
        native = self._native or await self.primitives()
        await run_async(self._client, _release(lease, native.release))

    async def extend(self, lease: Lease, lease_ms: int | None = None) -> None:
        native = self._native or await self.primitives()
        await run_async(self._client, _extend(lease, lease_ms, native.renew))

    async def is_held(self, lease: Lease) -> bool:
        return await run_async(self._client, _held(lease))

    @contextlib.asynccontextmanager
    async def hold(
        self, key: str, options: LockOptions = LockOptions(), *, renew: bool = False
    ) -> AsyncIterator[Lease]:
        lease = await self.acquire(key, options)
        if renew:
            await self.primitives()  # detected now, not within the first renewal's period
        lost: list[BaseException] = []

        async def renew_loop() -> None:
            while True:
                await asyncio.sleep(lease.lease_ms / 3000)
                try:
                    await self.extend(lease)
                except LockLost as error:
                    lost.append(error)
                    return
                except Exception:
                    continue

        renewer = asyncio.create_task(renew_loop()) if renew else None
        try:
            yield lease
        finally:
            if renewer:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
            if lost:
                raise lost[0]
            await self.release(lease)

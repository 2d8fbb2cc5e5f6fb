"""Password hashes: argon2id through argon2-cffi, with its RFC 9106 default parameters.

`verify_password` answers yes or no and never raises for a wrong password or a hash it
cannot read (a truncated column, a hash from another scheme): a login handler then has one
failure path, and a malformed row cannot turn a login into a 500 that tells an attacker
which accounts are odd.

Each hash costs about 0.1 s of CPU and `ARGON2_MEMORY_MIB` (64 MiB) of memory by design.
`PasswordChecks` runs them off the event loop, a bounded number at once: a burst of logins
queues, then is refused (503), rather than taking more memory than the pod has.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# What one hash or verification allocates (argon2's memory_cost is in KiB).
ARGON2_MEMORY_MIB = _hasher.memory_cost // 1024
Result = TypeVar("Result")


def hash_password(password: str) -> str:
    """An argon2id PHC string (`$argon2id$v=19$m=...`) with a fresh random salt."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches `password_hash`; False for a malformed hash too."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than today's, or is unreadable.

    Call it after a successful `verify_password`, while the password is at hand, and store
    `hash_password(password)` if it says so.
    """
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def concurrency_for(memory_budget_mib: int) -> int:
    """How many hashes fit in the budget at once (at least one: a login must be possible)."""
    return max(1, memory_budget_mib // ARGON2_MEMORY_MIB)


class PasswordChecksBusy(Exception):
    """Every slot is computing and the queue is full: answer 503 with Retry-After."""


class PasswordChecks:
    """Hash and verify passwords, at most `concurrency` at once, at most `queue` waiting.

    The computations run in a pool of `concurrency` threads of its own: asyncio's default
    pool has min(32, CPUs + 4) threads, and as many argon2 computations at once take
    32 x 64 MiB, past a 512 MiB pod's limit (the kernel's OOM killer ends the pod, and every
    request in it). The pool's size is what bounds the memory; the queue bounds how long a
    login may wait for a slot (about queue / concurrency x 0.1 s) before it is refused.
    """

    def __init__(self, concurrency: int, queue: int) -> None:
        if concurrency < 1 or queue < 0:
            raise ValueError("concurrency must be at least 1 and queue at least 0")
        self.concurrency = concurrency
        self.queue = queue
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="argon2")
        self._admitted = 0  # computing or waiting; touched by the event loop only
        self._lock = threading.Lock()
        self._running = 0
        self.peak_running = 0  # the most computations seen at once (for tests and metrics)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self.run(verify_password, password_hash, password)

    async def hash(self, password: str) -> str:
        return await self.run(hash_password, password)

    async def run(self, compute: Callable[..., Result], *args: object) -> Result:
        """`compute(*args)` in the pool, or PasswordChecksBusy at once when it is full."""
        if self._admitted >= self.concurrency + self.queue:
            raise PasswordChecksBusy(
                f"{self.concurrency} password checks running and {self.queue} waiting"
            )
        self._admitted += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, self._counted, compute, args)
        finally:
            self._admitted -= 1

    def _counted(self, compute: Callable[..., Result], args: tuple[object, ...]) -> Result:
        with self._lock:
            self._running += 1
            self.peak_running = max(self.peak_running, self._running)
        try:
            return compute(*args)
        finally:
            with self._lock:
                self._running -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

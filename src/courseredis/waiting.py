"""Waiting for a condition: one deadline type and one poll loop, sync and asyncio.

Every "poll until it holds or time runs out" in the bundle (a node answering PING, a cluster
turning `ok`, a service turning ready, a process exiting) goes through `wait_until`, so the
rules live in one place: deadlines on the monotonic clock (a wall-clock step must not end a
wait early or stretch it), one last check after the deadline (a condition that became true
while we slept is not reported as a time-out), and a time-out that says what it waited for
and what it saw last.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_INTERVAL_S = 0.05


class TimedOut(TimeoutError):
    """The condition did not hold before the deadline."""


class Deadline:
    """A point on the monotonic clock, `seconds` from its creation."""

    def __init__(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a deadline is zero or more seconds away, not {seconds}")
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self._end

    @property
    def remaining_s(self) -> float:
        return max(0.0, self._end - time.monotonic())


def _timed_out(what: str, seconds: float, last: str | None) -> TimedOut:
    seen = f" (last seen: {last})" if last else ""
    return TimedOut(f"timed out after {seconds:g} s waiting for {what}{seen}")


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = DEFAULT_INTERVAL_S,
    last_seen: Callable[[], str | None] | None = None,
) -> T:
    """Call `check` until it returns a truthy value, and return that value.

    Exceptions from `check` propagate at once: a check that can fail transiently catches
    what it expects and returns None. On time-out, raises `TimedOut` naming `what` and, when
    `last_seen` is given, what it reported last.
    """
    deadline = Deadline(timeout_s)
    while True:
        expired = deadline.expired  # read before the check: the last check runs after it
        result = check()
        if result:
            return result
        if expired:
            raise _timed_out(what, timeout_s, last_seen() if last_seen else None)
        time.sleep(min(interval_s, max(deadline.remaining_s, 0.001)))


async def wait_until_async(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = DEFAULT_INTERVAL_S,
    last_seen: Callable[[], str | None] | None = None,
) -> T:
    """`wait_until` for a coroutine check; sleeps without blocking the event loop."""
    deadline = Deadline(timeout_s)
    while True:
        expired = deadline.expired
        result = await check()
        if result:
            return result
        if expired:
            raise _timed_out(what, timeout_s, last_seen() if last_seen else None)
        await asyncio.sleep(min(interval_s, max(deadline.remaining_s, 0.001)))

"""Throughput of one operation as a ratio to a raw PING on the same client.

The machine these run on is shared and its load drifts (other processes, CPU frequency), so
an operation is never timed alone: its time slices alternate with PING slices on the same
client (PING, op, PING, op, ..., PING), each op slice is compared with the PINGs on either
side of it, and the median of those ratios is reported. A drift slower than a slice cancels
out of the ratio; a burst of load hits one slice and the median drops it.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

SyncOp = Callable[[], object]
AsyncOp = Callable[[], Awaitable[object]]

# Operations run in chunks between clock reads: the clock is not part of what is measured.
_CHUNK = 16


@dataclass(frozen=True)
class Timing:
    """How a measurement is sliced: `rounds` op slices of `slice_s`, each between PINGs."""

    rounds: int
    slice_s: float
    warmup_s: float


FULL = Timing(rounds=7, slice_s=0.15, warmup_s=0.1)  # 7: the median of a noisy machine settles
QUICK = Timing(rounds=1, slice_s=0.02, warmup_s=0.01)


@dataclass(frozen=True)
class Rate:
    ops_per_s: float  # median over the op slices
    ping_per_s: float  # median over the PING slices around them
    ratio_to_ping: float  # median of each op slice over the mean of its two PING slices
    spread: float  # max - min of the per-slice ratios: how noisy the machine was


def _sync_rate(op: SyncOp, seconds: float) -> float:
    done = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        for _ in range(_CHUNK):
            op()
        done += _CHUNK
        now = time.perf_counter()
        if now >= end:
            return done / (now - start)


def _combine(op_rates: list[float], ping_rates: list[float]) -> Rate:
    ratios = [rate / ((ping_rates[i] + ping_rates[i + 1]) / 2) for i, rate in enumerate(op_rates)]
    return Rate(
        ops_per_s=statistics.median(op_rates),
        ping_per_s=statistics.median(ping_rates),
        ratio_to_ping=statistics.median(ratios),
        spread=max(ratios) - min(ratios),
    )


def measure_sync(op: SyncOp, ping: SyncOp, timing: Timing) -> Rate:
    """`op` and `ping` in alternating slices on one thread (one connection per node)."""
    _sync_rate(op, timing.warmup_s)
    _sync_rate(ping, timing.warmup_s)
    pings = [_sync_rate(ping, timing.slice_s)]
    ops: list[float] = []
    for _ in range(timing.rounds):
        ops.append(_sync_rate(op, timing.slice_s))
        pings.append(_sync_rate(ping, timing.slice_s))
    return _combine(ops, pings)


async def _async_rate(op: AsyncOp, seconds: float, concurrency: int) -> float:
    counts = [0] * concurrency
    end = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        done = 0
        while time.perf_counter() < end:
            await op()
            done += 1
        counts[index] = done

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return sum(counts) / (time.perf_counter() - start)


async def measure_async(op: AsyncOp, ping: AsyncOp, timing: Timing, concurrency: int) -> Rate:
    """`concurrency` tasks running `op`, in slices alternating with as many running PING."""
    await _async_rate(op, timing.warmup_s, concurrency)
    await _async_rate(ping, timing.warmup_s, concurrency)
    pings = [await _async_rate(ping, timing.slice_s, concurrency)]
    ops: list[float] = []
    for _ in range(timing.rounds):
        ops.append(await _async_rate(op, timing.slice_s, concurrency))
        pings.append(await _async_rate(ping, timing.slice_s, concurrency))
    return _combine(ops, pings)

"""Side by side: every operation, sync on one client and asyncio with 32 tasks."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

from benchmarks.measure import Rate, Timing, measure_async, measure_sync
from benchmarks.operations import (
    ASYNC_TARGET_PER_ROUND_TRIP,
    PING,
    Operation,
    Topology,
    all_operations,
    ping_async,
    ping_sync,
)
from courseredis.connection import create_client, open_async_client
from courseredis.settings import RedisSettings

CONCURRENCY = 32


@dataclass(frozen=True)
class Entry:
    """One line of peers.json: one operation on one topology through one API."""

    name: str
    topology: Topology
    api: str  # "sync" (one client, one thread) or "asyncio" (32 tasks)
    library: str
    round_trips: int
    ops_per_s: float
    ratio_to_ping: float  # to the PING baseline of the same API on the same client
    ping_per_s: float
    spread: float
    target: float | None
    note: str

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.ratio_to_ping >= self.target

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "topology": self.topology,
            "api": self.api,
            "library": self.library,
            "round_trips": self.round_trips,
            "ops_per_s": round(self.ops_per_s, 1),
            "ratio_to_ping": round(self.ratio_to_ping, 3),
            "ping_per_s": round(self.ping_per_s, 1),
            "spread": round(self.spread, 3),
            "target": self.target,
            "met": self.met,
            "note": self.note,
        }


def _entry(op: Operation, topology: Topology, api: str, rate: Rate, target: float | None) -> Entry:
    name = op.name if api == "sync" else f"{op.name}.asyncio"
    return Entry(
        name,
        topology,
        api,
        op.library,
        op.round_trips,
        rate.ops_per_s,
        1.0 if op is PING else rate.ratio_to_ping,
        rate.ping_per_s,
        rate.spread,
        target,
        op.note,
    )


def _progress(entry: Entry) -> None:
    print(
        f"  {entry.topology:7s} {entry.name:55s} {entry.ops_per_s:9.0f}/s "
        f"x{entry.ratio_to_ping:.3f} PING (±{entry.spread / 2:.3f})",
        file=sys.stderr,
        flush=True,
    )


def run_sync(
    settings: RedisSettings, topology: Topology, timing: Timing, only: str | None = None
) -> list[Entry]:
    client = create_client(settings)
    try:
        ping = ping_sync(client, topology)
        out = []
        for op in all_operations():
            if op.sync is None or (only and only not in op.name):
                continue
            rate = measure_sync(op.sync(client, topology), ping, timing)
            target = op.target_single if topology == "single" else op.target_cluster
            out.append(_entry(op, topology, "sync", rate, target))
            _progress(out[-1])
        return out
    finally:
        client.close()


async def _run_async(
    settings: RedisSettings, topology: Topology, timing: Timing, only: str | None
) -> list[Entry]:
    client = await open_async_client(settings)
    try:
        ping = await ping_async(client, topology)
        out = []
        for op in all_operations():
            if op.aio is None or (only and only not in op.name):
                continue
            rate = await measure_async(await op.aio(client, topology), ping, timing, CONCURRENCY)
            # asyncio: 0.80 of the PING baseline per round trip the operation needs.
            target = ASYNC_TARGET_PER_ROUND_TRIP / op.round_trips if op.library == "ours" else None
            out.append(_entry(op, topology, "asyncio", rate, target))
            _progress(out[-1])
        return out
    finally:
        await client.aclose()


def run_async(
    settings: RedisSettings, topology: Topology, timing: Timing, only: str | None = None
) -> list[Entry]:
    return asyncio.run(_run_async(settings, topology, timing, only))

"""Bytes per rate-limit key at its limit (`MEMORY USAGE ... SAMPLES 0`, exact).

One fresh identity takes exactly `limit` hits inside the window, so the key holds as much
as it ever will for that limit: ours for each algorithm, `limits` for each strategy (its
sliding window counter keeps two keys: both are counted).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import limits
import limits.strategies
import redis.cluster

from benchmarks.operations import Topology, limits_storage
from courseredis import keys
from courseredis.connection import SyncClient
from courseredis.patterns import Algorithm, Policy, RateLimiter

CASES = (("100/min", 100, timedelta(minutes=1)), ("1000/h", 1000, timedelta(hours=1)))
_ids = itertools.count(900_001)


@dataclass(frozen=True)
class MemoryFigure:
    name: str
    topology: Topology
    limit: str
    bytes_per_key: int
    keys: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "topology": self.topology,
            "limit": self.limit,
            "bytes_per_key": self.bytes_per_key,
            "keys": self.keys,
        }


def _usage(client: SyncClient, key: str) -> int:
    if isinstance(client, redis.cluster.RedisCluster):
        cluster: Any = client
        node = cluster.get_node_from_key(key)
        value = cluster.execute_command("MEMORY USAGE", key, "SAMPLES", "0", target_nodes=node)
    else:
        value = client.execute_command("MEMORY USAGE", key, "SAMPLES", "0")  # type: ignore[no-untyped-call]
    return int(value or 0)


def _limits_keys(client: SyncClient, prefix: str) -> list[str]:
    nodes: list[Any]
    if isinstance(client, redis.cluster.RedisCluster):
        cluster: Any = client
        nodes = [cluster.get_redis_connection(n) for n in cluster.get_primaries()]
    else:
        nodes = [client]
    return [k for node in nodes for k in node.scan_iter(match=f"{prefix}:*", count=1000)]


def _away_from_a_window_edge(window: timedelta) -> None:
    """Fixed windows restart at multiples of their length: fill a key well inside one."""
    seconds = window.total_seconds()
    into = time.time() % seconds
    if into > seconds - 3:
        time.sleep(seconds - into + 0.05)


def run(client: SyncClient, topology: Topology) -> list[MemoryFigure]:
    out: list[MemoryFigure] = []
    limiter = RateLimiter(client)
    for label, limit, window in CASES:
        _away_from_a_window_edge(window)
        for algorithm in Algorithm:
            key = keys.ratelimit_user(next(_ids), "memory")
            policy = Policy.of((limit, window), algorithm=algorithm)
            for _ in range(limit):
                limiter.hit(key, policy)
            out.append(
                MemoryFigure(
                    f"ours.ratelimit.{algorithm.value}", topology, label, _usage(client, key), 1
                )
            )
        item = limits.parse(f"{limit}/{'minute' if window == timedelta(minutes=1) else 'hour'}")
        for strategy, cls in (
            ("moving_window", limits.strategies.MovingWindowRateLimiter),
            ("sliding_window_counter", limits.strategies.SlidingWindowCounterRateLimiter),
            ("fixed_window", limits.strategies.FixedWindowRateLimiter),
        ):
            prefix = f"LIMITSMEM{strategy.replace('_', '')}{limit}"
            peer = cls(limits_storage(client, prefix))
            who = str(next(_ids))
            for _ in range(limit):
                peer.hit(item, who)
            found = _limits_keys(client, prefix)
            total = sum(_usage(client, k) for k in found)
            out.append(MemoryFigure(f"limits.{strategy}", topology, label, total, len(found)))
    return out

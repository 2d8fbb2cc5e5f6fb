"""Scenario 2, short: all of Redis down for a few seconds, then back."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError

from courseredis import keys
from courseredis.connection import create_client, open_async_client
from courseredis.environments import RedisTopology
from courseredis.local.ports import free_ports
from courseredis.local.stack import start_stack, stop_stack
from courseredis.ops.chaos import outage
from courseredis.patterns.ratelimit import Policy, RateLimiter
from courseredis.settings import RedisSettings
from tests.chaos.support import assert_passed


def test_redis_down_then_back(tmp_path: Path) -> None:
    result = outage.run(tmp_path / "outage", outage.OutageOptions.short())
    assert_passed(result)
    assert result.figures["http_500"] == 0


async def test_a_cluster_no_node_of_which_answers_is_a_connection_error() -> None:
    """Not redis-py's RedisClusterException, which no RedisError policy catches (a 500)."""
    nodes = [f"127.0.0.1:{port}" for port in free_ports(2)]
    settings = RedisSettings.for_nodes(nodes, cluster=True, retries=0, connect_timeout_s=0.2)
    with pytest.raises(ConnectionError, match="no Redis cluster node is usable"):
        await open_async_client(settings)


def test_the_sync_cluster_client_says_connection_error_too() -> None:
    nodes = [f"127.0.0.1:{port}" for port in free_ports(2)]
    settings = RedisSettings.for_nodes(nodes, cluster=True, retries=0, connect_timeout_s=0.2)
    with pytest.raises(ConnectionError, match="no Redis cluster node is usable"):
        create_client(settings)


def test_a_sync_pattern_rides_out_a_cluster_that_went_away(tmp_path: Path) -> None:
    """After start-up, when every node is gone, the patterns' outage policy holds."""
    topology = RedisTopology(
        mode="cluster",
        masters=3,
        replicas_per_master=0,
        persistence="none",
        maxmemory="64mb",
        cluster_node_timeout_ms=2000,
    )
    stack = start_stack(topology, tmp_path / "redis", env="prod")
    settings = RedisSettings.for_nodes(
        stack.nodes,
        cluster=True,
        username=stack.username,
        password=stack.password,
        retries=1,
        connect_timeout_s=0.2,
    )
    client = create_client(settings)
    key, policy = keys.ratelimit_user(7, "enroll"), Policy.of((5, timedelta(minutes=1)))
    assert not RateLimiter(client).hit(key, policy).degraded
    stop_stack(stack, remove_data=True)
    assert RateLimiter(client).hit(key, policy).degraded  # open: admitted, and said so
    with pytest.raises(ConnectionError):
        client.get(key)

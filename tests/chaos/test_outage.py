"""Scenario 2, short: all of Redis down for a few seconds, then back."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.exceptions import ConnectionError

from courseredis.connection import open_async_client
from courseredis.local.ports import free_ports
from courseredis.ops.chaos import outage
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

"""Redis settings from the environment, and the client factory they drive."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from pydantic import ValidationError

from courseredis.connection import create_async_client, create_client
from courseredis.settings import RedisSettings
from courseredis.topology import split_addr
from tests.support import settings_for


def test_cluster_nodes_come_from_a_comma_separated_variable(monkeypatch):
    monkeypatch.setenv("REDIS_CLUSTER_NODES", "10.0.0.1:7000, 10.0.0.2:7000")
    monkeypatch.setenv("REDIS_USERNAME", "gateway")
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret")
    monkeypatch.setenv("REDIS_TLS", "true")
    settings = RedisSettings()
    assert settings.cluster_nodes == ["10.0.0.1:7000", "10.0.0.2:7000"]
    assert settings.is_cluster and settings.tls
    assert settings.password is not None and "s3cret" not in repr(settings)


def test_exactly_one_target_is_required(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_CLUSTER_NODES", raising=False)
    with pytest.raises(ValidationError, match="exactly one of REDIS_URL"):
        RedisSettings()
    with pytest.raises(ValidationError, match="exactly one"):
        RedisSettings(url="redis://h:1", cluster_nodes=["h:1"])


@pytest.mark.parametrize("node", ["nohost", "h:0", "h:99999", ":7000", "h:x"])
def test_a_malformed_node_is_refused(node):
    with pytest.raises(ValidationError, match="host:port"):
        RedisSettings(cluster_nodes=[node])


def test_the_factory_builds_the_client_the_settings_name(stack, redis_settings):
    sync_client = create_client(redis_settings)
    async_client = create_async_client(redis_settings)
    if stack.mode == "cluster":
        assert isinstance(sync_client, redis.cluster.RedisCluster)
        assert isinstance(async_client, redis.asyncio.cluster.RedisCluster)
    else:
        assert isinstance(sync_client, redis.Redis)
        assert isinstance(async_client, redis.asyncio.Redis)
    assert sync_client.ping()
    sync_client.close()


async def test_the_async_client_answers(aclient):
    assert await aclient.ping()


def test_keys_spread_over_the_cluster_masters(cluster):
    client = create_client(settings_for(cluster))
    assert isinstance(client, redis.cluster.RedisCluster)
    for i in range(1, 200):
        client.set(f"course:{i}", "x", px=5000)
    per_master = [client.get_redis_connection(node).dbsize() for node in client.get_primaries()]
    assert len(per_master) == 3 and all(count > 0 for count in per_master)
    client.close()


def test_the_default_user_is_refused(stack):
    host, port = split_addr(stack.nodes[0])
    anonymous = redis.Redis(host=host, port=port, socket_timeout=1)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()

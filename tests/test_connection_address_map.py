"""`RedisSettings.address_map`: a cluster whose nodes announce host names this machine
cannot resolve (the rehearsal's pod DNS names, seen from the host) is reached through the
map, by the project's own (overridden) initialization, sync and asyncio.

The test cluster is made to announce such names for the length of a test, as the Redis
chart's nodes do (`cluster-announce-hostname`, `cluster-preferred-endpoint-type hostname`),
then put back.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import redis.asyncio.cluster
import redis.cluster

from courseredis.connection import create_client, open_async_client
from courseredis.local import LocalStack
from courseredis.settings import RedisSettings
from courseredis.topology import split_addr
from courseredis.waiting import wait_until

UNRESOLVABLE = "test.invalid"  # RFC 6761: never resolves


def _node(cluster: LocalStack, node: str) -> redis.Redis:
    host, port = split_addr(node)
    return redis.Redis(
        host=host,
        port=port,
        username=cluster.username,
        password=cluster.password,
        decode_responses=True,
    )


def _announced_hosts(cluster: LocalStack) -> set[str]:
    hosts: set[str] = set()
    for node in cluster.nodes:
        with _node(cluster, node) as client:
            for entry in client.execute_command("CLUSTER SLOTS"):
                hosts.update(str(endpoint[0]) for endpoint in entry[2:])
    return hosts


@pytest.fixture
def announced_names(cluster: LocalStack) -> Iterator[dict[str, str]]:
    """Every node announces `redis-<i>.test.invalid`; the map of those names to 127.0.0.1."""
    names = {f"redis-{i}.{UNRESOLVABLE}": split_addr(n)[0] for i, n in enumerate(cluster.nodes)}
    try:
        for name, node in zip(names, cluster.nodes, strict=True):
            with _node(cluster, node) as client:
                client.config_set("cluster-announce-hostname", name)
                client.config_set("cluster-preferred-endpoint-type", "hostname")
        wait_until(
            lambda: _announced_hosts(cluster) == set(names) or None,
            timeout_s=20,
            what="the nodes to announce their names",
        )
        yield names
    finally:
        for node in cluster.nodes:
            with _node(cluster, node) as client:
                client.config_set("cluster-preferred-endpoint-type", "ip")
                client.config_set("cluster-announce-hostname", "")
        wait_until(
            lambda: not any(UNRESOLVABLE in h for h in _announced_hosts(cluster)) or None,
            timeout_s=20,
            what="the nodes to announce their IPs again",
        )


def settings(
    cluster: LocalStack, address_map: dict[str, str], **overrides: object
) -> RedisSettings:
    return RedisSettings.for_nodes(
        cluster.nodes,
        cluster=True,
        username=cluster.username,
        password=cluster.password,
        address_map=address_map,
        **overrides,
    )


def test_the_sync_cluster_client_reaches_announced_names_through_the_map(
    cluster: LocalStack, announced_names: dict[str, str]
) -> None:
    client = create_client(settings(cluster, announced_names))
    assert isinstance(client, redis.cluster.RedisCluster)
    try:
        for n in range(20):  # keys spread over every master
            client.set(f"test:address-map:{n}", "v", ex=60)
            assert client.get(f"test:address-map:{n}") == "v"
        assert {node.host for node in client.get_nodes()} == set(announced_names.values())
    finally:
        client.close()


async def test_the_asyncio_cluster_client_reaches_announced_names_through_the_map(
    cluster: LocalStack, announced_names: dict[str, str]
) -> None:
    client = await open_async_client(settings(cluster, announced_names))
    assert isinstance(client, redis.asyncio.cluster.RedisCluster)
    try:
        for n in range(20):
            await client.set(f"test:address-map:{n}", "v", ex=60)
            assert await client.get(f"test:address-map:{n}") == "v"
        assert {node.host for node in client.get_nodes()} == set(announced_names.values())
    finally:
        await client.aclose()


def test_without_the_map_the_announced_names_are_unreachable(
    cluster: LocalStack, announced_names: dict[str, str]
) -> None:
    """Why the rehearsal's stack.json carries one: reading the layout already fails."""
    with pytest.raises(redis.exceptions.ConnectionError, match=UNRESOLVABLE):
        create_client(settings(cluster, {}, retries=0)).get("test:address-map:0")


def test_the_map_is_read_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_CLUSTER_NODES", "10.0.0.1:6379")
    monkeypatch.setenv("REDIS_ADDRESS_MAP", '{"redis-0.redis-headless.ns.svc.x": "10.0.0.1"}')
    assert RedisSettings().address_map == {"redis-0.redis-headless.ns.svc.x": "10.0.0.1"}

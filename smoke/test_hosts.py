"""Hosts, through testinfra: redis-server runs for each node, listens on its port, and was
started from a config file that says what the environment requires."""

from __future__ import annotations

import pytest
import redis
from testinfra.host import Host  # type: ignore[import-untyped]  # no type information

from courseredis.environments import RedisTopology
from courseredis.redis_config import APPENDFSYNC, MAXMEMORY_POLICY
from courseredis.topology import split_addr
from smoke.hosts import (
    HostSpec,
    get_host,
    listening,
    nodes_on,
    read_config,
    redis_processes,
    serves_port,
)
from smoke.target import Target


@pytest.fixture(scope="session")
def host_and_nodes(infra_host: str | None, target: Target) -> tuple[Host, list[str]]:
    if infra_host is None:
        pytest.skip(
            "host checks NOT run: no testinfra host given (--smoke-hosts / SMOKE_HOSTS, or "
            "testinfra's --hosts), e.g. kubectl://redis-0?namespace=<ns>&container=redis"
        )
    specs = [HostSpec.parse(h) for h in target.hosts]
    spec = HostSpec.parse(infra_host)
    served = nodes_on(spec, specs, target.nodes)
    assert served, f"testinfra host {infra_host} matches none of the nodes {target.nodes}"
    return get_host(infra_host), served


def test_redis_server_runs_for_each_node(host_and_nodes: tuple[Host, list[str]]) -> None:
    host, served = host_and_nodes
    processes = redis_processes(host)
    missing = [
        node
        for node in served
        if not any(serves_port(command, split_addr(node)[1]) for _, command in processes)
    ]
    assert not missing, (
        f"no redis-server process for {missing} on {host.backend.get_pytest_id()}; "
        f"redis-server processes: {[command for _, command in processes]}"
    )


def test_redis_server_listens_on_its_port(host_and_nodes: tuple[Host, list[str]]) -> None:
    host, served = host_and_nodes
    silent = []
    for node in served:
        port = split_addr(node)[1]
        up, how = listening(host, port)
        if not up:
            silent.append(f"{node} ({how})")
    assert not silent, f"nothing listens for {silent} on {host.backend.get_pytest_id()}"


def test_redis_server_config_file_is_the_environments(
    host_and_nodes: tuple[Host, list[str]],
    nodes: dict[str, redis.Redis],
    topology: RedisTopology,
) -> None:
    host, served = host_and_nodes
    problems = []
    for node in served:
        path = str(nodes[node].info("server").get("config_file") or "")
        if not path:
            problems.append(f"{node}: redis-server runs without a config file")
            continue
        try:
            conf = read_config(host, path)
        except FileNotFoundError:
            problems.append(f"{node}: its config file {path} is not on the host")
            continue
        port = str(split_addr(node)[1])
        expected = {
            "maxmemory-policy": MAXMEMORY_POLICY,
            "maxmemory": topology.maxmemory,
            "appendonly": "yes" if topology.persistence == "aof" else "no",
            "cluster-enabled": "yes" if topology.mode == "cluster" else "no",
        }
        if topology.persistence == "aof":
            expected["appendfsync"] = APPENDFSYNC
        for name, value in expected.items():
            actual = conf.get(name, "no" if name == "cluster-enabled" else "(unset)")
            if actual.lower() != value.lower():
                problems.append(f"{node}: {path} sets {name} {actual} (wants {value})")
        if port not in (conf.get("port"), conf.get("tls-port")):
            problems.append(f"{node}: {path} does not set port {port}")
    assert not problems, "; ".join(problems)

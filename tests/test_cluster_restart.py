"""A 3x2 cluster survives all its nodes restarting at once on new addresses, with its data.

This is what happens to a StatefulSet whose pods are all rescheduled: every node comes back
with its volume (data, nodes.conf) but a new IP. Here the six nodes come back on other
loopback addresses (127.0.0.x), their nodes.conf repaired by `cluster_repair` as the
chart's init container does, and the cluster must be whole again with no manual step.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.cluster

from courseredis.cluster_bootstrap import cluster_health
from courseredis.cluster_repair import RepairReport
from courseredis.environments import load_environment
from courseredis.local import LocalStack, LocalStackError, restart_stack, start_stack, stop_stack
from courseredis.local import stack as local_stack
from courseredis.local.processes import is_our_redis, read_pid
from courseredis.patterns.sessions import Sessions
from courseredis.topology import TOTAL_SLOTS, parse_cluster_nodes, split_addr
from tests.support import node

PROD = load_environment("prod").redis
KEYS = 1000


def new_hosts(stack: LocalStack) -> list[str]:
    """A distinct random 127.0.0.x per node: parallel runs (other ports too) do not collide."""
    taken = set(stack.hosts)
    choices = [f"127.0.0.{x}" for x in range(2, 251) if f"127.0.0.{x}" not in taken]
    return random.SystemRandom().sample(choices, len(stack.nodes))


def cluster_client(stack: LocalStack) -> redis.cluster.RedisCluster:
    host, port = split_addr(stack.nodes[0])
    return redis.cluster.RedisCluster(
        host=host,
        port=port,
        username=stack.username,
        password=stack.password,
        decode_responses=True,
    )


def roles(stack: LocalStack) -> dict[str, tuple[str | None, tuple[tuple[int, int], ...]]]:
    """node id -> (its master's id or None, its slots), as node 0 sees the cluster."""
    with node(stack, 0) as client:
        view = parse_cluster_nodes(str(client.execute_command("CLUSTER", "NODES")))
    return {n.node_id: (n.master_id, n.slots) for n in view}


def write_keys(stack: LocalStack, count: int) -> dict[str, str]:
    values = {f"restart:{i}": secrets.token_hex(8) for i in range(count)}
    with cluster_client(stack) as client:
        client.mset_nonatomic(values)
    return values


def assert_whole(stack: LocalStack, values: dict[str, str]) -> None:
    for index in range(len(stack.nodes)):
        with node(stack, index) as client:
            info = client.cluster("INFO")
        assert info["cluster_state"] == "ok", (stack.nodes[index], info)
        assert int(info["cluster_slots_assigned"]) == TOTAL_SLOTS
        assert int(info["cluster_slots_ok"]) == TOTAL_SLOTS
        assert int(info["cluster_known_nodes"]) == 6
    health = cluster_health(stack.nodes, stack.username, stack.password, 1)
    assert health.ok, health.problems
    assert len(health.masters) == 3
    assert sum(m.slot_count for m in health.masters) == TOTAL_SLOTS
    assert all(len(m.replicas) == 1 for m in health.masters)
    with cluster_client(stack) as client:
        names = list(values)
        assert dict(zip(names, client.mget_nonatomic(names), strict=True)) == values


@pytest.fixture
def prod_stack(tmp_path: Path) -> Iterator[list[LocalStack]]:
    """A running 3x2 cluster in a one-item list: tests replace it as it moves."""
    holder = [start_stack(PROD, tmp_path / "prod", env="prod")]
    yield holder
    stop_stack(holder[0])


def test_the_cluster_comes_back_on_new_addresses_with_its_data(
    prod_stack: list[LocalStack],
) -> None:
    before = prod_stack[0]
    values = write_keys(before, KEYS)
    # Written by the patterns' Lua too: the AOF replays script effects as MULTI/EXEC blocks,
    # which Redis 7.0 dropped while `default` lacked permissions (sessions were lost).
    with cluster_client(before) as client:
        sessions = [Sessions(client).create(i, ["student"]) for i in range(1, 51)]
    identity = roles(before)

    hosts = new_hosts(before)
    after = prod_stack[0] = restart_stack(before, PROD, hosts=hosts)
    with cluster_client(after) as client:
        for session in sessions:
            assert Sessions(client).read(session.session_id) == session.__class__(
                session.session_id,
                session.user_id,
                session.roles,
                session.created_at_ms,
                session.last_activity_ms,
            )

    assert after.hosts == hosts
    assert after.ports == before.ports
    assert not any(is_our_redis(pid) for pid in before.pids)
    assert_whole(after, values)
    # The same cluster, from its files: same node ids, same masters, same slots; no node
    # was forgotten, re-met or re-formed.
    assert roles(after) == identity
    with node(after, 0) as client:
        lines = str(client.execute_command("CLUSTER", "NODES")).splitlines()
    assert {line.split()[1].split(":")[0] for line in lines} == set(hosts)


def test_without_the_repair_it_stays_down_and_the_next_restart_repairs_it(
    prod_stack: list[LocalStack], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repair is what brings the cluster back, and it also heals an earlier failed start.

    Without it, the six nodes only know each other's old addresses and never meet again.
    For about `cluster-node-timeout` after the start, Redis 7.0 still reports
    `cluster_state:ok` on nodes that reach nobody; 3 x the node timeout is past that.
    """
    before = prod_stack[0]
    values = write_keys(before, 100)

    def no_repair(path: Path, **_: object) -> RepairReport:
        return RepairReport(path=path, exists=True)

    monkeypatch.setattr(local_stack, "repair_nodes_conf", no_repair)
    timeout_s = 3 * PROD.cluster_node_timeout_ms / 1000
    with pytest.raises(LocalStackError, match="not healthy") as caught:
        restart_stack(before, PROD, hosts=new_hosts(before), timeout_s=timeout_s)
    assert str(caught.value).count("cluster_state:fail") == 6
    # The failed restart stopped what it started.
    pidfiles = sorted(before.data_dir.glob("node-*/redis.pid"))
    pids = [read_pid(p) for p in pidfiles]
    assert not any(is_our_redis(pid) for pid in pids if pid is not None)

    monkeypatch.undo()
    prod_stack[0] = restart_stack(before, PROD)
    assert_whole(prod_stack[0], values)

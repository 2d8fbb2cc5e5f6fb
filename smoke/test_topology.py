"""Topology: the node answers, or the cluster is whole, with its replicas, spread out."""

from __future__ import annotations

import pytest
import redis
from redis.exceptions import RedisError

from courseredis.cluster_bootstrap import ClusterHealth, cluster_health
from courseredis.environments import RedisTopology
from courseredis.topology import TOTAL_SLOTS
from courseredis.waiting import TimedOut, wait_until
from smoke.hosts import HostSpec, machine_of, nodes_on, placement_problems
from smoke.target import LOCAL_HOST, Target

SETTLE_S = 10.0


def test_every_node_answers_as_the_admin(nodes: dict[str, redis.Redis]) -> None:
    silent = {}
    for addr, client in nodes.items():
        try:
            client.ping()
        except RedisError as exc:
            silent[addr] = f"{type(exc).__name__}: {exc}"
    assert not silent, f"nodes that do not answer PING: {silent}"


def test_mode_and_node_count_are_the_environments(
    target: Target, topology: RedisTopology, nodes: dict[str, redis.Redis]
) -> None:
    env = target.env.name
    assert target.mode == topology.mode, (
        f"the target is {target.mode}, Pulumi.{env}.yaml says {topology.mode}"
    )
    wrong = {
        addr: client.info("cluster").get("cluster_enabled")
        for addr, client in nodes.items()
        if bool(client.info("cluster").get("cluster_enabled")) != (topology.mode == "cluster")
    }
    assert not wrong, f"{env} is {topology.mode}, but these nodes say cluster_enabled={wrong}"
    assert len(nodes) == topology.node_count, (
        f"{env} runs {topology.node_count} node(s), {len(nodes)} given: {sorted(nodes)}"
    )


@pytest.fixture(scope="module")
def health(target: Target, topology: RedisTopology) -> ClusterHealth:
    if topology.mode != "cluster":
        pytest.skip(f"{target.env.name} is a single node: no cluster to check")
    # A cluster settling after a deploy (a replica still syncing, a bus link coming up) gets
    # a few seconds; what is still wrong after them is reported.
    seen: list[ClusterHealth] = []

    def healthy() -> ClusterHealth | None:
        health = cluster_health(
            target.nodes,
            target.redis_admin.username,
            target.redis_admin.password,
            topology.replicas_per_master,
        )
        seen.append(health)
        return health if health.ok else None

    try:
        return wait_until(healthy, timeout_s=SETTLE_S, what="a healthy cluster", interval_s=0.5)
    except TimedOut:
        return seen[-1]  # not healthy: the tests below say why


def test_single_node_is_a_master(topology: RedisTopology, nodes: dict[str, redis.Redis]) -> None:
    if topology.mode != "standalone":
        pytest.skip("cluster: masters are checked by the cluster tests")
    roles = {addr: c.info("replication").get("role") for addr, c in nodes.items()}
    assert set(roles.values()) == {"master"}, f"roles: {roles}"


def test_cluster_state_ok_with_every_slot(
    health: ClusterHealth, nodes: dict[str, redis.Redis]
) -> None:
    problems = []
    for addr, client in nodes.items():
        info = client.cluster("info")
        if info.get("cluster_state") != "ok":
            problems.append(f"{addr}: cluster_state:{info.get('cluster_state')}")
        for key in ("cluster_slots_assigned", "cluster_slots_ok"):
            if int(info.get(key, 0)) != TOTAL_SLOTS:
                problems.append(f"{addr}: {key}:{info.get(key)} (wants {TOTAL_SLOTS})")
    assert not problems, "; ".join(problems)


def test_every_master_has_its_replicas(health: ClusterHealth, topology: RedisTopology) -> None:
    assert len(health.masters) == topology.masters, (
        f"{len(health.masters)} masters own slots, the environment wants {topology.masters}: "
        f"{[m.addr for m in health.masters]}"
    )
    assert health.ok, "cluster not healthy: " + "; ".join(health.problems)
    short = {
        m.addr: m.replicas for m in health.masters if len(m.replicas) < topology.replicas_per_master
    }
    assert not short, f"masters with fewer than {topology.replicas_per_master} replica(s): {short}"


def test_no_master_shares_a_host_with_its_replica(health: ClusterHealth, target: Target) -> None:
    if not target.hosts:
        pytest.skip(
            "placement NOT checked: the nodes' hosts are unknown (give --smoke-hosts / "
            "SMOKE_HOSTS, e.g. kubectl://redis-0?namespace=...&container=redis per pod)"
        )
    if target.hosts == [LOCAL_HOST]:
        pytest.skip("placement not applicable: every node of the local stack runs on this machine")
    specs = [HostSpec.parse(h) for h in target.hosts]
    machine: dict[str, str] = {}
    for spec in specs:
        where = machine_of(spec, target.kubectl)
        for node in nodes_on(spec, specs, target.nodes):
            machine[node] = where
    unknown = sorted(set(target.nodes) - set(machine))
    assert not unknown, f"no host given for nodes {unknown}: cannot check their placement"
    together = placement_problems([(m.addr, m.replicas) for m in health.masters], machine)
    assert not together, "; ".join(together)

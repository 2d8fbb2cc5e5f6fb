"""The cluster bootstrap on real, bare cluster-enabled redis-server nodes.

Every integration test starts six lone nodes (what a StatefulSet gives the Kubernetes Job)
through `start_nodes`, which does not form a cluster, and stops them afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from courseredis.cluster_bootstrap import (
    BootstrapError,
    bootstrap_cluster,
    cluster_health,
    even_shares,
    main,
    wait_until_healthy,
)
from courseredis.environments import load_environment
from courseredis.local import LocalStack, start_nodes, stop_stack
from courseredis.local.ports import free_ports
from courseredis.topology import TOTAL_SLOTS, parse_cluster_nodes, split_addr
from tests.support import node

PROD = load_environment("prod").redis


# --- pure parts -----------------------------------------------------------------------------


def test_even_shares_split_a_new_cluster_evenly() -> None:
    assert even_shares([0, 0, 0], TOTAL_SLOTS) == [5462, 5461, 5461]


def test_even_shares_give_the_rest_to_the_masters_that_have_least() -> None:
    assert even_shares([5462, 5461, 0], 5461) == [0, 0, 5461]
    assert even_shares([100, 0, 0], 100) == [0, 50, 50]
    assert even_shares([100, 0, 0], 300) == [34, 133, 133]


# --- on real nodes --------------------------------------------------------------------------


@pytest.fixture
def bare_nodes(tmp_path: Path) -> Iterator[LocalStack]:
    stack = start_nodes(PROD, tmp_path / "nodes", env="prod")
    try:
        yield stack
    finally:
        stop_stack(stack)


def cluster(stack: LocalStack, index: int, *args: str | int) -> str:
    with node(stack, index) as client:
        return str(client.execute_command("CLUSTER", *args))


def bus_port(stack: LocalStack, index: int) -> int:
    """The node's own cluster bus port, from the first (`myself`) line it reports."""
    me = [n for n in parse_cluster_nodes(cluster(stack, index, "NODES")) if n.myself]
    return me[0].bus_port


def bootstrap(stack: LocalStack, nodes: list[str] | None = None, replicas: int = 1) -> list[str]:
    report = bootstrap_cluster(
        stack.nodes if nodes is None else nodes,
        masters=PROD.masters,
        replicas_per_master=replicas,
        username=stack.username,
        password=stack.password,
        timeout_s=30,
    )
    assert report.changed == bool(report.actions)
    return report.actions


def assert_three_masters_each_with_a_replica(stack: LocalStack) -> None:
    health = cluster_health(stack.nodes, stack.username, stack.password, 1)
    assert health.ok, health.problems
    assert len(health.masters) == 3
    assert sum(m.slot_count for m in health.masters) == TOTAL_SLOTS
    assert all(len(m.replicas) == 1 for m in health.masters)
    replicas = [r for m in health.masters for r in m.replicas]
    assert sorted([m.addr for m in health.masters] + replicas) == sorted(stack.nodes)


def test_bare_nodes_are_not_healthy(bare_nodes: LocalStack) -> None:
    health = cluster_health(bare_nodes.nodes, bare_nodes.username, bare_nodes.password, 1)
    assert not health.ok
    assert f"{bare_nodes.nodes[0]}: cluster_state:fail" in health.problems


def test_bootstrap_forms_the_cluster_and_a_second_run_changes_nothing(
    bare_nodes: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    actions = bootstrap(bare_nodes)
    assert sum("SET-CONFIG-EPOCH" in a for a in actions) == 3
    assert sum("MEET" in a for a in actions) == 5
    assert sum("ADDSLOTSRANGE" in a for a in actions) == 3
    assert sum("REPLICATE" in a for a in actions) == 3
    assert_three_masters_each_with_a_replica(bare_nodes)

    report = bootstrap_cluster(
        bare_nodes.nodes,
        masters=3,
        replicas_per_master=1,
        username=bare_nodes.username,
        password=bare_nodes.password,
    )
    assert report.changed is False
    assert report.actions == []

    # The Job's entry point says the same, with the credentials from the environment.
    monkeypatch.setenv("REDIS_USERNAME", str(bare_nodes.username))
    monkeypatch.setenv("REDIS_PASSWORD", str(bare_nodes.password))
    nodes = ",".join(bare_nodes.nodes)
    assert main(["--nodes", nodes, "--masters", "3", "--replicas-per-master", "1"]) == 0
    out = capsys.readouterr().out
    assert "cluster already healthy; nothing to do" in out
    assert out.rstrip().endswith("cluster healthy")


def test_bootstrap_finishes_an_interrupted_slot_assignment(bare_nodes: LocalStack) -> None:
    # A Job killed after the MEETs and two of the three ADDSLOTSRANGE.
    for index in range(1, 6):
        host, port = split_addr(bare_nodes.nodes[index])
        cluster(bare_nodes, 0, "MEET", host, port, bus_port(bare_nodes, index))
    cluster(bare_nodes, 0, "ADDSLOTSRANGE", 0, 5461)
    cluster(bare_nodes, 1, "ADDSLOTSRANGE", 5462, 10922)

    actions = bootstrap(bare_nodes)

    assert not [a for a in actions if "MEET" in a or "SET-CONFIG-EPOCH" in a]
    assert [a for a in actions if "ADDSLOTSRANGE" in a] == [
        f"{bare_nodes.nodes[2]}: CLUSTER ADDSLOTSRANGE 10923 16383"
    ]
    assert_three_masters_each_with_a_replica(bare_nodes)
    health = cluster_health(bare_nodes.nodes, bare_nodes.username, bare_nodes.password, 1)
    assert [m.slot_count for m in health.masters] == [5462, 5461, 5461]


def test_bootstrap_gives_a_master_its_missing_replica(bare_nodes: LocalStack) -> None:
    # A cluster formed without the sixth node: the third master has no replica.
    bootstrap(bare_nodes, nodes=bare_nodes.nodes[:5], replicas=0)
    lonely = cluster_health(bare_nodes.nodes[:5], bare_nodes.username, bare_nodes.password, 1)
    assert [len(m.replicas) for m in lonely.masters] == [1, 1, 0]

    actions = bootstrap(bare_nodes)

    newcomer, third_master = bare_nodes.nodes[5], bare_nodes.nodes[2]
    assert len(actions) == 2
    assert actions[0].endswith(
        f"CLUSTER MEET {newcomer.replace(':', ' ')} {bus_port(bare_nodes, 5)}"
    )
    assert actions[1].startswith(f"{newcomer}: CLUSTER REPLICATE ")
    assert actions[1].endswith(f"(replica of {third_master})")
    assert_three_masters_each_with_a_replica(bare_nodes)


def test_bootstrap_refuses_too_few_nodes(bare_nodes: LocalStack) -> None:
    with pytest.raises(BootstrapError, match="need 6 nodes, got 5"):
        bootstrap(bare_nodes, nodes=bare_nodes.nodes[:5])


def test_bootstrap_refuses_wrong_credentials_at_once(bare_nodes: LocalStack) -> None:
    with pytest.raises(BootstrapError, match="refused the credentials"):
        bootstrap_cluster(
            bare_nodes.nodes,
            masters=3,
            replicas_per_master=1,
            username="admin",
            password="wrong",
            timeout_s=30,
        )


def test_bootstrap_times_out_naming_the_silent_node(bare_nodes: LocalStack) -> None:
    silent = f"127.0.0.1:{free_ports(1)[0]}"
    with pytest.raises(BootstrapError, match=rf"waiting for nodes to answer PING: {silent} \("):
        bootstrap_cluster(
            [*bare_nodes.nodes[:5], silent],
            masters=3,
            replicas_per_master=1,
            username=bare_nodes.username,
            password=bare_nodes.password,
            timeout_s=0.3,
        )


def test_waiting_for_health_times_out_with_what_is_still_wrong(bare_nodes: LocalStack) -> None:
    with pytest.raises(BootstrapError, match="waiting for a healthy cluster") as caught:
        wait_until_healthy(
            bare_nodes.nodes, bare_nodes.username, bare_nodes.password, 1, timeout_s=0.2
        )
    assert f"{bare_nodes.nodes[0]}: cluster_state:fail" in str(caught.value)


def test_cli_exits_1_with_the_problems(
    bare_nodes: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_USERNAME", str(bare_nodes.username))
    monkeypatch.setenv("REDIS_PASSWORD", str(bare_nodes.password))
    nodes = ",".join(bare_nodes.nodes)
    assert main(["--nodes", nodes, "--masters", "3", "--replicas-per-master", "1", "--check"]) == 1
    captured = capsys.readouterr()
    assert "cluster NOT healthy" in captured.out
    assert "cluster_state:fail" in captured.err

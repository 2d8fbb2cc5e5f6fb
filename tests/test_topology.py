"""The cluster as its nodes describe it: `CLUSTER NODES` lines, merged views, addresses."""

from __future__ import annotations

import pytest

from courseredis.topology import (
    ClusterNode,
    merged_view,
    parse_cluster_nodes,
    slot_masters,
    slot_ranges,
    split_addr,
)

NODES_TEXT = """\
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,redis-0.redis myself,master - 0 0 1 connected 0-5460 7000 [5461->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30002@31002, master - 0 1426238316232 2 connected 5461-10922
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave,fail? 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 disconnected
c3a8ae5c5e7a8a0a8a0b5e1a1c3a8ae5c5e7a8a0 :30009@40009 noflags - 0 0 0 connected
"""  # noqa: E501


def line(node_id: str, flags: str, slots: str = "", master: str = "-") -> str:
    return f"{node_id} 10.0.0.1:6379@16379 {flags} {master} 0 0 1 connected {slots}"


# --- addresses ----------------------------------------------------------------------------------


def test_split_addr_splits_host_and_port() -> None:
    assert split_addr("redis-0.redis:6379") == ("redis-0.redis", 6379)


def test_split_addr_takes_ipv6_with_or_without_brackets() -> None:
    assert split_addr("[::1]:7000") == ("::1", 7000)
    assert split_addr("fd00::5:7000") == ("fd00::5", 7000)


@pytest.mark.parametrize("addr", ["redis-0", "redis-0:", ":6379", "redis-0:port", ""])
def test_split_addr_refuses_what_is_not_host_port(addr: str) -> None:
    with pytest.raises(ValueError, match="is not host:port"):
        split_addr(addr)


def test_an_empty_host_is_accepted_where_redis_writes_one() -> None:
    # A node that has not learned its own IP yet lists itself as `:port`.
    assert split_addr(":30009", host_required=False) == ("", 30009)


# --- CLUSTER NODES ------------------------------------------------------------------------------


def test_parse_cluster_nodes_reads_the_redis_7_address_format() -> None:
    first, second, replica, fresh = parse_cluster_nodes(NODES_TEXT)
    assert (first.host, first.port, first.bus_port) == ("127.0.0.1", 30001, 31001)
    assert first.hostname == "redis-0.redis"
    assert first.myself
    assert first.is_master
    assert not first.is_replica
    assert first.slots == ((0, 5460), (7000, 7000))
    assert first.slot_count == 5462
    assert first.owns(7000) and not first.owns(6000)
    assert first.open_slots == ("[5461->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]",)
    assert first.config_epoch == 1
    assert second.hostname is None
    assert second.master_id is None
    assert replica.is_replica
    assert replica.failing
    assert replica.master_id == "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1"
    assert replica.link_state == "disconnected"
    assert (fresh.host, fresh.port, fresh.bus_port) == ("", 30009, 40009)
    assert fresh.flags == frozenset()


def test_parse_cluster_nodes_refuses_a_malformed_line() -> None:
    with pytest.raises(ValueError, match="malformed CLUSTER NODES line"):
        parse_cluster_nodes("e7d1 127.0.0.1:30001@31001 master - 0 0")
    with pytest.raises(ValueError, match="malformed CLUSTER NODES line"):
        parse_cluster_nodes("e7d1 127.0.0.1@31001 master - 0 0 1 connected")


def test_slot_ranges_collapse_runs() -> None:
    assert slot_ranges([5, 1, 2, 3, 9, 10]) == [(1, 3), (5, 5), (9, 10)]


# --- the cluster from several views -------------------------------------------------------------


def test_a_nodes_own_line_wins_over_what_others_say_of_it() -> None:
    # b has heard that a is a master with slots; a knows it was demoted by a failover.
    b_view = parse_cluster_nodes(
        line("b", "myself,master", "0-16383") + "\n" + line("a", "master", "0-100")
    )
    a_view = parse_cluster_nodes(line("a", "myself,slave", master="b"))
    merged = merged_view([b_view, a_view])
    assert merged["a"].is_replica
    assert merged["b"].slots == ((0, 16383),)


def test_nodes_in_handshake_or_without_address_are_not_members() -> None:
    view = parse_cluster_nodes(
        "\n".join([line("a", "myself,master"), line("h", "master,handshake"), line("n", "noaddr")])
    )
    assert list(merged_view([view])) == ["a"]


def test_slot_masters_are_the_healthy_owners_by_first_slot() -> None:
    nodes = parse_cluster_nodes(
        "\n".join(
            [
                line("c", "master", "10923-16383"),
                line("a", "master", "0-5460"),
                line("r", "slave", master="a"),
                line("idle", "master"),
                line("b", "master,fail", "5461-10922"),
            ]
        )
    )
    assert [n.node_id for n in slot_masters(nodes)] == ["a", "c"]
    assert [n.node_id for n in slot_masters(nodes, include_failing=True)] == ["a", "b", "c"]


def test_a_cluster_node_names_its_address() -> None:
    node: ClusterNode = parse_cluster_nodes(line("a", "master"))[0]
    assert node.addr == "10.0.0.1:6379"

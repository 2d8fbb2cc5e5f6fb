"""The environments: one definition in the stack files, validated when read."""

from __future__ import annotations

import pytest

from courseredis.environments import RedisTopology, StackConfigError, load_environment


def test_dev_is_one_node_and_prod_a_cluster_of_three_masters_with_replicas():
    dev, prod = load_environment("dev").redis, load_environment("prod").redis
    assert (dev.mode, dev.node_count) == ("standalone", 1)
    assert (prod.mode, prod.masters, prod.replicas_per_master) == ("cluster", 3, 1)
    assert prod.node_count == 6 and prod.persistence == "aof"


def test_logouts_wait_for_a_replica_only_where_there_are_replicas():
    dev, prod = load_environment("dev").redis, load_environment("prod").redis
    assert (dev.logout_replica_acks, prod.logout_replica_acks) == (0, 1)
    without_replicas = RedisTopology(
        mode="cluster",
        masters=3,
        replicas_per_master=0,
        persistence="aof",
        maxmemory="256mb",
        cluster_node_timeout_ms=2000,
    )
    assert without_replicas.logout_replica_acks == 0


def test_an_unknown_environment_names_the_known_ones():
    with pytest.raises(StackConfigError, match=r"known: \['dev', 'prod'\]"):
        load_environment("staging")


GOOD = {
    "mode": "cluster",
    "masters": 3,
    "replicasPerMaster": 1,
    "persistence": "aof",
    "maxmemory": "1gb",
    "clusterNodeTimeoutMs": 2000,
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mode": "sentinel"}, "redis.mode: .*'standalone' or 'cluster'"),
        ({"masters": 2}, "at least 3 masters"),
        ({"mode": "standalone"}, "exactly one node"),
        ({"persistence": "rdb"}, "redis.persistence: .*'none' or 'aof'"),
        ({"maxmemory": "lots"}, "redis.maxmemory: must look like 256mb"),
        ({"replicasPerMaster": -1}, "redis.replicasPerMaster: .*greater than or equal to 0"),
        ({"masters": True}, "redis.masters: .*valid integer, not True"),
        ({"clusterNodeTimeoutMs": 100}, "redis.clusterNodeTimeoutMs: .*flap"),
        ({"extra": 1}, "redis.extra: unknown key"),
    ],
)
def test_a_wrong_topology_is_refused_with_the_reason(change, message):
    with pytest.raises(StackConfigError, match=message):
        RedisTopology.from_config({**GOOD, **change})

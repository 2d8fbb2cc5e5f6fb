"""Scenario 1, short: a master killed under load; and the replica acknowledgement of
revocations that keeps an acknowledged logout through the failover."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import redis

from courseredis import keys
from courseredis.cluster_bootstrap import parse_cluster_nodes
from courseredis.connection import create_client, open_async_client
from courseredis.local import LocalStack
from courseredis.ops.chaos import failover
from courseredis.patterns.blacklist import (
    Blacklist,
    NotReplicated,
    ReplicaAck,
    revoke_script,
    write_acknowledged_async,
)
from courseredis.patterns.flow import Command, Script
from courseredis.patterns.refresh import RefreshTokens, RotationStatus
from tests.chaos.support import assert_passed
from tests.support import settings_for


def test_a_master_killed_under_load(tmp_path: Path) -> None:
    result = failover.run(tmp_path / "failover", failover.FailoverOptions.short())
    assert_passed(result)
    figures = result.figures
    assert figures["http_500"] == 0
    assert figures["revocations_lost"] == 0
    # Without the acknowledgement, revocations the master took after losing its replica
    # are gone with it; the acknowledged ones were never acknowledged.
    assert figures["unacked_revocations_lost"].split("/")[0] != "0"
    assert figures["acked_probe"] != "acknowledged"


def _node(stack: LocalStack, host: str, port: int) -> redis.Redis:
    return redis.Redis(host=host, port=port, username=stack.username, password=stack.password)


def _on_replica(stack: LocalStack, key: str) -> bool:
    """Whether the replica of the key's master has the key (read there, READONLY)."""
    with create_client(settings_for(stack)) as client:
        master = client.get_node_from_key(key)
    with _node(stack, master.host, master.port) as node:
        view = parse_cluster_nodes(node.execute_command("CLUSTER", "NODES").decode())
    me = next(n for n in view if n.myself)
    replica = next(n for n in view if n.master_id == me.node_id)
    with _node(stack, replica.host, replica.port) as node:
        node.execute_command("READONLY")
        return bool(node.exists(key))


def test_an_acknowledged_revocation_is_on_the_replica(cluster: LocalStack) -> None:
    jti = uuid.uuid4()
    with create_client(settings_for(cluster)) as client:
        assert Blacklist(client, ack=ReplicaAck(1, 1000)).revoke(jti, int(time.time()) + 600)
    assert _on_replica(cluster, keys.jwt_revoked(jti))


async def test_a_logouts_three_writes_wait_on_each_of_their_nodes(cluster: LocalStack) -> None:
    client = await open_async_client(settings_for(cluster))
    try:
        jti, family = uuid.uuid4(), str(uuid.uuid4())
        writes: list[Command | Script] = [
            revoke_script(jti, int(time.time()) + 600),
            Command(("SET", keys.refresh_token(family), "{}", "PX", 60_000)),
            Command(("SET", keys.session(str(uuid.uuid4())), "x", "PX", 60_000)),
        ]
        result = await write_acknowledged_async(client, writes, ReplicaAck(1, 1000))
    finally:
        await client.aclose()
    assert result.acked, result.detail
    assert int(result.replies[0]) > 0 and result.replies[1] is True
    assert _on_replica(cluster, keys.refresh_token(family))


def test_without_a_replica_a_revocation_is_not_acknowledged(single_node: LocalStack) -> None:
    jti = uuid.uuid4()
    with create_client(settings_for(single_node)) as client:
        with pytest.raises(NotReplicated, match="0 of 1 replica"):
            Blacklist(client, ack=ReplicaAck(1, 50)).revoke(jti, int(time.time()) + 600)
        # The write itself happened: a client repeating the logout changes nothing.
        assert Blacklist(client).is_revoked(jti)


def test_without_a_replica_a_rotation_still_answers(single_node: LocalStack) -> None:
    with create_client(settings_for(single_node)) as client:
        tokens = RefreshTokens(client, ack=ReplicaAck(1, 50))
        issued = tokens.issue(7, "courses")
        assert tokens.rotate(issued.token).status is RotationStatus.ROTATED
        # A revocation is never acknowledged without its replica.
        with pytest.raises(NotReplicated):
            tokens.revoke(issued.record.family)

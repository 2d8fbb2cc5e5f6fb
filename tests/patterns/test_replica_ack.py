"""Replica acknowledgement: a write is acknowledged once a replica of its node holds it."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from courseredis import keys
from courseredis.connection import create_client, open_async_client
from courseredis.local import LocalStack
from courseredis.patterns.blacklist import revoke_script
from courseredis.patterns.flow import Command, Script
from courseredis.patterns.replica_ack import (
    NotReplicated,
    ReplicaAck,
    acknowledger,
    require_acknowledged,
    write_acknowledged,
    write_acknowledged_async,
)
from courseredis.topology import parse_cluster_nodes
from tests.support import settings_for


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


def test_an_acknowledged_write_is_on_the_replica(cluster: LocalStack) -> None:
    jti = uuid.uuid4()
    with create_client(settings_for(cluster)) as client:
        writes = [revoke_script(jti, int(time.time()) + 600)]
        result = write_acknowledged(client, writes, ReplicaAck(1, 1000))
    assert result.acked, result.detail
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


def test_without_a_replica_a_write_happens_but_is_not_acknowledged(
    single_node: LocalStack,
) -> None:
    key = keys.session(str(uuid.uuid4()))
    with create_client(settings_for(single_node)) as client:
        result = write_acknowledged(
            client, [Command(("SET", key, "x", "PX", 60_000))], ReplicaAck(1, 50)
        )
        assert not result.acked
        with pytest.raises(NotReplicated, match="0 of 1 replica"):
            require_acknowledged(result, "the write")
        # The write itself happened: repeating it changes nothing.
        assert client.exists(key) == 1


def test_no_replica_to_wait_for_turns_the_acknowledgement_off() -> None:
    assert acknowledger(None, ReplicaAck(0)) is None  # type: ignore[arg-type]
    assert acknowledger(None, None) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(("replicas", "timeout_ms"), [(-1, 250), (1, 0), (1, 10_001)])
def test_an_ack_out_of_bounds_is_refused(replicas: int, timeout_ms: int) -> None:
    with pytest.raises(ValueError, match="replicas >= 0"):
        ReplicaAck(replicas, timeout_ms)

"""Replica acknowledgement of security writes: `WAIT` after the write, on its connection.

Replication is asynchronous: a revocation only the master holds is lost if the master dies
before sending it on, and the replica promoted in its place accepts the revoked token again.
With an ack, the write is followed by `WAIT` on the very connection that made it (WAIT
counts that connection's writes only), and it is acknowledged once a replica has it. The
blacklist, the refresh tokens and the auth service's logout use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    TimeoutError,
    TryAgainError,
)

from courseredis.connection import AsyncClient, SyncClient
from courseredis.patterns.flow import Command, Script


class NotReplicated(RedisError):
    """Redis took a write but no replica confirmed it in time: it is not acknowledged.

    A `RedisError`, so a service answers 503 (try again) instead of claiming a logout a
    failover could undo. The write may well be on the master: repeating it is safe.
    """


@dataclass(frozen=True)
class ReplicaAck:
    """How many replicas must confirm a write (`WAIT`), and how long to wait for them.

    `replicas` 0 turns the wait off: a single node has no replica, and `WAIT 1` there would
    always time out.
    """

    replicas: int = 1
    timeout_ms: int = 250

    def __post_init__(self) -> None:
        if self.replicas < 0 or not 0 < self.timeout_ms <= 10_000:
            raise ValueError(f"need replicas >= 0 and 0 < timeout_ms <= 10000, not {self}")


@dataclass(frozen=True)
class Acknowledged:
    """The replies of acknowledged writes (each its reply or its exception), and the ack."""

    replies: list[Any]
    acked: bool
    detail: str = ""


# Sends writes and WAITs (see `write_acknowledged`); what flows call through `Call`. The
# asyncio one returns an awaitable, which the asyncio driver awaits.
Acknowledge = Callable[[Sequence[Command | Script]], Any]


def acknowledger(client: SyncClient, ack: ReplicaAck | None) -> Acknowledge | None:
    """The writer a sync flow calls for acknowledged writes; None when `ack` is off."""
    if ack is None or not ack.replicas:
        return None
    return lambda writes: write_acknowledged(client, writes, ack)


def async_acknowledger(client: AsyncClient, ack: ReplicaAck | None) -> Acknowledge | None:
    if ack is None or not ack.replicas:
        return None
    return lambda writes: write_acknowledged_async(client, writes, ack)


def require_acknowledged(result: Acknowledged, what: str) -> list[Any]:
    """The replies; raise the first failed write's error, or `NotReplicated` if not acked."""
    for reply in result.replies:
        if isinstance(reply, Exception):
            raise reply
    if not result.acked:
        raise NotReplicated(f"{what} not confirmed by a replica: {result.detail}")
    return result.replies


def as_command(op: Command | Script) -> Command:
    """A script as `EVAL`: the connection that WAITs gets no second try after a NOSCRIPT
    (which a replica just promoted answers: script caches are not replicated)."""
    if isinstance(op, Command):
        return op
    return Command(("EVAL", op.script.source, len(op.keys), *op.keys, *op.args))


def _key_of(command: Command) -> str:
    name = str(command.args[0]).upper()
    return str(command.args[3] if name in ("EVAL", "EVALSHA") else command.args[1])


# The reply of a node that does not own the slot (any more), or is gone: the client's slot
# table is stale (a failover, a restart). Such writes are redone through the client's own
# path, which retries and relearns the layout; they stay unacknowledged.
_REROUTE = (
    ConnectionError,
    TimeoutError,
    AskError,  # and MovedError
    ClusterDownError,
    TryAgainError,
    ReadOnlyError,
    RedisClusterException,
)


def _judge(
    groups: list[tuple[list[int], list[Any]]], count: int, ack: ReplicaAck
) -> tuple[Acknowledged, list[int]]:
    """From each node's (write indices, pipeline replies with the WAIT's last): the
    outcome, and the writes to redo through the client's own path."""
    replies: list[Any] = [None] * count
    problems: list[str] = []
    reroute: list[int] = []
    for indices, node_replies in groups:
        for index, reply in zip(indices, node_replies, strict=False):
            replies[index] = reply
            if isinstance(reply, _REROUTE):
                reroute.append(index)
        confirmed = node_replies[-1]
        if isinstance(confirmed, Exception):
            problems.append(f"WAIT failed: {confirmed}")
        elif int(confirmed) < ack.replicas:
            problems.append(f"{confirmed} of {ack.replicas} replica(s) within {ack.timeout_ms} ms")
    return Acknowledged(replies, not problems, "; ".join(problems)), reroute


def _grouped(
    commands: Sequence[Command], node_of: Callable[[str], Any]
) -> dict[str, tuple[Any, list[int]]]:
    groups: dict[str, tuple[Any, list[int]]] = {}
    for index, command in enumerate(commands):
        node = node_of(_key_of(command))
        groups.setdefault(node.name, (node, []))[1].append(index)
    return groups


def write_acknowledged(
    client: SyncClient, writes: Sequence[Command | Script], ack: ReplicaAck
) -> Acknowledged:
    """Send `writes`, then `WAIT` on each node they went to, on the same connection.

    Never raises for a Redis failure: each write's reply is its result or its error.
    """
    commands = [as_command(w) for w in writes]
    wait = ("WAIT", ack.replicas, ack.timeout_ms)
    if not isinstance(client, redis.cluster.RedisCluster):
        pipe: Any = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command.args)
        pipe.execute_command(*wait)
        try:
            replies = pipe.execute(raise_on_error=False)
        except RedisError as error:
            replies = [error] * (len(commands) + 1)
        return _judge([(list(range(len(commands))), replies)], len(commands), ack)[0]

    groups: list[tuple[list[int], list[Any]]] = []
    try:
        by_node = _grouped(commands, client.get_node_from_key)
    except RedisClusterException as error:  # a slot nobody serves: ask the client's path
        by_node = {}
        groups.append((list(range(len(commands))), [error] * (len(commands) + 1)))
    for node, indices in by_node.values():
        # The node's own client: one pipeline, one connection, writes then WAIT.
        node_pipe: Any = client.get_redis_connection(node).pipeline(transaction=False)
        for index in indices:
            node_pipe.execute_command(*commands[index].args)
        node_pipe.execute_command(*wait)
        try:
            groups.append((indices, node_pipe.execute(raise_on_error=False)))
        except RedisError as error:
            groups.append((indices, [error] * (len(indices) + 1)))
    outcome, reroute = _judge(groups, len(commands), ack)
    if not reroute:
        return outcome
    replies = list(outcome.replies)
    for index in reroute:
        try:
            replies[index] = client.execute_command(*commands[index].args)  # type: ignore[no-untyped-call]
        except (RedisError, RedisClusterException) as error:
            replies[index] = error
    return Acknowledged(replies, False, outcome.detail or "the cluster's layout changed")


async def write_acknowledged_async(
    client: AsyncClient, writes: Sequence[Command | Script], ack: ReplicaAck
) -> Acknowledged:
    """`write_acknowledged` for an asyncio client; the nodes are written in parallel."""
    commands = [as_command(w) for w in writes]
    wait = ("WAIT", ack.replicas, ack.timeout_ms)
    if not isinstance(client, redis.asyncio.cluster.RedisCluster):
        pipe: Any = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command.args)
        pipe.execute_command(*wait)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except RedisError as error:
            replies = [error] * (len(commands) + 1)
        return _judge([(list(range(len(commands))), replies)], len(commands), ack)[0]

    groups: list[tuple[list[int], list[Any]]] = []
    try:
        by_node = _grouped(commands, client.get_node_from_key)
    except RedisClusterException as error:
        by_node = {}
        groups.append((list(range(len(commands))), [error] * (len(commands) + 1)))

    async def on_node(node: Any, indices: list[int]) -> tuple[list[int], list[Any]]:
        # One pipeline on one of the node's connections, writes then WAIT: the cluster
        # pipeline would lose a WAIT's target node if it retried after a connection error.
        queued = [
            redis.asyncio.cluster.PipelineCommand(i, *commands[index].args)
            for i, index in enumerate(indices)
        ]
        queued.append(redis.asyncio.cluster.PipelineCommand(len(indices), *wait))
        try:
            await node.execute_pipeline(queued)
        except RedisError as error:
            return indices, [error] * len(queued)
        return indices, [command.result for command in queued]

    groups += await asyncio.gather(*(on_node(n, i) for n, i in by_node.values()))
    outcome, reroute = _judge(groups, len(commands), ack)
    if not reroute:
        return outcome
    replies = list(outcome.replies)
    for index in reroute:
        try:
            replies[index] = await client.execute_command(*commands[index].args)
        except (RedisError, RedisClusterException) as error:
            replies[index] = error
    return Acknowledged(replies, False, outcome.detail or "the cluster's layout changed")

"""Start and stop a stack of `redis-server` nodes on loopback for one environment's topology.

A stack is the nodes of a `RedisTopology` (one standalone node, or a cluster formed by
`bootstrap_cluster`, the same code the Kubernetes Job runs), all reached through one
`admin` ACL account with a random password. `LocalStack` is what callers keep: the
addresses, the credentials and the PIDs that stop it.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from redis.exceptions import RedisError

from courseredis.cluster_bootstrap import BootstrapError, bootstrap_cluster, cluster_health
from courseredis.environments import Mode, RedisTopology
from courseredis.local.nodes import (
    ADMIN_USER,
    launch_nodes,
    node_client,
    shutdown_nodes,
    stop_pids,
)
from courseredis.local.processes import LocalStackError, is_our_redis, redis_server_binary


@dataclass(frozen=True)
class LocalStack:
    """A running local stack: what a client needs to reach it and what stops it."""

    env: str
    mode: Mode
    nodes: list[str]  # "127.0.0.1:<port>", in start order: masters-to-be first
    username: str | None
    password: str | None
    pids: list[int]  # pids[i] serves nodes[i]
    data_dir: Path

    def to_json(self) -> dict[str, Any]:
        """The `redis` part of stack.json, plus `env`."""
        return {
            "env": self.env,
            "mode": self.mode,
            "nodes": list(self.nodes),
            "username": self.username,
            "password": self.password,
            "data_dir": str(self.data_dir),
            "pids": list(self.pids),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, env: str | None = None) -> LocalStack:
        """Read `to_json()` output, or the `redis` part of stack.json with `env` given apart."""
        try:
            return cls(
                env=str(env if env is not None else data["env"]),
                mode=cast(Mode, data["mode"]),
                nodes=[str(n) for n in data["nodes"]],
                username=data.get("username"),
                password=data.get("password"),
                pids=[int(p) for p in data["pids"]],
                data_dir=Path(data["data_dir"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LocalStackError(f"stack description is not valid: {exc!r}") from exc

    @property
    def ports(self) -> list[int]:
        return [int(node.rsplit(":", 1)[1]) for node in self.nodes]


def start_stack(
    topology: RedisTopology,
    data_dir: Path,
    *,
    env: str,
    redis_server: str = "redis-server",
    bootstrap_timeout_s: float = 30.0,
) -> LocalStack:
    """Start the nodes of `topology` under `data_dir` and, in cluster mode, form the cluster.

    Returns once the stack is usable: a standalone node answers, or the cluster is healthy
    (`cluster_state:ok`, every master with its replicas linked). On any failure every node
    already started is stopped before the error propagates.
    """
    stack = start_nodes(topology, data_dir, env=env, redis_server=redis_server)
    if topology.mode != "cluster":
        return stack
    try:
        bootstrap_cluster(
            stack.nodes,
            masters=topology.masters,
            replicas_per_master=topology.replicas_per_master,
            username=stack.username,
            password=stack.password,
            timeout_s=bootstrap_timeout_s,
        )
    except BaseException as exc:
        stop_stack(stack)
        if isinstance(exc, BootstrapError):
            raise LocalStackError(f"cluster bootstrap failed: {exc}") from exc
        raise
    return stack


def start_nodes(
    topology: RedisTopology,
    data_dir: Path,
    *,
    env: str,
    count: int | None = None,
    redis_server: str = "redis-server",
) -> LocalStack:
    """Start `count` (default: the topology's node count) nodes, without forming a cluster.

    Cluster-mode nodes come up as lone masters that know nobody: what `bootstrap_cluster`
    starts from, here and in Kubernetes. Leftover node directories of a stack that is no
    longer running are removed first; a running one is an error.
    """
    binary = redis_server_binary(redis_server)
    data_dir = data_dir.resolve()
    password = secrets.token_urlsafe(24)
    nodes = launch_nodes(
        topology,
        data_dir,
        count=topology.node_count if count is None else count,
        password=password,
        binary=binary,
    )
    return LocalStack(
        env=env,
        mode=topology.mode,
        nodes=[n.addr for n in nodes],
        username=ADMIN_USER,
        password=password,
        pids=[n.running_pid for n in nodes],
        data_dir=data_dir,
    )


def stop_stack(stack: LocalStack, *, remove_data: bool = False) -> None:
    """Stop every node of `stack` by PID and wait until each has exited.

    Each node first gets `SHUTDOWN NOSAVE NOW FORCE` through the admin account (the stack
    is disposable: nothing to save, no replica to wait for); a node that does not exit in
    a few seconds gets SIGTERM, then SIGKILL, each only after checking the PID still is
    that node's `redis-server`.
    """
    accepted = shutdown_nodes(stack.nodes, stack.username, stack.password)
    stop_pids(list(zip(stack.pids, stack.ports, strict=True)), expect_exit=accepted)
    if remove_data:
        shutil.rmtree(stack.data_dir, ignore_errors=True)


@contextmanager
def running_stack(
    topology: RedisTopology, data_dir: Path, *, env: str, redis_server: str = "redis-server"
) -> Iterator[LocalStack]:
    """Start a stack, yield it, and always stop it."""
    stack = start_stack(topology, data_dir, env=env, redis_server=redis_server)
    try:
        yield stack
    finally:
        stop_stack(stack)


def check_stack(stack: LocalStack, topology: RedisTopology) -> list[str]:
    """Why `stack` is not a healthy instance of `topology`; empty when it is."""
    problems = [
        f"{node} (pid {pid}) is not running"
        for node, pid, port in zip(stack.nodes, stack.pids, stack.ports, strict=True)
        if not is_our_redis(pid, port)
    ]
    if problems:
        return problems
    if stack.mode != topology.mode or len(stack.nodes) != topology.node_count:
        return [
            f"stack is {len(stack.nodes)} {stack.mode} node(s), the topology wants "
            f"{topology.node_count} {topology.mode}"
        ]
    if stack.mode == "cluster":
        health = cluster_health(
            stack.nodes, stack.username, stack.password, topology.replicas_per_master
        )
        return health.problems
    for node in stack.nodes:
        try:
            with node_client(node, stack.username, stack.password) as client:
                client.ping()
        except RedisError as exc:
            problems.append(f"{node}: {type(exc).__name__}: {exc}")
    return problems

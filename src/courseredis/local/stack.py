"""Start, stop and restart a stack of `redis-server` nodes on loopback for one topology.

A stack is the nodes of a `RedisTopology` (one standalone node, or a cluster formed by
`bootstrap_cluster`, the same code the Kubernetes Job runs), reached through an `admin` ACL
account and one ACL user per service (`courseredis.acl`, as in prod), all with random
passwords. `LocalStack` is what callers keep: the addresses, the credentials and the PIDs
that stop it.

`restart_stack` stops every node keeping its data and nodes.conf, and starts them again on
other loopback addresses, as a Kubernetes cluster does when all the pods are rescheduled:
the nodes' nodes.conf are repaired by `cluster_repair` (the code of the chart's init
container) from the names the nodes announce, and the cluster comes back by itself.
"""

from __future__ import annotations

import ipaddress
import random
import secrets
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError

from courseredis import acl
from courseredis.cluster_bootstrap import (
    BootstrapError,
    bootstrap_cluster,
    cluster_health,
    wait_until_healthy,
)
from courseredis.cluster_repair import RepairError, map_resolver, repair_nodes_conf
from courseredis.engines import Engine, EngineError, LocalEngine, local_engine, wanted_engine
from courseredis.environments import Mode, RedisTopology
from courseredis.local.nodes import (
    ADMIN_USER,
    NodeProcess,
    launch_nodes,
    node_client,
    node_directory,
    node_hostname,
    relaunch_nodes,
    shutdown_nodes,
    stop_pids,
)
from courseredis.local.processes import (
    LocalStackError,
    RedisServerMissingError,
    is_our_redis,
)
from courseredis.services import registry
from courseredis.stack_file import Account, EngineRecord, RedisRecord
from courseredis.topology import split_addr


@dataclass(frozen=True)
class LocalStack:
    """A running local stack: what a client needs to reach it and what stops it."""

    env: str
    mode: Mode
    nodes: list[str]  # "127.0.0.1:<port>", in start order: masters-to-be first
    username: str | None  # the admin account
    password: str | None
    pids: list[int]  # pids[i] serves nodes[i]
    data_dir: Path
    users: dict[str, str] = field(default_factory=dict)  # service -> its ACL user's password
    loadtest_password: str | None = None  # the redis_direct load suite's user (acl.LOADTEST_USER)
    engine: LocalEngine | None = None  # the server the nodes run; None: not recorded

    def record(self) -> RedisRecord:
        """The `redis` section of stack.json (the service users named after their service)."""
        return RedisRecord(
            mode=self.mode,
            nodes=list(self.nodes),
            username=self.username,
            password=self.password,
            users={
                service: Account(username=service, password=password)
                for service, password in self.users.items()
            },
            loadtest=Account(username=acl.LOADTEST_USER, password=self.loadtest_password)
            if self.loadtest_password
            else None,
            data_dir=self.data_dir,
            pids=list(self.pids),
            engine=_engine_record(self.engine) if self.engine is not None else None,
        )

    @classmethod
    def from_record(cls, record: RedisRecord, *, env: str) -> LocalStack:
        engine = record.engine
        return cls(
            env=env,
            mode=record.mode,
            nodes=list(record.nodes),
            username=record.username,
            password=record.password,
            pids=list(record.pids),
            data_dir=record.data_dir,
            users={service: user.password for service, user in record.users.items()},
            loadtest_password=record.loadtest.password if record.loadtest else None,
            engine=LocalEngine(
                name=engine.name,
                version=engine.version,
                binary=engine.binary,
                wanted_name=engine.wanted_name,
                wanted_version=engine.wanted_version,
            )
            if engine is not None
            else None,
        )

    def to_json(self) -> dict[str, Any]:
        """The `redis` section of stack.json as JSON, plus `env`."""
        return {"env": self.env, **self.record().model_dump(mode="json")}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, env: str | None = None) -> LocalStack:
        """Read `to_json()` output, or the `redis` part of stack.json with `env` given apart."""
        try:
            record = RedisRecord.model_validate({k: v for k, v in data.items() if k != "env"})
            return cls.from_record(record, env=str(env if env is not None else data["env"]))
        except (KeyError, ValidationError) as exc:
            raise LocalStackError(f"stack description is not valid: {exc}") from exc

    @property
    def ports(self) -> list[int]:
        return [split_addr(node)[1] for node in self.nodes]

    @property
    def hosts(self) -> list[str]:
        return [split_addr(node)[0] for node in self.nodes]

    @property
    def hostnames(self) -> list[str]:
        """The stable names the nodes announce to their peers (cluster mode)."""
        return [node_hostname(i) for i in range(len(self.nodes))]

    @property
    def binary(self) -> str | None:
        """The server binary the nodes were started from, when recorded."""
        return self.engine.binary if self.engine is not None else None


def _engine_record(engine: LocalEngine) -> EngineRecord:
    return EngineRecord(
        name=engine.name,
        version=engine.version,
        binary=engine.binary,
        wanted_name=engine.wanted_name,
        wanted_version=engine.wanted_version,
        note=engine.note,
    )


def resolve_engine(
    topology: RedisTopology, engine: Engine | None = None, binary: str | None = None
) -> LocalEngine:
    """The server this machine runs for `topology`: the stack's engine, or `engine` (else
    `COURSEREDIS_ENGINE`) when given, from the machine's packages (or `binary`)."""
    name, version = wanted_engine(topology.engine, topology.version, engine)
    try:
        return local_engine(name, version, binary=binary)
    except EngineError as exc:
        raise RedisServerMissingError(str(exc)) from None


def start_stack(
    topology: RedisTopology,
    data_dir: Path,
    *,
    env: str,
    redis_server: str | None = None,
    engine: Engine | None = None,
    bootstrap_timeout_s: float = 30.0,
) -> LocalStack:
    """Start the nodes of `topology` under `data_dir` and, in cluster mode, form the cluster.

    Returns once the stack is usable: a standalone node answers, or the cluster is healthy
    (`cluster_state:ok`, every master with its replicas linked). On any failure every node
    already started is stopped before the error propagates. The nodes run the stack's
    engine, or `engine` (else `COURSEREDIS_ENGINE`), from the machine's packages or
    `redis_server`; `LocalStack.engine` says which and at what version.
    """
    stack = start_nodes(topology, data_dir, env=env, redis_server=redis_server, engine=engine)
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
    redis_server: str | None = None,
    engine: Engine | None = None,
) -> LocalStack:
    """Start `count` (default: the topology's node count) nodes, without forming a cluster.

    Cluster-mode nodes come up as lone masters that know nobody: what `bootstrap_cluster`
    starts from, here and in Kubernetes. Leftover node directories of a stack that is no
    longer running are removed first; a running one is an error.
    """
    server = resolve_engine(topology, engine, redis_server)
    binary = server.binary
    data_dir = data_dir.resolve()
    password = secrets.token_urlsafe(24)
    service_passwords = {service: secrets.token_urlsafe(24) for service in registry.NAMES}
    loadtest_password = secrets.token_urlsafe(24)
    users = acl.all_users(password, service_passwords, loadtest_password)
    nodes = launch_nodes(
        topology,
        data_dir,
        count=topology.node_count if count is None else count,
        password=password,
        binary=binary,
        users={name: user for name, user in users.items() if name != ADMIN_USER},
    )
    return LocalStack(
        env=env,
        mode=topology.mode,
        nodes=[n.addr for n in nodes],
        username=ADMIN_USER,
        password=password,
        pids=[n.running_pid for n in nodes],
        data_dir=data_dir,
        users=service_passwords,
        loadtest_password=loadtest_password,
        engine=server,
    )


def stop_stack(stack: LocalStack, *, remove_data: bool = False, save: bool = False) -> None:
    """Stop every node of `stack` by PID and wait until each has exited.

    Each node first gets `SHUTDOWN NOSAVE NOW FORCE` through the admin account (the stack
    is disposable: nothing to save, no replica to wait for), or `SHUTDOWN SAVE NOW` with
    `save`; a node that does not exit in a few seconds gets SIGTERM, then SIGKILL, each
    only after checking the PID still is that node's `redis-server`.
    """
    accepted = shutdown_nodes(stack.nodes, stack.username, stack.password, save=save)
    stop_pids(list(zip(stack.pids, stack.ports, strict=True)), expect_exit=accepted)
    if remove_data:
        shutil.rmtree(stack.data_dir, ignore_errors=True)


def restart_stack(
    stack: LocalStack,
    topology: RedisTopology,
    *,
    hosts: Sequence[str] | None = None,
    redis_server: str | None = None,
    timeout_s: float = 30.0,
) -> LocalStack:
    """Stop every node of `stack` keeping its data, and start it again at a new address.

    Node `i` comes back at `hosts[i]` on its old ports (default: a distinct random
    127.0.0.x for each node, none of them a current address; Linux routes all of
    127.0.0.0/8 to the loopback interface). Each node is stopped with `SHUTDOWN SAVE`, so its
    AOF/RDB and nodes.conf are on disk. In cluster mode, every nodes.conf is repaired
    before its node starts (`repair_nodes_conf`, resolving the names the nodes announce to
    their new addresses), and the call returns once the cluster is healthy again, without
    any of the bootstrap's forming steps: the nodes find each other and their slots from
    their own files. Returns the stack at its new addresses and PIDs; on failure the
    restarted nodes are stopped (their data stays) and `LocalStackError` says why.
    """
    # The binary the nodes ran (their data is in its format), unless told otherwise.
    binary = redis_server or stack.binary or resolve_engine(topology).binary
    new_hosts = list(hosts) if hosts is not None else _other_loopback_hosts(stack)
    if len(new_hosts) != len(stack.nodes):
        raise LocalStackError(f"{len(stack.nodes)} nodes need as many hosts, got {new_hosts}")
    for host in new_hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise LocalStackError(f"host {host!r} is not an IP address") from None
    if stack.password is None:
        raise LocalStackError("the stack has no admin password: cannot render its nodes")
    clustered = topology.mode == "cluster"
    if stack.mode != topology.mode or len(stack.nodes) != topology.node_count:
        raise LocalStackError(
            f"stack is {len(stack.nodes)} {stack.mode} node(s), the topology "
            f"{topology.node_count} {topology.mode}"
        )

    stop_stack(stack, save=True)

    nodes = []
    for i, (port, host) in enumerate(zip(stack.ports, new_hosts, strict=True)):
        directory = node_directory(stack.data_dir, i)
        bus_port = recorded_bus_port(directory) if clustered else None
        nodes.append(NodeProcess(i, directory, port, bus_port, host=host))
    resolve = map_resolver({n.hostname: n.host for n in nodes})

    def repair(node: NodeProcess) -> None:
        if not clustered:
            return
        try:
            repair_nodes_conf(node.nodes_conf, my_ip=node.host, resolve=resolve)
        except RepairError as exc:
            raise LocalStackError(str(exc)) from exc

    started = relaunch_nodes(
        topology, nodes, password=stack.password, binary=binary, prepare=repair
    )
    restarted = replace(
        stack, nodes=[n.addr for n in started], pids=[n.running_pid for n in started]
    )
    if clustered:
        try:
            wait_until_healthy(
                restarted.nodes,
                restarted.username,
                restarted.password,
                topology.replicas_per_master,
                timeout_s=timeout_s,
            )
        except BaseException as exc:
            stop_stack(restarted, save=True)  # its data stays for the next attempt
            if isinstance(exc, BootstrapError):
                raise LocalStackError(f"cluster not healthy after the restart: {exc}") from exc
            raise
    return restarted


def _other_loopback_hosts(stack: LocalStack) -> list[str]:
    """A distinct random 127.0.0.x (2 <= x <= 254) per node, none a current address."""
    current = set(stack.hosts)
    choices = [f"127.0.0.{x}" for x in range(2, 255) if f"127.0.0.{x}" not in current]
    return random.SystemRandom().sample(choices, len(stack.nodes))


def recorded_bus_port(directory: Path) -> int:
    """The cluster bus port a node's redis.conf names: its peers recorded it."""
    for line in (directory / "redis.conf").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "cluster-port" and value.strip().isdigit():
            return int(value)
    raise LocalStackError(f"{directory / 'redis.conf'} names no cluster-port")


@contextmanager
def running_stack(
    topology: RedisTopology,
    data_dir: Path,
    *,
    env: str,
    redis_server: str | None = None,
    engine: Engine | None = None,
) -> Iterator[LocalStack]:
    """Start a stack, yield it, and always stop it."""
    stack = start_stack(topology, data_dir, env=env, redis_server=redis_server, engine=engine)
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

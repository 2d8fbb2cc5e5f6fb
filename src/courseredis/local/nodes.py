"""Launching `redis-server` nodes on loopback, waiting until they answer, and stopping them.

Every node gets its own directory (`<data_dir>/node-<i>/`: redis.conf, users.acl, pidfile,
log, data, nodes.conf), a fresh pair of free ports (client and cluster bus), and the same
ACL: `default` off, an admin account, whatever other users the caller gives and, in
cluster mode, the `replication` account (PSYNC, REPLCONF, PING only) nodes authenticate to
their master with once they are replicas: the password every node's redis.conf holds opens
nothing but the replication stream, as in Kubernetes.

Cluster nodes announce a stable name, `node-<i>.courseredis.local` (like a StatefulSet
pod's DNS name), and their current address (`cluster-announce-ip`). Clients are sent IPs
(`cluster-preferred-endpoint-type ip`): no DNS knows the names; only the restart maps them
to the nodes' new loopback addresses, to repair their nodes.conf (`relaunch_nodes`).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import redis
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ConnectionError,
    RedisError,
    ResponseError,
    TimeoutError,
)
from redis.retry import Retry

from courseredis.environments import RedisTopology
from courseredis.local.data_format import check_binary_reads
from courseredis.local.ports import free_ports
from courseredis.local.processes import (
    LocalStackError,
    is_our_redis,
    read_pid,
    tail,
    terminate,
    wait_gone,
)
from courseredis.redis_config import (
    REPLICATION_USER,
    AclUser,
    admin_user,
    render_acl_file,
    render_redis_conf,
    replication_user,
)
from courseredis.topology import split_addr
from courseredis.waiting import TimedOut, wait_until

HOST = "127.0.0.1"
ADMIN_USER = "admin"
# The names the local cluster nodes announce; only the restart ever resolves them.
LOCAL_DOMAIN = "courseredis.local"
_START_TIMEOUT_S = 15.0
_BIND_ATTEMPTS = 5
_SHUTDOWN_WAIT_S = 5.0
_POLL_S = 0.02
_BIND_FAILURE = "Address already in use"


@dataclass
class NodeProcess:
    """One node being started: where its files are, its ports, and its PID once known."""

    index: int
    directory: Path
    port: int
    cluster_port: int | None
    host: str = HOST
    pid: int | None = None
    attempts: int = 0

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def hostname(self) -> str:
        return node_hostname(self.index)

    @property
    def running_pid(self) -> int:
        if self.pid is None:
            raise LocalStackError(f"node {self.addr} has no PID yet")
        return self.pid

    @property
    def conf(self) -> Path:
        return self.directory / "redis.conf"

    @property
    def pidfile(self) -> Path:
        return self.directory / "redis.pid"

    @property
    def logfile(self) -> Path:
        return self.directory / "redis.log"

    @property
    def startup_err(self) -> Path:
        return self.directory / "startup.err"

    @property
    def acl_file(self) -> Path:
        return self.directory / "users.acl"

    @property
    def nodes_conf(self) -> Path:
        return self.directory / "nodes.conf"


def node_hostname(index: int) -> str:
    """The stable name node `index` of a local cluster announces to its peers."""
    return f"node-{index}.{LOCAL_DOMAIN}"


def node_directory(data_dir: Path, index: int) -> Path:
    return data_dir / f"node-{index}"


def node_client(addr: str, username: str | None, password: str | None) -> redis.Redis:
    """A client for one node, with short timeouts and no retries: callers poll themselves."""
    host, port = split_addr(addr)
    return redis.Redis(
        host=host,
        port=port,
        username=username,
        password=password,
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def launch_nodes(
    topology: RedisTopology,
    data_dir: Path,
    *,
    count: int,
    password: str,
    binary: str,
    users: Mapping[str, AclUser] | None = None,
) -> list[NodeProcess]:
    """Start `count` nodes of `topology` at once and wait until each answers PING as admin.

    `users` are the ACL users besides the admin (whose password is `password`); a user
    named like the admin replaces it. A node that loses its port to another process between
    `free_ports` and its bind is relaunched on new ports. On any failure, every node already
    started is killed by PID before the error propagates, so a failed start leaves no
    process behind.
    """
    clustered = topology.mode == "cluster"
    # Drawn per launch like the other passwords; a restart reads it back from redis.conf.
    replication = secrets.token_urlsafe(24) if clustered else None
    replicator = {REPLICATION_USER: replication_user(replication)} if replication else {}
    acl = render_acl_file(
        {ADMIN_USER: admin_user(password, ADMIN_USER), **replicator, **(users or {})}
    )
    _clear_leftovers(data_dir)
    ports = iter(free_ports(count * (2 if clustered else 1)))
    nodes = [
        NodeProcess(
            index=i,
            directory=node_directory(data_dir, i),
            port=next(ports),
            cluster_port=next(ports) if clustered else None,
        )
        for i in range(count)
    ]
    with _killed_on_failure(nodes):
        pending = nodes
        while pending:
            for node in pending:
                if node.directory.exists():
                    shutil.rmtree(node.directory)
                node.directory.mkdir(parents=True, mode=0o700)
                _write_private(node.acl_file, acl)
                _write_conf(node, topology, replication)
            _launch(binary, pending)
            pending = _await_ready(pending, password)
            for node in pending:
                fresh = free_ports(2 if clustered else 1)
                node.pid = None
                node.port, node.cluster_port = fresh[0], (fresh[1] if clustered else None)
    return nodes


def relaunch_nodes(
    topology: RedisTopology,
    nodes: Sequence[NodeProcess],
    *,
    password: str,
    binary: str,
    prepare: Callable[[NodeProcess], None] | None = None,
) -> list[NodeProcess]:
    """Start stopped nodes again from their directories, each at its (new) `host`.

    Everything in a node's directory is kept (ACL file, data, nodes.conf) but its redis.conf,
    which is rendered again for the node's host; `prepare(node)` then runs before the node
    starts (the restart repairs nodes.conf there). The ports stay those of the nodes: the
    peers recorded them. A node that cannot bind its address is an error, not a retry on
    other ports. On any failure every node already started is killed by PID. A node whose
    data `binary` cannot read (a downgrade across an RDB format) is refused before any node
    starts (`data_format.DataFormatError`).
    """
    nodes = list(nodes)
    for node in nodes:
        if not node.directory.is_dir():
            raise LocalStackError(f"{node.directory} does not exist: nothing to restart")
        pid = read_pid(node.pidfile)
        if pid is not None and is_our_redis(pid):
            raise LocalStackError(f"{node.directory} still runs (pid {pid}); stop it first")
        check_binary_reads(node.directory, binary)
        node.pid = None
    with _killed_on_failure(nodes):
        for node in nodes:
            node.pidfile.unlink(missing_ok=True)
            replication = _recorded_masterauth(node.conf) if topology.mode == "cluster" else None
            _write_conf(node, topology, replication)
            if prepare is not None:
                prepare(node)
        _launch(binary, nodes)
        _await_ready(nodes, password, rebind=False)
    return nodes


def shutdown_nodes(
    nodes: list[str], username: str | None, password: str | None, *, save: bool = False
) -> list[bool]:
    """Send `SHUTDOWN` to every node at once; say which ones accepted it.

    By default `SHUTDOWN NOSAVE NOW FORCE`: the stack is disposable, nothing to save and no
    lagging replica to wait for (`NOW`), and `FORCE` exits even if, say, the AOF cannot be
    written. With `save` (a restart), `SHUTDOWN SAVE NOW`: the node writes an RDB snapshot
    and flushes its AOF (and keeps its nodes.conf, as always), and refuses to exit if it
    cannot. A node that refused (wrong credentials in a hand-edited stack.json, say) is worth
    no wait: it goes straight to the signals of `stop_pids` (SIGTERM saves too).
    """
    command = ("SHUTDOWN", "SAVE", "NOW") if save else ("SHUTDOWN", "NOSAVE", "NOW", "FORCE")

    def shutdown(node: str) -> bool:
        try:
            with node_client(node, username, password) as client:
                client.execute_command(*command)
        except (AuthenticationError, ResponseError):
            return False
        except RedisError:
            pass  # expected: the connection drops as the node exits
        return True

    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        return list(pool.map(shutdown, nodes))


def stop_pids(targets: list[tuple[int, int]], *, expect_exit: list[bool] | None = None) -> None:
    """Stop the `(pid, port)` nodes, waiting a few seconds for those told to shut down.

    Nodes that accepted SHUTDOWN (`expect_exit`, default all) get a few seconds to exit;
    whatever still runs then gets SIGTERM, then SIGKILL.
    """
    expected = expect_exit if expect_exit is not None else [True] * len(targets)
    waited: list[tuple[int, int | None]] = [t for t, e in zip(targets, expected, strict=True) if e]
    alive = set(wait_gone(waited, _SHUTDOWN_WAIT_S))
    terminate([(pid, port) for pid, port in targets if pid in alive or (pid, port) not in waited])


def _clear_leftovers(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    for directory in sorted(data_dir.glob("node-*")):
        pid = read_pid(directory / "redis.pid")
        if pid is not None and is_our_redis(pid):
            raise LocalStackError(
                f"{directory} belongs to a running redis-server (pid {pid}); stop that stack "
                "first (python -m courseredis.local down)"
            )
        # Data of a stack that died: its nodes.conf would make a new node claim an identity
        # and peers that no longer exist.
        shutil.rmtree(directory)


@contextmanager
def _killed_on_failure(nodes: Sequence[NodeProcess]) -> Iterator[None]:
    try:
        yield
    except BaseException:
        # Nothing to shut down politely. No port check: a node that has just written its
        # pidfile may not have retitled its process with its port yet.
        started = [read_pid(n.pidfile) for n in nodes]
        terminate([(pid, None) for pid in started if pid is not None], grace_s=2.0)
        raise


def _recorded_masterauth(conf: Path) -> str:
    """The replication password a node's redis.conf holds (its users.acl has the user)."""
    for line in conf.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "masterauth" and value.strip():
            return value.strip()
    raise LocalStackError(f"{conf} names no masterauth: cannot restart the node as a replica")


def _write_conf(node: NodeProcess, topology: RedisTopology, replication: str | None) -> None:
    clustered = topology.mode == "cluster"
    conf = render_redis_conf(
        topology,
        port=node.port,
        cluster_port=node.cluster_port,
        bind=node.host,
        data_dir=node.directory,
        acl_file=node.acl_file,
        announce_ip=node.host if clustered else None,
        announce_hostname=node.hostname if clustered else None,
        preferred_endpoint="ip",
        pidfile=node.pidfile,
        logfile=node.logfile,
        daemonize=True,
        replication_user=REPLICATION_USER if replication is not None else None,
        replication_password=replication,
    )
    _write_private(node.conf, conf)


def _write_private(path: Path, text: str) -> None:
    # Both files hold passwords: create them unreadable to others from the start.
    path.touch(mode=0o600)
    path.write_text(text)


def _launch(binary: str, nodes: list[NodeProcess]) -> None:
    """Start all nodes at once; each foreground `redis-server` forks its daemon and exits.

    The foreground process only parses the config (errors go to its stderr) and forks: a
    failure to bind happens later, in the daemon, and shows only in the node's log.
    """
    launched = []
    for node in nodes:
        node.attempts += 1
        with node.startup_err.open("w") as err:
            process = subprocess.Popen(
                [binary, str(node.conf)],
                cwd=node.directory,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        launched.append((node, process))
    for node, process in launched:
        if process.wait(timeout=_START_TIMEOUT_S) != 0:
            raise LocalStackError(
                f"redis-server refused the config of node {node.index} ({node.conf}):\n"
                + tail(node.startup_err)
            )


def _await_ready(
    nodes: list[NodeProcess], password: str, *, rebind: bool = True
) -> list[NodeProcess]:
    """Wait until every node answers PING as admin; return the nodes that lost a port race.

    Any other failure (a lost port race too, without `rebind`), or a node still silent
    after the start timeout, raises with the end of the node's log.
    """
    waiting = list(nodes)
    lost: list[NodeProcess] = []

    def all_settled() -> bool:
        for node in list(waiting):
            state = _probe(node, password)
            if state == "starting":
                continue
            waiting.remove(node)
            if state == "dead":
                log = tail(node.logfile)
                if not rebind or _BIND_FAILURE not in log or node.attempts >= _BIND_ATTEMPTS:
                    raise LocalStackError(f"node {node.addr} did not start; its log ends:\n{log}")
                lost.append(node)
        return not waiting

    try:
        wait_until(
            all_settled,
            timeout_s=_START_TIMEOUT_S,
            what="the nodes to answer PING",
            interval_s=_POLL_S,
        )
    except TimedOut:
        node = waiting[0]
        raise LocalStackError(
            f"node {node.addr} not ready after {_START_TIMEOUT_S:g} s; its log ends:\n"
            + tail(node.logfile)
        ) from None
    return lost


def _probe(node: NodeProcess, password: str) -> Literal["ready", "starting", "dead"]:
    if node.pid is None:
        node.pid = read_pid(node.pidfile)
    if node.pid is None:
        # No pidfile yet: still starting, or the daemon failed before writing it.
        return "dead" if "aborting" in tail(node.logfile, 3) else "starting"
    if not is_our_redis(node.pid):
        return "dead"
    try:
        with node_client(node.addr, ADMIN_USER, password) as client:
            client.ping()
    except (BusyLoadingError, ConnectionError, TimeoutError):
        return "starting"
    return "ready"

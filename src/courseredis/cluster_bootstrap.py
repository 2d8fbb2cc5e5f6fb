"""Form, repair and check a Redis Cluster from nothing but a list of `host:port` nodes.

The same code runs on a laptop (the local stack calls `bootstrap_cluster`) and as the
Kubernetes Job of the prod stack (`python -m courseredis.cluster_bootstrap`), so it never
assumes it started the nodes: it reads every node's own view (`CLUSTER NODES`,
`CLUSTER INFO`, `INFO replication`) and only acts on what is missing. A second run on a
healthy cluster changes nothing, and a run interrupted half-way (a Job killed after
`CLUSTER MEET`, or after some `ADDSLOTSRANGE`) is finished by the next one.

Steps, each skipped when already done:
1. wait until every node answers PING;
2. on brand-new nodes, give the masters-to-be distinct config epochs, so slot ownership
   never has to go through Redis' epoch-collision resolution;
3. `CLUSTER MEET` every node the anchor does not know, and wait until all know all;
4. assign every unowned slot (an even split on a new cluster; on a partial one the slots
   go to the masters with the fewest, so an interrupted split ends up even);
5. make every node that neither owns slots nor replicates a replica of the master with the
   fewest replicas, preferring a master on another host;
6. wait until every node reports a healthy cluster, or raise `BootstrapError` saying why.

Redis is reached with one plain `redis.Redis` per node, with short timeouts and no retries:
the bootstrap's own deadlines decide how long to wait, and a cluster client would refuse to
talk to a cluster that is not formed yet.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    RedisError,
    ResponseError,
)
from redis.retry import Retry

from courseredis.topology import (
    TOTAL_SLOTS,
    ClusterNode,
    merged_view,
    parse_cluster_nodes,
    slot_masters,
    slot_ranges,
    split_addr,
)
from courseredis.waiting import Deadline, TimedOut, wait_until

T = TypeVar("T")
_log = logging.getLogger(__name__)
_POLL_S = 0.05
_SOCKET_TIMEOUT_S = 2.0


class BootstrapError(RuntimeError):
    """The cluster could not be formed or repaired; the message says what is wrong."""


# --- slots ----------------------------------------------------------------------------------


def even_shares(counts: Sequence[int], extra: int) -> list[int]:
    """How many of `extra` new slots each master gets so the smallest counts fill up first.

    Water-filling: on a new cluster (all counts 0) this is an even split; when a split was
    interrupted, the masters that got nothing take the rest and the result is even again.
    """
    shares = [0] * len(counts)
    remaining = extra
    while remaining > 0 and counts:
        totals = [c + s for c, s in zip(counts, shares, strict=True)]
        level = min(totals)
        lowest = [i for i, total in enumerate(totals) if total == level]
        higher = [total for total in totals if total > level]
        room = (min(higher) - level) * len(lowest) if higher else remaining
        if room >= remaining:
            per, rest = divmod(remaining, len(lowest))
            for k, i in enumerate(lowest):
                shares[i] += per + (1 if k < rest else 0)
            remaining = 0
        else:
            for i in lowest:
                shares[i] += min(higher) - level
            remaining -= room
    return shares


# --- talking to nodes -----------------------------------------------------------------------


@dataclass
class _NodeState:
    """What one node says about itself and the cluster, read in one pass."""

    addr: str  # as given to the bootstrap, which may differ from what the node announces
    me: ClusterNode
    view: list[ClusterNode]
    info: dict[str, str]
    replication: dict[str, str]

    @property
    def known_ids(self) -> set[str]:
        return {n.node_id for n in self.view if n.member}


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def _connections(
    nodes: Sequence[str], username: str | None, password: str | None
) -> Iterator[dict[str, redis.Redis]]:
    clients: dict[str, redis.Redis] = {}
    try:
        for addr in nodes:
            host, port = split_addr(addr)
            clients[addr] = redis.Redis(
                host=host,
                port=port,
                username=username,
                password=password,
                socket_timeout=_SOCKET_TIMEOUT_S,
                socket_connect_timeout=_SOCKET_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
                decode_responses=True,
            )
        yield clients
    finally:
        for client in clients.values():
            client.close()


def _command(client: redis.Redis, *args: str | int) -> Any:
    """Send a raw command; `CLUSTER <sub>` has no redis-py reply callback, so text comes back."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]  # untyped in redis-py


def _parse_info_text(text: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key: value.strip() for key, value in pairs}


def _read_state(addr: str, client: redis.Redis) -> _NodeState:
    try:
        view = parse_cluster_nodes(str(_command(client, "CLUSTER", "NODES")))
    except ResponseError as exc:
        if "cluster support disabled" in str(exc):
            raise BootstrapError(f"{addr} is not cluster-enabled (cluster-enabled no)") from exc
        raise
    me = [n for n in view if n.myself]
    if len(me) != 1:
        raise BootstrapError(f"{addr}: CLUSTER NODES has no single 'myself' line")
    info = _parse_info_text(str(_command(client, "CLUSTER", "INFO")))
    replication: dict[str, Any] = client.info("replication")
    return _NodeState(
        addr=addr,
        me=me[0],
        view=view,
        info=info,
        replication={k: str(v) for k, v in replication.items()},
    )


def _read_all(clients: Mapping[str, redis.Redis]) -> dict[str, _NodeState]:
    """Every node's state; a node that stops answering mid-bootstrap is an error, not a wait."""
    states = {}
    for addr, client in clients.items():
        try:
            states[addr] = _read_state(addr, client)
        except RedisError as exc:
            raise BootstrapError(f"{addr} stopped answering: {_describe(exc)}") from exc
    return states


# --- health -------------------------------------------------------------------------------


class MasterSummary(NamedTuple):
    """A master that owns slots, addressed as the caller named it when it is a given node."""

    node_id: str
    addr: str
    slot_count: int
    replicas: list[str]  # addresses of the replicas whose link to this master is up


@dataclass(frozen=True)
class ClusterHealth:
    """`ok` exactly when `problems` is empty; `masters` is filled in either way."""

    ok: bool
    problems: list[str]
    masters: list[MasterSummary]


def cluster_health(
    nodes: Sequence[str],
    username: str | None,
    password: str | None,
    replicas_per_master: int,
) -> ClusterHealth:
    """Whether the cluster the nodes form is fully usable, and if not, every reason why.

    Healthy means: every node answers and reports `cluster_state:ok` with all 16384 slots
    assigned and served, knows every other given node, has a cluster bus link to every node
    it knows, sees no failing or half-met node and no slot migration in progress, and all
    agree on who owns which slots; every master owning slots has at least
    `replicas_per_master` replicas whose replication link is up; and no given node is an
    idle master (no slots, replicating nothing).
    """
    with _connections(nodes, username, password) as clients:
        return _assess(clients, replicas_per_master)


def _assess(clients: Mapping[str, redis.Redis], replicas_per_master: int) -> ClusterHealth:
    problems: list[str] = []
    states: dict[str, _NodeState] = {}
    for addr, client in clients.items():
        try:
            states[addr] = _read_state(addr, client)
        except (RedisError, BootstrapError) as exc:
            problems.append(f"{addr}: {_describe(exc)}")
    if not states:
        return ClusterHealth(ok=False, problems=problems, masters=[])

    addr_of = {state.me.node_id: addr for addr, state in states.items()}
    for addr, state in states.items():
        problems += _node_problems(addr, state, addr_of)

    maps = {_slot_map(state) for state in states.values()}
    if len(maps) > 1:
        problems.append("nodes disagree about which master owns which slots")

    merged = _merged_view(states)
    masters: list[MasterSummary] = []
    for master in slot_masters(merged.values(), include_failing=True):
        replicas = [
            addr_of.get(n.node_id, n.addr)
            for n in merged.values()
            if n.master_id == master.node_id and _link_up(n, states)
        ]
        label = addr_of.get(master.node_id, master.addr)
        if master.failing:
            problems.append(f"master {label} ({master.node_id[:8]}) is failing")
        if len(replicas) < replicas_per_master:
            problems.append(
                f"master {label} ({master.node_id[:8]}) has {len(replicas)} replica(s) with "
                f"link up, wants {replicas_per_master}"
            )
        masters.append(MasterSummary(master.node_id, label, master.slot_count, sorted(replicas)))

    for addr, state in states.items():
        if state.me.is_master and not state.me.slots:
            problems.append(f"{addr} is a master without slots (serves and replicates nothing)")
    return ClusterHealth(ok=not problems, problems=problems, masters=masters)


def _node_problems(addr: str, state: _NodeState, addr_of: Mapping[str, str]) -> list[str]:
    problems = []
    info = state.info
    if info.get("cluster_state") != "ok":
        problems.append(f"{addr}: cluster_state:{info.get('cluster_state')}")
    for key in ("cluster_slots_assigned", "cluster_slots_ok"):
        if info.get(key) != str(TOTAL_SLOTS):
            problems.append(f"{addr}: {key}:{info.get(key)} (wants {TOTAL_SLOTS})")
    unknown = sorted(a for node_id, a in addr_of.items() if node_id not in state.known_ids)
    if unknown:
        problems.append(f"{addr} does not know {', '.join(unknown)}")
    for node in state.view:
        label = addr_of.get(node.node_id, node.addr)
        if node.failing:
            problems.append(f"{addr} sees {label} ({node.node_id[:8]}) as failing")
        if "handshake" in node.flags:
            problems.append(f"{addr} is still in handshake with {node.addr}")
        elif not node.myself and node.link_state != "connected":
            # Right after a restart, nodes that cannot reach each other report
            # `cluster_state:ok` until failure detection catches up (cluster-node-timeout):
            # a missing bus link tells earlier.
            problems.append(f"{addr} has no cluster bus link to {label} ({node.node_id[:8]})")
        if node.open_slots:
            problems.append(f"{addr} sees slots migrating on {label}: {node.open_slots}")
    if state.me.is_replica and state.replication.get("master_link_status") != "up":
        problems.append(
            f"{addr}: replica link to its master is "
            f"{state.replication.get('master_link_status', 'missing')}"
        )
    return problems


def _slot_map(state: _NodeState) -> tuple[tuple[str, tuple[tuple[int, int], ...]], ...]:
    return tuple(sorted((n.node_id, n.slots) for n in state.view if n.slots))


def _merged_view(states: Mapping[str, _NodeState]) -> dict[str, ClusterNode]:
    return merged_view(state.view for state in states.values())


def _link_up(node: ClusterNode, states: Mapping[str, _NodeState]) -> bool:
    for state in states.values():
        if state.me.node_id == node.node_id:
            return state.replication.get("master_link_status") == "up"
    # A replica outside the given nodes: trust the cluster bus instead.
    return not node.failing and node.link_state == "connected"


# --- bootstrap ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapReport:
    """What a bootstrap run did, one line per command sent; `changed` is False on a no-op."""

    actions: list[str] = field(default_factory=list)
    changed: bool = False


def bootstrap_cluster(
    nodes: Sequence[str],
    *,
    masters: int,
    replicas_per_master: int,
    username: str | None,
    password: str | None,
    timeout_s: float = 60.0,
) -> BootstrapReport:
    """Form or repair the cluster of `nodes`, then wait until it is healthy.

    Idempotent: on a healthy cluster it returns at once with no actions. Raises
    `BootstrapError` when the nodes cannot form the asked topology or the cluster is not
    healthy within `timeout_s`.
    """
    nodes = list(nodes)
    if len(set(nodes)) != len(nodes):
        raise BootstrapError(f"duplicate nodes in {nodes}")
    if masters < 1 or replicas_per_master < 0:
        raise BootstrapError("masters must be >= 1 and replicas_per_master >= 0")
    needed = masters * (1 + replicas_per_master)
    if len(nodes) < needed:
        raise BootstrapError(
            f"{masters} masters with {replicas_per_master} replica(s) each need {needed} "
            f"nodes, got {len(nodes)}"
        )
    for addr in nodes:
        try:
            split_addr(addr)
        except ValueError as exc:
            raise BootstrapError(str(exc)) from exc
    deadline = Deadline(timeout_s)
    actions: list[str] = []
    with _connections(nodes, username, password) as clients:
        _wait_for_ping(clients, deadline)
        if _assess(clients, replicas_per_master).ok:
            return BootstrapReport(actions=[], changed=False)
        _Former(clients, nodes, masters, deadline, actions).form()
        _wait_until_healthy(clients, replicas_per_master, deadline)
    return BootstrapReport(actions=actions, changed=bool(actions))


class _Former:
    """Steps 2-5 of the bootstrap; each reads fresh state and appends what it did."""

    def __init__(
        self,
        clients: Mapping[str, redis.Redis],
        nodes: list[str],
        masters: int,
        deadline: Deadline,
        actions: list[str],
    ) -> None:
        self.clients = clients
        self.nodes = nodes
        self.masters = masters
        self.deadline = deadline
        self.actions = actions

    def form(self) -> None:
        states = _read_all(self.clients)
        self._set_config_epochs(states)
        self._meet(states)
        states = self._wait_until_all_known()
        self._assign_slots(states)
        self._attach_replicas(_read_all(self.clients))

    def _run(self, addr: str, *args: str | int, note: str = "") -> None:
        command = " ".join(str(a) for a in args)
        try:
            _command(self.clients[addr], *args)
        except RedisError as exc:
            raise BootstrapError(f"{addr}: {command} failed: {exc}") from exc
        action = f"{addr}: {command}{f' ({note})' if note else ''}"
        self.actions.append(action)
        # Logged as it happens too: a Job that times out later still shows what it changed.
        _log.info("%s", action)

    def _host_spread(self, candidates: Sequence[str], count: int) -> list[str]:
        """Pick `count` of `candidates`, round-robin over hosts so masters do not share one."""
        by_host: dict[str, list[str]] = {}
        for addr in candidates:
            by_host.setdefault(split_addr(addr)[0], []).append(addr)
        picked: list[str] = []
        while len(picked) < count and any(by_host.values()):
            for queue in by_host.values():
                if queue and len(picked) < count:
                    picked.append(queue.pop(0))
        return sorted(picked, key=self.nodes.index)

    def _set_config_epochs(self, states: Mapping[str, _NodeState]) -> None:
        """Distinct epochs on brand-new masters-to-be.

        Without them every master claims its slots at epoch 0 and Redis must resolve the
        collision by bumping epochs one by one, which slows convergence. Redis only accepts
        the command on a node that knows nobody and has epoch 0, so this only ever runs on a
        cluster that does not exist yet.
        """
        fresh = all(
            len(s.view) == 1
            and not s.me.slots
            and s.me.config_epoch == 0
            and s.info.get("cluster_current_epoch") == "0"
            for s in states.values()
        )
        if not fresh:
            return
        for epoch, addr in enumerate(self._host_spread(self.nodes, self.masters), start=1):
            self._run(addr, "CLUSTER", "SET-CONFIG-EPOCH", epoch)

    def _meet(self, states: Mapping[str, _NodeState]) -> None:
        # The anchor is the node that already knows the most, so repairing a formed cluster
        # introduces the newcomer to the cluster and not the cluster to the newcomer.
        anchor = max(self.nodes, key=lambda a: (len(states[a].known_ids), -self.nodes.index(a)))
        anchor_state = states[anchor]
        anchor_has_slots = any(n.slots for n in anchor_state.view)
        for addr in self.nodes:
            state = states[addr]
            if state.me.node_id in anchor_state.known_ids:
                continue
            host, port = split_addr(addr)
            # CLUSTER MEET takes an IP, not a name (a Kubernetes pod's DNS name, say).
            ip = str(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0])
            if any(
                "handshake" in n.flags and (n.host, n.port) == (ip, port) for n in anchor_state.view
            ):
                continue  # an earlier MEET is still shaking hands; a second one is refused
            knows_anchor = anchor_state.me.node_id in state.known_ids
            if anchor_has_slots and not knows_anchor and any(n.slots for n in state.view):
                raise BootstrapError(
                    f"{addr} belongs to another cluster that owns slots; refusing to merge "
                    f"two clusters (CLUSTER RESET it if its data is disposable)"
                )
            self._run(anchor, "CLUSTER", "MEET", ip, port, state.me.bus_port)

    def _wait_until_all_known(self) -> dict[str, _NodeState]:
        missing: dict[str, list[str]] = {}

        def all_known() -> dict[str, _NodeState] | None:
            states = _read_all(self.clients)
            ids = {s.me.node_id: addr for addr, s in states.items()}
            missing.clear()
            for addr, s in states.items():
                unknown = sorted(a for i, a in ids.items() if i not in s.known_ids)
                if unknown:
                    missing[addr] = unknown
            return None if missing else states

        return _within(
            self.deadline,
            all_known,
            "the nodes to meet",
            lambda: "; ".join(f"{a} does not know {', '.join(u)}" for a, u in missing.items()),
        )

    def _assign_slots(self, states: Mapping[str, _NodeState]) -> None:
        merged = _merged_view(states)
        owned = {s for n in merged.values() for a, b in n.slots for s in range(a, b + 1)}
        unowned = [s for s in range(TOTAL_SLOTS) if s not in owned]
        if not unowned:
            return
        owners = [a for a in self.nodes if states[a].me.slots]
        other_owners = [
            n for n in merged.values() if n.slots and n.node_id not in self._ids(states)
        ]
        idle = [a for a in self.nodes if states[a].me.is_master and not states[a].me.slots]
        wanted = max(0, self.masters - len(owners) - len(other_owners))
        candidates = sorted(owners + self._host_spread(idle, wanted), key=self.nodes.index)
        if not candidates:
            raise BootstrapError("slots are unowned and no given node can take them")
        shares = even_shares([states[a].me.slot_count for a in candidates], len(unowned))
        start = 0
        for addr, share in zip(candidates, shares, strict=True):
            chunk = unowned[start : start + share]
            start += share
            if chunk:
                bounds = [str(b) for r in slot_ranges(chunk) for b in r]
                self._run(addr, "CLUSTER", "ADDSLOTSRANGE", *bounds)

    def _attach_replicas(self, states: Mapping[str, _NodeState]) -> None:
        merged = _merged_view(states)
        addr_of = {s.me.node_id: a for a, s in states.items()}
        # By first slot: ties go to the master of the lowest slots, so runs are stable.
        masters = slot_masters(merged.values())
        if not masters:
            return
        replica_count = {
            m.node_id: sum(1 for n in merged.values() if n.master_id == m.node_id and not n.failing)
            for m in masters
        }
        spares = [a for a in self.nodes if states[a].me.is_master and not states[a].me.slots]
        for spare in spares:
            spare_host = split_addr(spare)[0]

            def preference(master: ClusterNode, spare_host: str = spare_host) -> tuple[int, bool]:
                master_addr = addr_of.get(master.node_id, master.addr)
                same_host = split_addr(master_addr)[0] == spare_host
                return replica_count[master.node_id], same_host

            target = min(masters, key=preference)
            note = f"replica of {addr_of.get(target.node_id, target.addr)}"
            self._run(spare, "CLUSTER", "REPLICATE", target.node_id, note=note)
            replica_count[target.node_id] += 1

    @staticmethod
    def _ids(states: Mapping[str, _NodeState]) -> set[str]:
        return {s.me.node_id for s in states.values()}


def _within(
    deadline: Deadline, check: Callable[[], T | None], what: str, detail: Callable[[], str]
) -> T:
    """`wait_until` within what is left of the bootstrap's one deadline.

    A time-out is a `BootstrapError` naming the whole budget and what was still wrong: the
    error callers of the bootstrap handle.
    """
    try:
        return wait_until(check, timeout_s=deadline.remaining_s, what=what, interval_s=_POLL_S)
    except TimedOut as exc:
        raise BootstrapError(
            f"timed out after {deadline.seconds:g} s waiting for {what}: {detail()}"
        ) from exc


def _wait_for_ping(clients: Mapping[str, redis.Redis], deadline: Deadline) -> None:
    pending = dict(clients)
    errors: dict[str, str] = {}

    def all_answer() -> bool:
        for addr, client in list(pending.items()):
            try:
                client.ping()
            except (AuthenticationError, AuthorizationError) as exc:
                # A wrong password or a user without rights will not fix itself by waiting.
                raise BootstrapError(f"{addr} refused the credentials: {exc}") from exc
            except (RedisError, OSError) as exc:
                if isinstance(exc, ResponseError) and not isinstance(exc, BusyLoadingError):
                    raise BootstrapError(f"{addr} answered PING with an error: {exc}") from exc
                errors[addr] = _describe(exc)
            else:
                del pending[addr]
        return not pending

    _within(
        deadline,
        all_answer,
        "nodes to answer PING",
        lambda: "; ".join(f"{a} ({errors.get(a, 'no answer')})" for a in pending),
    )


def wait_until_healthy(
    nodes: Sequence[str],
    username: str | None,
    password: str | None,
    replicas_per_master: int,
    *,
    timeout_s: float,
) -> ClusterHealth:
    """Wait until `cluster_health` says ok (a cluster settling after a restart, say).

    Raises `BootstrapError` listing what is still wrong when it is not healthy in time.
    """
    with _connections(nodes, username, password) as clients:
        return _wait_until_healthy(clients, replicas_per_master, Deadline(timeout_s))


def _wait_until_healthy(
    clients: Mapping[str, redis.Redis], replicas_per_master: int, deadline: Deadline
) -> ClusterHealth:
    problems: list[str] = []

    def healthy() -> ClusterHealth | None:
        health = _assess(clients, replicas_per_master)
        problems[:] = health.problems
        return health if health.ok else None

    return _within(deadline, healthy, "a healthy cluster", lambda: "; ".join(problems))


# --- CLI --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m courseredis.cluster_bootstrap",
        description="Form or repair a Redis Cluster, idempotently. Credentials come from "
        "REDIS_USERNAME and REDIS_PASSWORD.",
    )
    parser.add_argument("--nodes", required=True, help="comma-separated host:port list")
    parser.add_argument("--masters", type=int, required=True)
    parser.add_argument("--replicas-per-master", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument(
        "--check", action="store_true", help="only report health; exit 1 when unhealthy"
    )
    args = parser.parse_args(argv)
    nodes = [n.strip() for n in args.nodes.split(",") if n.strip()]
    username = os.environ.get("REDIS_USERNAME") or None
    password = os.environ.get("REDIS_PASSWORD") or None
    logging.basicConfig(level=logging.INFO, format="+ %(message)s", stream=sys.stdout)
    try:
        if not args.check:
            report = bootstrap_cluster(
                nodes,
                masters=args.masters,
                replicas_per_master=args.replicas_per_master,
                username=username,
                password=password,
                timeout_s=args.timeout,
            )
            if not report.changed:
                print("cluster already healthy; nothing to do")
        health = cluster_health(nodes, username, password, args.replicas_per_master)
    except (BootstrapError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for master in health.masters:
        replicas = ", ".join(master.replicas) or "no replica"
        print(f"master {master.addr} {master.slot_count} slots; replicas: {replicas}")
    for problem in health.problems:
        print(f"problem: {problem}", file=sys.stderr)
    print("cluster healthy" if health.ok else "cluster NOT healthy")
    return 0 if health.ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""The shape of a Redis Cluster as its nodes describe it, and the addresses nodes go by.

Everything that reads a cluster (the bootstrap, the audit, the chaos scenarios, the smoke
suite, the local stack) reads it here: `CLUSTER NODES` parsed into `ClusterNode`s, the
views of several nodes merged into one, the masters that serve the slots, and `host:port`
addresses split the same way everywhere. Pure functions, no I/O: callers ask the nodes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

TOTAL_SLOTS = 16384


def split_addr(addr: str, *, host_required: bool = True) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port), the host without its brackets.

    The last colon splits, so an unbracketed IPv6 address (how `CLUSTER NODES` and
    nodes.conf write one) splits too. Those also write a node that has not learned its own
    IP yet with an empty host (`:7000`): `host_required=False` accepts it. Raises
    ValueError on anything else.
    """
    host, sep, port = addr.rpartition(":")
    if not sep or (host_required and not host) or not port.isdigit():
        raise ValueError(f"node address {addr!r} is not host:port")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ClusterNode:
    """One line of `CLUSTER NODES`: a node as seen by the node that was asked."""

    node_id: str
    host: str  # the announced IP; "" while a fresh node has not learned it from a MEET
    port: int
    bus_port: int
    hostname: str | None
    flags: frozenset[str]
    master_id: str | None
    config_epoch: int
    link_state: str
    slots: tuple[tuple[int, int], ...]
    open_slots: tuple[str, ...]  # "[slot->-id]" / "[slot-<-id]": a migration in progress

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def myself(self) -> bool:
        return "myself" in self.flags

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def is_replica(self) -> bool:
        return "slave" in self.flags

    @property
    def failing(self) -> bool:
        return bool({"fail", "fail?"} & self.flags)

    @property
    def member(self) -> bool:
        """False for a node still in handshake or without an address: not in the cluster yet."""
        return not {"handshake", "noaddr"} & self.flags

    @property
    def slot_count(self) -> int:
        return sum(end - start + 1 for start, end in self.slots)

    def owns(self, slot: int) -> bool:
        return any(start <= slot <= end for start, end in self.slots)


def parse_cluster_nodes(text: str) -> list[ClusterNode]:
    """Parse `CLUSTER NODES`, including Redis 7's `ip:port@cport,hostname` address field."""
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 8:
            raise ValueError(f"malformed CLUSTER NODES line: {line!r}")
        address, _, hostname = fields[1].partition(",")
        endpoint, _, bus = address.partition("@")
        try:
            host, port = split_addr(endpoint, host_required=False)
        except ValueError:
            raise ValueError(f"malformed CLUSTER NODES line: {line!r}") from None
        slots: list[tuple[int, int]] = []
        open_slots: list[str] = []
        for item in fields[8:]:
            if item.startswith("["):
                open_slots.append(item)
                continue
            start, _, end = item.partition("-")
            slots.append((int(start), int(end or start)))
        flags = frozenset(fields[2].split(",")) - {"noflags"}
        nodes.append(
            ClusterNode(
                node_id=fields[0],
                host=host,
                port=port,
                bus_port=int(bus) if bus else port + 10000,
                hostname=hostname or None,
                flags=flags,
                master_id=None if fields[3] == "-" else fields[3],
                config_epoch=int(fields[6]),
                link_state=fields[7],
                slots=tuple(slots),
                open_slots=tuple(open_slots),
            )
        )
    return nodes


def merged_view(views: Iterable[Iterable[ClusterNode]]) -> dict[str, ClusterNode]:
    """Every member the views know, by node id; a node's own line about itself wins.

    What one node says about another is hearsay that may lag behind (a master just demoted
    by a failover is still a master in the views of nodes that have not heard yet); what a
    node says about itself is current.
    """
    merged: dict[str, ClusterNode] = {}
    for view in views:
        for node in view:
            if node.myself:
                merged[node.node_id] = node
            elif node.member:
                merged.setdefault(node.node_id, node)
    return merged


def slot_masters(
    nodes: Iterable[ClusterNode], *, include_failing: bool = False
) -> list[ClusterNode]:
    """The masters that own slots (failing ones left out unless asked), by their first slot."""
    return sorted(
        (n for n in nodes if n.is_master and n.slots and (include_failing or not n.failing)),
        key=lambda n: n.slots[0],
    )


def slot_ranges(slots: Iterable[int]) -> list[tuple[int, int]]:
    """Collapse slot numbers into sorted inclusive `(start, end)` ranges."""
    ranges: list[tuple[int, int]] = []
    for slot in sorted(set(slots)):
        if ranges and ranges[-1][1] == slot - 1:
            ranges[-1] = (ranges[-1][0], slot)
        else:
            ranges.append((slot, slot))
    return ranges

"""Repair the peer addresses in a node's `nodes.conf` before `redis-server` starts.

A Redis Cluster node remembers its peers by the `ip:port@cport` it last saw them at. When
every node restarts at once on new addresses (all pods of a StatefulSet rescheduled, or the
local stack restarted on other loopback addresses), each node reloads a `nodes.conf` whose
addresses all point nowhere: nobody can reach anybody, so no node learns the new addresses
by gossip, and the cluster stays at `cluster_state:fail` for good (after a misleading
`cluster_state:ok` for the first seconds, until failure detection catches up). Redis 7
also records the name a peer announces (`cluster-announce-hostname`) in that field, as
`ip:port@cport,hostname`; this module resolves those names and rewrites the IP of every
peer whose name now resolves elsewhere, and of `myself` to the node's own new IP. Once a
node can reach a peer, the cluster bus corrects anything left (and `cluster-announce-ip`
makes each node correct what its peers recorded about it).

The same code runs in the Kubernetes chart's init container
(`python -m courseredis.cluster_repair --nodes-conf /data/nodes.conf --my-ip $POD_IP`) and
in the local stack's restart. It is idempotent, writes atomically (temporary file, then
rename), and leaves the file untouched when nothing changes; every byte other than the
rewritten IPs stays as it was. A peer whose name does not resolve yet (its pod is not up)
keeps its recorded address: once the node reaches any peer, the cluster bus learns the rest
by gossip. But not replication: a Redis 7.0 replica that learns its master's new address by
gossip keeps replicating from the old one (seen here: `cluster_state:ok` everywhere, the
replica's `master_link_status:down` for good). So the CLI waits a while (`--wait`) for the
names that do not resolve yet before it lets the node start.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import ipaddress
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from courseredis.topology import split_addr
from courseredis.waiting import Deadline

Resolver = Callable[[str], str | None]

# How long the CLI waits for peers' names to resolve: the pods of a full restart get their
# IPs (and, with publishNotReadyAddresses, their DNS records) within seconds of each other.
DEFAULT_WAIT_S = 30.0

# `<id> <ip:port@cport[,hostname[,aux=value...]]> <flags> ...`: a node line, split so that
# only the address field is ever rewritten and every other byte is copied as it was.
_NODE_LINE = re.compile(rb"^(?P<id>[0-9a-f]{40})[ \t]+(?P<addr>\S+)(?P<rest>[ \t]+.*)$", re.S)


class RepairError(RuntimeError):
    """`nodes.conf` could not be repaired (in use by a running node, unreadable, ...)."""


@dataclass(frozen=True)
class AddressChange:
    """One rewritten address field: the node, the name it resolved from, old and new field."""

    node_id: str
    hostname: str | None  # None for `myself` without a recorded hostname
    old: str
    new: str


@dataclass(frozen=True)
class RepairReport:
    """What `repair_nodes_conf` did; `changed` is False when the file was left untouched."""

    path: Path
    exists: bool  # False on a first start: no nodes.conf yet, nothing to repair
    changes: tuple[AddressChange, ...] = ()
    unresolved: tuple[str, ...] = ()  # hostnames that did not resolve: entries left alone
    anonymous: tuple[str, ...] = ()  # peers (node ids) without a recorded hostname

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def lines(self) -> list[str]:
        """A human summary, one line per fact."""
        if not self.exists:
            return [f"{self.path} does not exist (first start): nothing to repair"]
        out = [
            f"{c.node_id[:8]} {c.hostname or '(myself)'}: {c.old} -> {c.new}" for c in self.changes
        ]
        out += [f"{name} does not resolve: its entry is left as it was" for name in self.unresolved]
        out += [
            f"{node_id[:8]} has no recorded hostname: left as it was" for node_id in self.anonymous
        ]
        out.append(
            f"{self.path}: {len(self.changes)} address(es) rewritten"
            if self.changed
            else f"{self.path}: nothing to change"
        )
        return out


@dataclass
class _Field:
    """The address field `ip:port@cport[,hostname[,aux...]]`, split where the IP ends."""

    ip: str
    tail: str  # ":port@cport" and everything after it, verbatim
    hostname: str | None

    @classmethod
    def parse(cls, text: str) -> _Field | None:
        endpoint, comma, extras = text.partition(",")
        address, at, _bus = endpoint.partition("@")
        if not at:
            return None
        try:
            # Empty on a node that has not learned its IP yet; never in brackets (nodes.conf
            # writes IPv6 bare), so the IP is the field up to its last colon, as written.
            ip, _port = split_addr(address, host_required=False)
        except ValueError:
            return None
        # Redis 7.0 writes `,hostname`; 7.2 adds `,key=value` fields after it.
        hostname = extras.split(",", 1)[0] if comma else ""
        if "=" in hostname:
            hostname = ""
        return cls(ip=ip, tail=text[len(ip) :], hostname=hostname or None)

    def with_ip(self, ip: str) -> str:
        return f"{ip}{self.tail}"


def dns_resolve(hostname: str) -> str | None:
    """The IPv4 address `hostname` resolves to now, or None when it does not (yet)."""
    try:
        return socket.gethostbyname(hostname)
    except (OSError, UnicodeError):  # socket.gaierror / herror are OSErrors
        return None


def map_resolver(mapping: Mapping[str, str]) -> Resolver:
    """Resolve exactly the names of `mapping` (case-insensitive, like DNS); None for others."""
    lowered = {name.lower().rstrip("."): ip for name, ip in mapping.items()}
    return lambda hostname: lowered.get(hostname.lower().rstrip("."))


def repair_nodes_conf(path: Path, *, my_ip: str, resolve: Resolver = dns_resolve) -> RepairReport:
    """Rewrite the addresses in `nodes.conf` at `path` that point to where nodes no longer are.

    `myself` gets `my_ip`; every other node whose recorded hostname resolves (through
    `resolve`) to an IP other than the recorded one gets that IP. Ports, flags, slots and
    every other byte stay as they are. A missing file (first start) is no error. Raises
    `RepairError` when the file is locked by a running `redis-server`: it must not be
    rewritten under a live node.
    """
    _check_ip(my_ip)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return RepairReport(path=path, exists=False)
    with handle, _exclusive(handle, path):
        repairer = _Repairer(my_ip, resolve)
        lines = handle.read().splitlines(keepends=True)
        repaired = [repairer.line(line) for line in lines]
        if repairer.changes:
            _replace_atomically(path, b"".join(repaired), os.fstat(handle.fileno()).st_mode)
    return RepairReport(
        path=path,
        exists=True,
        changes=tuple(repairer.changes),
        unresolved=tuple(dict.fromkeys(repairer.unresolved)),
        anonymous=tuple(repairer.anonymous),
    )


@dataclass
class _Repairer:
    """Repairs nodes.conf line by line, noting what it changed and what it could not."""

    my_ip: str
    resolve: Resolver
    changes: list[AddressChange] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    anonymous: list[str] = field(default_factory=list)

    def line(self, line: bytes) -> bytes:
        """The line with its address rewritten, or as it was."""
        body = line.rstrip(b"\r\n")
        match = _NODE_LINE.match(body)
        if match is None:
            return line  # `vars ...`, a blank line, or something we do not understand
        try:
            text = match["addr"].decode("ascii")
            flags = match["rest"].split()[0].decode("ascii").split(",")
        except (UnicodeDecodeError, IndexError):
            return line
        node_id = match["id"].decode("ascii")
        address = _Field.parse(text)
        if address is None or "noaddr" in flags:
            return line
        new_ip = self._target_ip(node_id, address, myself="myself" in flags)
        if new_ip is None or new_ip == address.ip:
            return line
        new = address.with_ip(new_ip)
        self.changes.append(AddressChange(node_id, address.hostname, text, new))
        start, end = match.span("addr")
        return body[:start] + new.encode("ascii") + body[end:] + line[len(body) :]

    def _target_ip(self, node_id: str, address: _Field, *, myself: bool) -> str | None:
        if myself:
            return self.my_ip
        if address.hostname is None:
            self.anonymous.append(node_id)
            return None
        ip = self.resolve(address.hostname)
        if ip is None:
            self.unresolved.append(address.hostname)
            return None
        _check_ip(ip, f"{address.hostname} resolved to")
        return ip


def repair_when_resolved(
    path: Path,
    *,
    my_ip: str,
    resolve: Resolver = dns_resolve,
    wait_s: float,
    poll_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> RepairReport:
    """`repair_nodes_conf`, again every `poll_s` while some names do not resolve, up to `wait_s`.

    Each pass rewrites what resolves by then (a pass is idempotent), so a node whose peers
    come up late still starts with every address that could be fixed. The report holds the
    changes of all passes and what still did not resolve at the end.
    """
    # Not `wait_until`: running out of time is no error here (the node starts with what
    # resolved), and the sleep is the caller's, so the tests need not wait.
    deadline = Deadline(max(0.0, wait_s))
    changes: list[AddressChange] = []
    while True:
        report = repair_nodes_conf(path, my_ip=my_ip, resolve=resolve)
        changes += report.changes
        if not report.unresolved or deadline.expired:
            return RepairReport(
                path=report.path,
                exists=report.exists,
                changes=tuple(changes),
                unresolved=report.unresolved,
                anonymous=report.anonymous,
            )
        sleep(min(poll_s, deadline.remaining_s))


def _check_ip(ip: str, what: str = "my_ip") -> None:
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise RepairError(f"{what} {ip!r}: not an IP address") from None


@contextlib.contextmanager
def _exclusive(handle: BinaryIO, path: Path) -> Iterator[None]:
    """Hold the lock a running `redis-server` holds on its nodes.conf (flock, Redis >= 4)."""
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RepairError(
            f"{path} is locked, by a running redis-server: repair it before the node starts"
        ) from None
    try:
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _replace_atomically(path: Path, content: bytes, mode: int) -> None:
    """Write `content` next to `path`, flush it to disk, then rename it over `path`."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            out.flush()
            os.fchmod(out.fileno(), mode & 0o7777)
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


# --- CLI --------------------------------------------------------------------------------------


def parse_map(text: str) -> dict[str, str]:
    """`host=ip,host=ip` -> {host: ip}; raises ValueError on anything else."""
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, eq, ip = item.partition("=")
        if not eq or not host.strip() or not ip.strip():
            raise ValueError(f"--map entry {item!r} is not host=ip")
        try:
            ipaddress.ip_address(ip.strip())
        except ValueError:
            raise ValueError(f"--map entry {item!r}: {ip.strip()!r} is not an IP address") from None
        mapping[host.strip()] = ip.strip()
    return mapping


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m courseredis.cluster_repair",
        description="Before redis-server starts: rewrite the addresses in its nodes.conf of "
        "the peers whose announced hostname now resolves elsewhere, and its own to --my-ip. "
        "A missing nodes.conf (first start) is not an error.",
    )
    parser.add_argument("--nodes-conf", required=True, type=Path, help="path of nodes.conf")
    parser.add_argument("--my-ip", required=True, help="this node's IP now (e.g. the pod IP)")
    parser.add_argument(
        "--map",
        default=None,
        help="host=ip,... : resolve exactly these names, instead of DNS",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=None,
        help="seconds to keep retrying names that do not resolve yet, then start with the "
        f"rest (default {DEFAULT_WAIT_S:g} with DNS, 0 with --map): a replica must not start "
        "with its master's old address",
    )
    args = parser.parse_args(argv)
    try:
        resolve = map_resolver(parse_map(args.map)) if args.map is not None else dns_resolve
        wait_s = args.wait if args.wait is not None else 0.0 if args.map else DEFAULT_WAIT_S
        report = repair_when_resolved(
            args.nodes_conf, my_ip=args.my_ip, resolve=resolve, wait_s=max(0.0, wait_s)
        )
    except (RepairError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

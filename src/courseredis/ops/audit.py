"""Keyspace audit: every key on every master, held against the key schema.

`python -m courseredis.ops.audit` walks each master with `SCAN` (never `KEYS`, which blocks
a node for the whole walk), in batches whose `TYPE` and `PTTL` go out in one pipeline, and
classifies every key with `keys.classify`. It reports, as JSON:

- the masters audited and the keys seen on each;
- per pattern: the count, the Redis types and the TTL distribution;
- the TTL distribution over all keys;
- the violations, each naming its key: a key outside the schema, a key without a TTL (event
  streams excepted: they are the queue, bounded by length, so their length is checked
  against `keys.EVENT_STREAM_MAX_LENGTH` instead), a TTL longer than its pattern's rule, a
  key of the wrong Redis type;
- the biggest keys by `MEMORY USAGE`, measured on every key or, past `memory_sample` keys
  per master, on a uniform sample of that many (reservoir sampling), and said so.

Exit status: 0 when the keyspace follows the schema, 1 on any violation (the offending keys
are named on stderr and in the JSON), 2 when the audit could not run (a master unreachable,
a refused login): a partial audit is never reported as a clean one.

On a cluster the masters are found from `CLUSTER NODES` of the given nodes and must cover
all 16384 slots; replicas are not scanned (they hold the same keys).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from courseredis import keys
from courseredis.stack_file import STACK_FILE, TargetError, read_stack_file
from courseredis.topology import (
    TOTAL_SLOTS,
    merged_view,
    parse_cluster_nodes,
    slot_masters,
    split_addr,
)

# TTL buckets, upper bounds inclusive; past the last one a key lands in ">7d".
TTL_BUCKETS: tuple[tuple[str, timedelta], ...] = (
    ("<=1m", timedelta(minutes=1)),
    ("<=5m", timedelta(minutes=5)),
    ("<=1h", timedelta(hours=1)),
    ("<=24h", timedelta(hours=24)),
    ("<=7d", timedelta(days=7)),
)
NO_TTL = "none"
ABOVE_LAST_BUCKET = ">7d"
BUCKET_NAMES = (NO_TTL, *(name for name, _ in TTL_BUCKETS), ABOVE_LAST_BUCKET)

# Violation kinds, as they appear in the JSON.
OUTSIDE_SCHEMA = "outside_schema"
NO_TTL_VIOLATION = "no_ttl"
TTL_ABOVE_RULE = "ttl_above_rule"
WRONG_TYPE = "wrong_type"
STREAM_TOO_LONG = "stream_too_long"

# `XADD ... MAXLEN ~ n` trims whole stream nodes only, so a stream may run past `n` by up
# to one node's entries (`stream-node-max-entries`, 100 by default) before it is trimmed.
DEFAULT_STREAM_NODE_MAX_ENTRIES = 100
_MS = timedelta(milliseconds=1)
_SOCKET_TIMEOUT_S = 5.0
# Violations and keys without a TTL kept by name; past it they are only counted (a broken
# writer can make millions).
_MAX_KEPT = 10_000


class AuditError(RuntimeError):
    """The audit could not cover the keyspace (unreachable master, refused login, ...)."""


@dataclass(frozen=True)
class Violation:
    key: str
    node: str
    kind: str
    pattern: str | None
    detail: str

    def message(self) -> str:
        of = f" ({self.pattern})" if self.pattern else ""
        return f"{self.key}{of} on {self.node}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "node": self.node,
            "kind": self.kind,
            "pattern": self.pattern,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class KeySize:
    key: str
    node: str
    pattern: str | None
    redis_type: str
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "node": self.node,
            "pattern": self.pattern,
            "type": self.redis_type,
            "bytes": self.bytes,
        }


@dataclass
class PatternStats:
    count: int = 0
    types: Counter[str] = field(default_factory=Counter)
    ttl: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "types": dict(sorted(self.types.items())),
            "ttl": {name: self.ttl.get(name, 0) for name in BUCKET_NAMES},
        }


@dataclass
class AuditReport:
    mode: str  # standalone | cluster
    masters: dict[str, int]  # master address -> keys scanned there
    match: str | None
    patterns: dict[str, PatternStats]
    outside_schema: PatternStats
    ttl_distribution: Counter[str]
    violations: list[Violation]  # the first _MAX_KEPT; all are counted in violation_counts
    violation_count: Counter[str]
    without_ttl: list[str]  # every key without a TTL but event streams, in or out of the schema
    without_ttl_count: int
    biggest: list[KeySize]
    memory_measured: int
    memory_sampled: bool
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return not self.violation_count

    @property
    def scanned(self) -> int:
        return sum(self.masters.values())

    @property
    def violation_total(self) -> int:
        return sum(self.violation_count.values())

    def to_json(self, max_listed: int = 100) -> dict[str, Any]:
        listed = self.violations[:max_listed]
        return {
            "ok": self.ok,
            "mode": self.mode,
            "match": self.match,
            "masters": dict(self.masters),
            "keys_scanned": self.scanned,
            "patterns": {
                p.name: {"template": p.display_template, **self.patterns[p.name].to_json()}
                for p in keys.PATTERNS
            },
            "outside_schema": self.outside_schema.to_json(),
            "ttl_distribution": {name: self.ttl_distribution.get(name, 0) for name in BUCKET_NAMES},
            "violation_counts": dict(sorted(self.violation_count.items())),
            "violations": [v.to_json() for v in listed],
            "violations_not_listed": self.violation_total - len(listed),
            "keys_without_ttl": {
                "count": self.without_ttl_count,
                "keys": self.without_ttl[:max_listed],
            },
            "biggest_keys": [k.to_json() for k in self.biggest],
            "memory": {"measured": self.memory_measured, "sampled": self.memory_sampled},
            "elapsed_s": round(self.elapsed_s, 3),
        }


def ttl_bucket(pttl_ms: int | None) -> str:
    """The distribution bucket of a TTL in ms (None: the key has no TTL)."""
    if pttl_ms is None:
        return NO_TTL
    for name, bound in TTL_BUCKETS:
        if pttl_ms <= bound // _MS:
            return name
    return ABOVE_LAST_BUCKET


def human(ms: int) -> str:
    """A duration in ms as people read it: `350 ms`, `42 s`, `5 m`, `24 h`, `7 d`; a unit is
    used from two of it on, so a day reads `24 h` and a minute `60 s`."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= 2 * size or (unit == "s" and ms >= size):
            return f"{ms / size:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{ms} ms"


def display(key: bytes | str) -> str:
    """A key as text; bytes that are not UTF-8 are shown escaped, never dropped."""
    return key if isinstance(key, str) else key.decode("utf-8", errors="backslashreplace")


def check_key(
    key: bytes | str,
    redis_type: str,
    pttl_ms: int | None,
    *,
    node: str,
    stream_length: int | None = None,
    stream_slack: int = DEFAULT_STREAM_NODE_MAX_ENTRIES,
) -> tuple[keys.KeyPattern | None, list[Violation]]:
    """The pattern of one key and what is wrong with it (`pttl_ms` None: no TTL)."""
    name = display(key)
    match = keys.classify(key)
    if match is None:
        detail = f"outside the key schema (a {redis_type}"
        detail += ", no TTL)" if pttl_ms is None else f", TTL {human(pttl_ms)})"
        return None, [Violation(name, node, OUTSIDE_SCHEMA, None, detail)]
    pattern = match.pattern
    found: list[Violation] = []

    def add(kind: str, detail: str) -> None:
        found.append(Violation(name, node, kind, pattern.name, detail))

    if redis_type not in pattern.redis_types:
        add(WRONG_TYPE, f"is a {redis_type}, the schema says {' or '.join(pattern.redis_types)}")
    limit = pattern.ttl.max
    if limit is None:
        bound = keys.EVENT_STREAM_MAX_LENGTH + stream_slack
        if stream_length is not None and stream_length > bound:
            add(
                STREAM_TOO_LONG,
                f"has {stream_length} entries, above the bound of "
                f"{keys.EVENT_STREAM_MAX_LENGTH} (+{stream_slack} for approximate trimming)",
            )
    elif pttl_ms is None:
        add(NO_TTL_VIOLATION, f"has no TTL; the rule is {pattern.ttl.description}")
    elif pttl_ms > limit // _MS:
        add(
            TTL_ABOVE_RULE,
            f"TTL {human(pttl_ms)} ({pttl_ms} ms) is above the rule's {human(limit // _MS)} "
            f"({pattern.ttl.description})",
        )
    return pattern, found


# --- talking to the nodes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    username: str | None
    password: str | None
    tls: bool = False
    tls_ca_file: str | None = None


@contextmanager
def _node(addr: str, credentials: Credentials) -> Iterator[redis.Redis]:
    host, port = split_addr(addr)
    tls: dict[str, Any] = {}
    if credentials.tls:
        tls = {"ssl": True, "ssl_ca_certs": credentials.tls_ca_file}
    client = redis.Redis(
        host=host,
        port=port,
        username=credentials.username,
        password=credentials.password,
        socket_timeout=_SOCKET_TIMEOUT_S,
        socket_connect_timeout=_SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), 1),
        decode_responses=False,  # keys may be any bytes; values are never read
        **tls,
    )
    try:
        yield client
    finally:
        client.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _info(client: redis.Redis, section: str) -> dict[str, Any]:
    reply: dict[str, Any] = client.info(section)
    return reply


def find_masters(nodes: Sequence[str], credentials: Credentials) -> tuple[str, list[str]]:
    """The mode and the masters to scan.

    Standalone: every given node that is a master, all of which must answer. Cluster: every
    master owning slots, as seen by the given nodes that answer (by the address it was given
    as, when it was one); together they must own all 16384 slots, so a node that does not
    answer is an error only when keys could hide on it.
    """
    if not nodes:
        raise AuditError("no Redis nodes given")
    errors: list[str] = []
    views: dict[str, tuple[str, str]] = {}  # given addr -> (CLUSTER NODES text, role)
    modes: set[bool] = set()
    for addr in nodes:
        try:
            with _node(addr, credentials) as client:
                enabled = _info(client, "cluster").get("cluster_enabled") in (1, "1")
                role = str(_info(client, "replication").get("role"))
                text = ""
                if enabled:
                    reply = client.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
                    text = _text(reply)
        except RedisError as exc:
            errors.append(f"{addr}: {type(exc).__name__}: {exc}")
            continue
        modes.add(enabled)
        views[addr] = (text, role)
    if len(modes) > 1:
        raise AuditError("the given nodes mix cluster and standalone Redis")
    if not views or (errors and modes == {False}):
        raise AuditError("cannot reach the given nodes: " + "; ".join(errors))
    if modes == {False}:
        standalone = [addr for addr, (_, role) in views.items() if role == "master"]
        if not standalone:
            raise AuditError("none of the given nodes is a master")
        return "standalone", standalone

    parsed = {addr: parse_cluster_nodes(text) for addr, (text, _) in views.items()}
    given_by_id = {n.node_id: addr for addr, view in parsed.items() for n in view if n.myself}
    masters: list[str] = []
    owned = 0
    for node in slot_masters(merged_view(parsed.values()).values()):
        owned += node.slot_count
        masters.append(given_by_id.get(node.node_id) or f"{node.hostname or node.host}:{node.port}")
    if owned != TOTAL_SLOTS:
        unreachable = f" (unreachable: {'; '.join(errors)})" if errors else ""
        raise AuditError(
            f"the healthy masters own {owned} of {TOTAL_SLOTS} slots: the keys of the "
            f"others cannot be audited{unreachable}"
        )
    return "cluster", masters


# --- the audit --------------------------------------------------------------------------------


@dataclass
class _Accumulator:
    patterns: dict[str, PatternStats] = field(
        default_factory=lambda: {p.name: PatternStats() for p in keys.PATTERNS}
    )
    outside: PatternStats = field(default_factory=PatternStats)
    ttl: Counter[str] = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)
    violation_count: Counter[str] = field(default_factory=Counter)
    without_ttl: list[str] = field(default_factory=list)
    without_ttl_count: int = 0
    sizes: list[KeySize] = field(default_factory=list)
    measured: int = 0
    sampled: bool = False


def audit_keyspace(
    nodes: Sequence[str],
    credentials: Credentials,
    *,
    match: str | None = None,
    top: int = 10,
    memory_sample: int = 2000,
    scan_count: int = 1000,
    seed: int | None = None,
) -> AuditReport:
    """Audit every key (or those matching the glob `match`) on every master of `nodes`."""
    if top < 0 or memory_sample < 0 or scan_count < 1:
        raise ValueError("top and memory_sample must be >= 0, scan_count >= 1")
    started = time.monotonic()
    mode, masters = find_masters(nodes, credentials)
    acc = _Accumulator()
    scanned: dict[str, int] = {}
    rng = random.Random(seed)
    for master in masters:
        try:
            with _node(master, credentials) as client:
                scanned[master] = _audit_master(
                    client, master, acc, match, memory_sample, scan_count, rng
                )
        except RedisError as exc:
            raise AuditError(f"auditing {master} failed: {type(exc).__name__}: {exc}") from exc
    biggest = sorted(acc.sizes, key=lambda k: (-k.bytes, k.key))[:top]
    return AuditReport(
        mode=mode,
        masters=scanned,
        match=match,
        patterns=acc.patterns,
        outside_schema=acc.outside,
        ttl_distribution=acc.ttl,
        violations=acc.violations,
        violation_count=acc.violation_count,
        without_ttl=acc.without_ttl,
        without_ttl_count=acc.without_ttl_count,
        biggest=biggest,
        memory_measured=acc.measured,
        memory_sampled=acc.sampled,
        elapsed_s=time.monotonic() - started,
    )


def _stream_slack(client: redis.Redis) -> int:
    try:
        reply = client.config_get("stream-node-max-entries")
    except ResponseError:
        return DEFAULT_STREAM_NODE_MAX_ENTRIES
    values = {_text(k): _text(v) for k, v in reply.items()}
    value = values.get("stream-node-max-entries", "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_STREAM_NODE_MAX_ENTRIES


def _audit_master(
    client: redis.Redis,
    node: str,
    acc: _Accumulator,
    match: str | None,
    memory_sample: int,
    scan_count: int,
    rng: random.Random,
) -> int:
    slack = _stream_slack(client)
    reservoir: list[tuple[bytes | str, str | None, str]] = []  # key, pattern, type
    seen = 0
    cursor = 0
    while True:
        cursor, batch = client.scan(cursor=cursor, match=match, count=scan_count)
        if batch:
            pipe = client.pipeline(transaction=False)
            for key in batch:
                pipe.type(key)
                pipe.pttl(key)
            replies = pipe.execute(raise_on_error=False)
            streams: list[tuple[bytes | str, int | None]] = []
            live: list[tuple[bytes | str, str, int | None]] = []
            for i, key in enumerate(batch):
                redis_type, pttl = replies[2 * i], replies[2 * i + 1]
                if isinstance(redis_type, Exception) or isinstance(pttl, Exception):
                    raise AuditError(f"{node}: reading {display(key)} failed: {redis_type!r}")
                type_name = _text(redis_type)
                if type_name == "none" or pttl == -2:
                    continue  # expired or deleted since SCAN returned it
                ttl = None if pttl == -1 else int(pttl)
                if type_name == "stream":
                    streams.append((key, ttl))
                else:
                    live.append((key, type_name, ttl))
            lengths: list[Any] = []
            if streams:
                pipe = client.pipeline(transaction=False)
                for key, _ in streams:
                    pipe.xlen(key)
                lengths = pipe.execute(raise_on_error=False)
            entries = live + [(key, "stream", ttl) for key, ttl in streams]
            stream_lengths = {
                key: int(n)
                for (key, _), n in zip(streams, lengths, strict=True)
                if isinstance(n, int)
            }
            for key, type_name, ttl in entries:
                pattern, problems = check_key(
                    key,
                    type_name,
                    ttl,
                    node=node,
                    stream_length=stream_lengths.get(key),
                    stream_slack=slack,
                )
                stats = acc.patterns[pattern.name] if pattern else acc.outside
                stats.count += 1
                stats.types[type_name] += 1
                bucket = ttl_bucket(ttl)
                stats.ttl[bucket] += 1
                acc.ttl[bucket] += 1
                for problem in problems:
                    acc.violation_count[problem.kind] += 1
                    if len(acc.violations) < _MAX_KEPT:
                        acc.violations.append(problem)
                if ttl is None and (pattern is None or pattern.ttl.max is not None):
                    acc.without_ttl_count += 1
                    if len(acc.without_ttl) < _MAX_KEPT:
                        acc.without_ttl.append(display(key))
                # Reservoir sampling: after n keys each has had memory_sample/n chance.
                seen += 1
                entry = (key, pattern.name if pattern else None, type_name)
                if len(reservoir) < memory_sample:
                    reservoir.append(entry)
                elif memory_sample:
                    slot = rng.randrange(seen)
                    if slot < memory_sample:
                        reservoir[slot] = entry
        if cursor == 0:
            break
    if seen > memory_sample:
        acc.sampled = True
    _measure(client, node, reservoir, acc)
    return seen


def _measure(
    client: redis.Redis,
    node: str,
    chosen: list[tuple[bytes | str, str | None, str]],
    acc: _Accumulator,
) -> None:
    for start in range(0, len(chosen), 500):
        chunk = chosen[start : start + 500]
        pipe = client.pipeline(transaction=False)
        for key, _, _ in chunk:
            pipe.memory_usage(key, samples=5)
        for (key, pattern, redis_type), size in zip(
            chunk, pipe.execute(raise_on_error=False), strict=True
        ):
            if isinstance(size, int):  # None: gone since the scan
                acc.measured += 1
                acc.sizes.append(KeySize(display(key), node, pattern, redis_type, size))


# --- CLI ----------------------------------------------------------------------------------------


def _target_from_stack_json(path: Path) -> tuple[list[str], str | None, str | None]:
    try:
        redis = read_stack_file(path).redis
    except (OSError, TargetError) as exc:
        raise AuditError(f"cannot read the Redis nodes from {path}: {exc}") from exc
    if redis is None:
        raise AuditError(f"cannot read the Redis nodes from {path}: it has no `redis` section")
    return list(redis.nodes), redis.username, redis.password


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m courseredis.ops.audit",
        description=(
            "Audit the keyspace against the key schema: SCAN every master, classify every "
            "key, report counts, TTLs, violations and the biggest keys as JSON. Exit 0 when "
            "clean, 1 on a violation, 2 when the audit could not run. The password comes from "
            "REDIS_PASSWORD, else from the stack file."
        ),
    )
    parser.add_argument(
        "--nodes",
        default=os.environ.get("REDIS_AUDIT_NODES"),
        help="comma-separated host:port of the nodes (env REDIS_AUDIT_NODES; default: the "
        "nodes of --stack-json)",
    )
    parser.add_argument(
        "--stack-json",
        default=str(STACK_FILE),
        help="the local stack's description, used when --nodes is not given "
        f"(default: {STACK_FILE})",
    )
    parser.add_argument(
        "--username", default=None, help="ACL user (default: REDIS_USERNAME, else the stack's)"
    )
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--tls-ca-file", default=None, help="the CA to trust with --tls")
    parser.add_argument("--match", default=None, help="audit only keys matching this glob")
    parser.add_argument("--top", type=int, default=10, help="biggest keys to list (10)")
    parser.add_argument(
        "--memory-sample",
        type=int,
        default=2000,
        help="keys per master measured with MEMORY USAGE; past it, a uniform sample (2000)",
    )
    parser.add_argument(
        "--max-listed", type=int, default=100, help="violations listed in the JSON (100)"
    )
    parser.add_argument("--indent", type=int, default=2, help="JSON indent (2; 0: one line)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    username = args.username or os.environ.get("REDIS_USERNAME") or None
    password = os.environ.get("REDIS_PASSWORD") or None
    try:
        if args.nodes:
            nodes = [n.strip() for n in args.nodes.split(",") if n.strip()]
        else:
            nodes, stack_user, stack_password = _target_from_stack_json(Path(args.stack_json))
            username = username or stack_user
            password = password or stack_password
        report = audit_keyspace(
            nodes,
            Credentials(username, password, args.tls, args.tls_ca_file),
            match=args.match,
            top=args.top,
            memory_sample=args.memory_sample,
        )
    except (AuditError, ValueError) as exc:
        print(f"audit error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(args.max_listed), indent=args.indent or None))
    print(
        f"audit: {report.scanned} key(s) on {len(report.masters)} master(s), "
        f"{report.violation_total} violation(s)",
        file=sys.stderr,
    )
    for violation in report.violations[: args.max_listed]:
        print(f"violation: {violation.message()}", file=sys.stderr)
    hidden = report.violation_total - args.max_listed
    if hidden > 0:
        print(f"... and {hidden} more violation(s)", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

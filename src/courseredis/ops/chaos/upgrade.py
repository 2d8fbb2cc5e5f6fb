"""Scenario 7: the prod cluster upgraded from Redis to Valkey node by node, under load.

The 3x2 cluster starts on the machine's `redis-server` (AOF, as Pulumi.prod.yaml says) with
the four services; a known dataset (every Redis type, with and without TTL) and the
services' own kinds of keys (sessions, refresh families, revocations, written through the
patterns as the auth service's ACL user) are written and read back as the reference. Then,
with virtual users going through the gateway (traffic.py), every node is upgraded the way
a StatefulSet rolls: the replicas first, each stopped with `SHUTDOWN SAVE` (its AOF flushed,
a snapshot written) and started on the new binary on the same port, directory, nodes.conf
and ACL file, its redis.conf rendered again (`redis_config` renders the same file for both
engines: the directives that differ have aliases, docs/engines.md), until it is a replica in
sync; then `CLUSTER FAILOVER` on each upgraded replica, so the new engine serves every
slot; then the old masters, replicas now, the same way. Each start goes through
`relaunch_nodes`, so each is checked against the data's format first
(`local/data_format.py`); before any node stops, every node's files are checked against
the target, so an upgrade the formats do not allow is refused whole. Last, a downgrade is
attempted on one node (the old binary on the new engine's files) and must be refused.

`options.targets` are the binaries to upgrade to, in order: one hop each. When the machine
has one minor version of the target engine only, the hop across a minor version is named in
the figures (`hops_not_done`), never skipped silently.

Figures: the versions before and after, each node's upgrade (its role, seconds from stop to
synced, the files and formats it started on, what its log says it loaded), the total, the
failed requests out of the total, and the dataset comparison.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from courseredis import keys
from courseredis.cluster_bootstrap import cluster_health, wait_until_healthy
from courseredis.connection import create_client, open_async_client
from courseredis.engines import (
    SPECS,
    LocalEngine,
    format_version,
    server_version,
)
from courseredis.local.data_format import (
    DataFormatError,
    binary_engine,
    check_readable,
    reader,
    reads,
)
from courseredis.local.nodes import node_directory, shutdown_nodes, stop_pids
from courseredis.ops.chaos.live import LivePlatform, live_platform, relaunch_node
from courseredis.ops.chaos.report import ScenarioResult, describe_error, rounded
from courseredis.ops.chaos.traffic import (
    Addresses,
    Gateway,
    LoadStats,
    Recorder,
    VirtualUser,
    login,
    start_users,
)
from courseredis.patterns.blacklist import AsyncBlacklist
from courseredis.patterns.refresh import AsyncRefreshTokens
from courseredis.patterns.sessions import AsyncSessions
from courseredis.waiting import Deadline, wait_until

NAME = "rolling_upgrade"
TITLE = "7. Rolling upgrade, Redis to Valkey, under load"
HEADLINE = (
    "versions_before",
    "versions_after",
    "failed_requests",
    "requests",
    "upgrade_s",
    "node_s_max",
    "dataset_intact",
    "loaded_old_files",
    "downgrade_refused",
    "hops_not_done",
)
_STOP_BUDGET_S = 30.0
# What a server's log says it loaded at start (Redis and Valkey word these alike).
_LOADED = re.compile(
    r"(Loading RDB produced by .*|DB loaded from (?:append only file|disk).*"
    r"|Done loading RDB, keys loaded: \d+.*)$"
)


@dataclass(frozen=True)
class UpgradeOptions:
    users: int = 12
    items: int = 200  # the dataset: this many keys of each kind
    targets: tuple[str, ...] = (SPECS["valkey"].server,)  # binaries, one hop each
    settle_s: float = 3.0  # load after the last node is back
    node_timeout_s: float = 60.0
    courses: int = 50
    seed: int | None = None

    @classmethod
    def short(cls) -> UpgradeOptions:
        return cls(users=6, items=40, settle_s=1.0)


def run(workdir: Path, options: UpgradeOptions | None = None) -> ScenarioResult:
    options = options or UpgradeOptions()
    result = ScenarioResult(NAME, TITLE, headline=HEADLINE)
    started = time.monotonic()
    try:
        with live_platform(workdir, students=options.users + 2, courses=options.courses) as p:
            asyncio.run(_scenario(p, options, result))
    except Exception as error:  # the scenario could not finish: say why, never hang
        result.error = describe_error(error)
    result.duration_s = time.monotonic() - started
    return result


async def _scenario(
    platform: LivePlatform, options: UpgradeOptions, result: ScenarioResult
) -> None:
    figures = result.figures
    source = platform.stack.engine
    if source is None or source.name != "redis":
        raise RuntimeError(
            f"the upgrade starts from redis-server; this stack runs {source and source.describe()}"
            " (unset COURSEREDIS_ENGINE)"
        )
    hops = _hops(source, options.targets)
    figures["versions_before"] = _versions(platform)
    figures["hops"] = [f"{a.describe()} -> {b.describe()}" for a, b in hops]
    figures["hops_not_done"], figures["hops_not_done_why"] = _hops_not_done(hops)

    dataset = await asyncio.to_thread(_write_dataset, platform, options.items)
    dataset.update(await _write_service_keys(platform, options.items))
    await asyncio.to_thread(_rewrite_aofs, platform, options)
    reference = await asyncio.to_thread(_snapshot, platform, list(dataset))
    figures["dataset_keys"] = len(reference)

    recorder = Recorder()
    gateway = Gateway(platform.gateway, recorder)
    rng = random.Random(options.seed)
    addresses = Addresses()
    stats = LoadStats()
    students = platform.credentials.students
    users = [
        VirtualUser(
            gateway,
            name,
            password,
            courses=options.courses,
            addresses=addresses,
            stats=stats,
            seed=rng.randrange(2**32),
        )
        for name, password in students[: options.users]
    ]
    try:
        logged_in = await start_users(users)
        result.check("users logged in", logged_in == len(users), f"{logged_in}/{len(users)}")
        recorder.samples.clear()  # the figures count the load during the upgrade
        stop = asyncio.Event()
        hard_end = Deadline(options.node_timeout_s * 20)
        tasks = [asyncio.create_task(u.run(stop, hard_end)) for u in users]

        began = time.monotonic()
        nodes: list[dict[str, Any]] = []
        for previous, target in hops:
            nodes += await asyncio.to_thread(_hop, platform, previous, target, options)
        figures["upgrade_s"] = rounded(time.monotonic() - began, 2)
        figures["nodes"] = nodes
        figures["node_s_max"] = max(n["took_s"] for n in nodes)
        refusal = await asyncio.to_thread(
            _attempt_downgrade, platform, source, hops[-1][1], options
        )
        figures["downgrade_refused"] = refusal is not None
        figures["downgrade_message"] = refusal
        await asyncio.sleep(options.settle_s)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=_STOP_BUDGET_S)

        failed = recorder.failed()
        figures["requests"] = len(recorder.samples)
        figures["failed_requests"] = len(failed)
        figures["http_500"] = sum(s.status == 500 for s in failed)
        figures["statuses"] = recorder.statuses()
        window = recorder.error_window()
        figures["error_window_s"] = rounded(window[1] - window[0], 2) if window else 0.0
        figures["failures_by_op"] = dict(Counter(s.op for s in failed))
        figures["versions_after"] = _versions(platform)

        target = hops[-1][1]
        _check_versions(platform, result, target)
        _check_loads(result, nodes, len(hops))
        after = await asyncio.to_thread(_snapshot, platform, list(dataset))
        _check_dataset(result, reference, after)
        health = await asyncio.to_thread(
            cluster_health,
            platform.stack.nodes,
            platform.stack.username,
            platform.stack.password,
            platform.topology.replicas_per_master,
        )
        result.check("cluster healthy after", health.ok, "; ".join(health.problems[:3]))
        result.check(
            "no 500 during the upgrade", figures["http_500"] == 0, str(figures["statuses"])
        )
        # What the target writes is its highest format (tests/local/test_data_format.py).
        written = reader(target.name, target.version).highest
        downgrade_due = not reads(source.name, source.version, written)
        result.check(
            "a downgrade across the data format is refused before it runs",
            figures["downgrade_refused"] == downgrade_due,
            str(refusal),
        )
        await _check_full_service(platform, gateway, addresses, result, students[options.users])
        result.check(
            "services never restarted", not platform.services_gone(), f"{platform.services_gone()}"
        )
    finally:
        await gateway.aclose()


# --- the hops ---------------------------------------------------------------------------------


def _hops(source: LocalEngine, targets: Sequence[str]) -> list[tuple[LocalEngine, LocalEngine]]:
    """(from, to) for each target binary, in order, each from the one before."""
    hops = []
    previous = source
    for binary in targets:
        target = binary_engine(binary)
        hops.append((previous, target))
        previous = target
    return hops


def _hops_not_done(hops: Sequence[tuple[LocalEngine, LocalEngine]]) -> tuple[list[str], str]:
    """The hop across a minor version of the target engine when this machine cannot do it,
    and why."""
    target = hops[-1][1]
    minors = {b.version.rsplit(".", 1)[0] for _, b in hops if b.name == target.name}
    if len(minors) > 1:
        return [], ""
    major, minor = target.version.split(".")[:2]
    return [f"{target.name} {major}.{minor} -> {major}.{int(minor) + 1}"], (
        f"this machine has one {SPECS[target.name].server} ({target.version} at "
        f"{target.binary}); give UpgradeOptions.targets a second binary of another minor "
        "version to run it"
    )


def _hop(
    platform: LivePlatform, previous: LocalEngine, target: LocalEngine, options: UpgradeOptions
) -> list[dict[str, Any]]:
    """Replicas, a failover onto each, then the old masters: every node onto `target`."""
    stack = platform.stack
    for i in range(len(stack.nodes)):  # refused whole before any node stops
        check_readable(node_directory(stack.data_dir, i), target.name, target.version)
    view = platform.cluster_view(stack.nodes[0])
    replicas = [n.addr for n in view if n.is_replica]
    masters = [n.addr for n in view if n.is_master and n.slots]
    done = [_upgrade_node(platform, addr, target, options, "replica") for addr in replicas]
    for addr in replicas:
        _failover_to(platform, addr, options)
    done += [_upgrade_node(platform, addr, target, options, "old master") for addr in masters]
    for entry in done:
        entry["hop"] = f"{previous.describe()} -> {target.describe()}"
    return done


def _upgrade_node(
    platform: LivePlatform, addr: str, target: LocalEngine, options: UpgradeOptions, role: str
) -> dict[str, Any]:
    stack = platform.stack
    index = stack.nodes.index(addr)
    directory = node_directory(stack.data_dir, index)
    began = time.monotonic()
    accepted = shutdown_nodes([addr], stack.username, stack.password, save=True)
    stop_pids([(stack.pids[index], stack.ports[index])], expect_exit=accepted)
    files = check_readable(directory, target.name, target.version)
    log_start = _log_size(directory)
    platform.stack = relaunch_node(replace(stack, engine=target), platform.topology, index)
    _wait_healthy(platform, options)
    took = time.monotonic() - began
    with platform.node(addr) as client:
        replication = client.info("replication")
        engine, version = server_version(client.info("server"))
    return {
        "node": addr,
        "role": role,
        "took_s": rounded(took, 2),
        "files": [f"{f.path.relative_to(directory)}: RDB {f.version}" for f in files],
        # What its log says it loaded from disk, then from its master's full sync.
        **_loaded_lines(directory, log_start),
        "now": f"{engine} {format_version(version)}, {replication['role']}, link "
        f"{replication.get('master_link_status', '-')}",
    }


def _failover_to(platform: LivePlatform, addr: str, options: UpgradeOptions) -> None:
    """`CLUSTER FAILOVER` on a replica (its master hands over, nothing is lost): wait until it
    is master and the cluster healthy."""
    with platform.node(addr) as client:
        client.execute_command("CLUSTER", "FAILOVER")

        def promoted() -> bool:
            return bool(client.info("replication")["role"] == "master")

        wait_until(promoted, timeout_s=options.node_timeout_s, what=f"{addr} to be master")
    _wait_healthy(platform, options)


def _attempt_downgrade(
    platform: LivePlatform, source: LocalEngine, target: LocalEngine, options: UpgradeOptions
) -> str | None:
    """Stop one replica and start it on the old binary: the refusal's message, or None when
    it started (then it goes back to `target` all the same)."""
    stack = platform.stack
    view = platform.cluster_view(stack.nodes[0])
    addr = next(n.addr for n in view if n.is_replica)
    index = stack.nodes.index(addr)
    accepted = shutdown_nodes([addr], stack.username, stack.password, save=True)
    stop_pids([(stack.pids[index], stack.ports[index])], expect_exit=accepted)
    outcome: str | None = None
    try:
        platform.stack = relaunch_node(replace(stack, engine=source), platform.topology, index)
        accepted = shutdown_nodes([addr], stack.username, stack.password, save=True)
        stop_pids([(platform.stack.pids[index], stack.ports[index])], expect_exit=accepted)
    except DataFormatError as refused:
        outcome = str(refused)
    platform.stack = relaunch_node(replace(stack, engine=target), platform.topology, index)
    _wait_healthy(platform, options)
    return outcome


def _wait_healthy(platform: LivePlatform, options: UpgradeOptions) -> None:
    """Every node up, the cluster ok, each master with its replicas in sync."""
    wait_until_healthy(
        platform.stack.nodes,
        platform.stack.username,
        platform.stack.password,
        platform.topology.replicas_per_master,
        timeout_s=options.node_timeout_s,
    )


def _log_size(directory: Path) -> int:
    log = directory / "redis.log"
    return log.stat().st_size if log.exists() else 0


def _loaded_lines(directory: Path, offset: int) -> dict[str, list[str]]:
    with (directory / "redis.log").open("rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    found = [m[1] for m in (_LOADED.search(line) for line in text.splitlines()) if m]
    end = next((i + 1 for i, line in enumerate(found) if "append only file" in line), 0)
    return {"loaded_from_disk": found[:end], "loaded_from_sync": found[end:]}


def _versions(platform: LivePlatform) -> str:
    seen: Counter[str] = Counter()
    for addr in platform.stack.nodes:
        with platform.node(addr) as client:
            engine, version = server_version(client.info("server"))
        seen[f"{engine} {format_version(version)}"] += 1
    return ", ".join(f"{name} x{count}" for name, count in sorted(seen.items()))


# --- the dataset ------------------------------------------------------------------------------

_TTL_S = 3600


def _write_dataset(platform: LivePlatform, items: int) -> dict[str, str]:
    """`items` keys of each Redis type, every other one with a TTL; key -> type."""
    written: dict[str, str] = {}
    with create_client(platform.admin_settings()) as client:
        for i in range(items):
            ttl = _TTL_S if i % 2 else None
            base = f"upgrade:{uuid.uuid4().hex[:8]}:{i}"
            client.set(f"{base}:string", f"value-{i}", ex=ttl)
            client.hset(f"{base}:hash", mapping={"n": str(i), "name": f"item {i}"})
            client.rpush(f"{base}:list", *[str(j) for j in range(3)])
            client.sadd(f"{base}:set", "a", "b", str(i))
            client.zadd(f"{base}:zset", {"a": i, "b": i + 0.5})
            client.xadd(f"{base}:stream", {"i": str(i)}, id=f"{i + 1}-1")
            for kind in ("hash", "list", "set", "zset", "stream"):
                if ttl:
                    client.expire(f"{base}:{kind}", ttl)
                written[f"{base}:{kind}"] = kind
            written[f"{base}:string"] = "string"
    return written


async def _write_service_keys(platform: LivePlatform, items: int) -> dict[str, str]:
    """Sessions, refresh families and revocations through the patterns, as auth writes them."""
    client = await open_async_client(platform.service_settings("auth"))
    written: dict[str, str] = {}
    try:
        tokens = AsyncRefreshTokens(client)
        sessions = AsyncSessions(client)
        blacklist = AsyncBlacklist(client)
        expires = int(time.time()) + int(keys.ACCESS_TOKEN_LIFETIME.total_seconds())
        for i in range(items):
            family = (await tokens.issue(2000 + i, "courses")).record.family
            await sessions.create(2000 + i, ("student",), session_id=family)
            jti = str(uuid.uuid4())
            await blacklist.revoke(jti, expires)
            written[keys.refresh_token(family)] = "service"
            written[keys.session(family)] = "service"
            written[keys.jwt_revoked(jti)] = "service"
    finally:
        await client.aclose()
    return written


def _rewrite_aofs(platform: LivePlatform, options: UpgradeOptions) -> None:
    """`BGREWRITEAOF` on every node: the AOF base (an RDB in the old engine's format) then
    holds the dataset, not just the empty start, and the next engine has to read it."""
    for addr in platform.stack.nodes:
        with platform.node(addr) as client:
            client.bgrewriteaof()

            def rewritten() -> bool:
                info = client.info("persistence")
                return not (info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"])

            wait_until(rewritten, timeout_s=options.node_timeout_s, what=f"{addr}'s AOF rewrite")


def _snapshot(platform: LivePlatform, names: Sequence[str]) -> dict[str, tuple[str, Any, int]]:
    """key -> (type, value, PTTL) read by the admin; a missing key has type `none`."""
    out: dict[str, tuple[str, Any, int]] = {}
    with create_client(platform.admin_settings()) as client:
        for key in names:
            kind = str(client.type(key))
            out[key] = (kind, _value(client, key, kind), int(client.pttl(key)))
    return out


def _value(client: Any, key: str, kind: str) -> Any:
    if kind == "string":
        return client.get(key)
    if kind == "hash":
        return client.hgetall(key)
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "set":
        return sorted(client.smembers(key))
    if kind == "zset":
        return client.zrange(key, 0, -1, withscores=True)
    if kind == "stream":
        return client.xrange(key)
    return None


# --- the checks -------------------------------------------------------------------------------


def _check_dataset(
    result: ScenarioResult,
    before: dict[str, tuple[str, Any, int]],
    after: dict[str, tuple[str, Any, int]],
) -> None:
    missing = [k for k, (kind, _, _) in after.items() if kind == "none"]
    changed = [k for k in before if after[k][:2] != before[k][:2] and k not in missing]
    bad_ttl = [k for k in before if not _ttl_kept(before[k][2], after[k][2])]
    n = len(before)
    result.figures["dataset_intact"] = f"{n - len(set(missing + changed + bad_ttl))}/{n}"
    result.check("no key lost", not missing, f"{len(missing)} missing: {missing[:3]}")
    result.check("every value the same", not changed, f"{len(changed)} changed: {changed[:3]}")
    result.check(
        "every TTL kept (none stays none, a TTL only ran down)",
        not bad_ttl,
        f"{len(bad_ttl)}: {[(k, before[k][2], after[k][2]) for k in bad_ttl[:3]]}",
    )


def _ttl_kept(before_ms: int, after_ms: int) -> bool:
    if before_ms == -1:
        return after_ms == -1
    return 0 < after_ms <= before_ms


def _check_versions(platform: LivePlatform, result: ScenarioResult, target: LocalEngine) -> None:
    wrong = []
    for addr in platform.stack.nodes:
        with platform.node(addr) as client:
            engine, version = server_version(client.info("server"))
        if (engine, format_version(version)) != (target.name, target.version):
            wrong.append(f"{addr}: {engine} {format_version(version)}")
    result.check(f"every node runs {target.describe()}", not wrong, "; ".join(wrong))


def _check_loads(result: ScenarioResult, nodes: list[dict[str, Any]], hops: int) -> None:
    """Each node's log says it loaded the files the engine before wrote (its AOF)."""
    loaded = [n for n in nodes if n["loaded_from_disk"]]
    result.figures["loaded_old_files"] = f"{len(loaded)}/{len(nodes)}"
    first = nodes[: len(nodes) // hops]
    produced = sorted(
        {line for n in first for line in n["loaded_from_disk"] if "produced by" in line}
    )
    result.figures["loaded_produced_by"] = produced
    result.check(
        "every upgraded node loaded the AOF the engine before wrote",
        len(loaded) == len(nodes),
        f"{result.figures['loaded_old_files']}; {[n['node'] for n in nodes if n not in loaded]}",
    )


async def _check_full_service(
    platform: LivePlatform,
    gateway: Gateway,
    addresses: Addresses,
    result: ScenarioResult,
    account: tuple[str, str],
) -> None:
    session = await login(
        gateway,
        *account,
        addresses.take(),
        op="after-login",
    )
    ok = session is not None
    if session is not None:
        response = await gateway.request(
            "after-read", "GET", "/courses/1", ip=addresses.take(), token=session.access
        )
        ok = response is not None and response.status_code == 200
    result.check("full service after the upgrade (login, read)", ok, "")

"""Scenario 1: a master is killed (SIGKILL) while users log in, read, enroll and log out.

On a 3x2 cluster with the four services running as processes, virtual users go through the
gateway; meanwhile *witnesses* log sessions out one after the other, and rotate refresh
tokens as fast as they can, until the moment before the kill, so the writes most at risk
(acknowledged a moment before the master dies) are the ones checked afterwards. The
witnesses stop before the probe: the scenario then cuts the victim's replication link and
writes revocations with and without a replica acknowledgement, and what a failover does to
each is the measure of the decision that logouts wait for a replica.

Timeline: the load runs; the witnesses stop; the victim's replication link is cut and the
probe writes; the victim is killed; the replica is promoted (cluster_state ok on every
node again, and the victim's slots take writes); the victim comes back as a replica (as a
restarted pod does); the load goes on a few seconds; then the checks.

Figures: time from the kill until `cluster_state:ok` with the slots served by the promoted
replica, until a write to those slots succeeds, until the victim is a replica in sync
again; the error window the clients saw (from the first failed answer to the last) and
the failed requests (a 5xx, or no answer); the cost of waiting for a replica on a logout.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.crc import key_slot
from redis.exceptions import RedisError

from courseredis import keys
from courseredis.cluster_bootstrap import cluster_health
from courseredis.connection import create_client, open_async_client
from courseredis.ops.chaos.live import (
    REPLICA_ACK_TIMEOUT_MS,
    LivePlatform,
    claims_of,
    index_of,
    live_platform,
    relaunch_node,
    sigkill_node,
)
from courseredis.ops.chaos.report import ScenarioResult, describe_error, rounded
from courseredis.ops.chaos.traffic import (
    Addresses,
    Gateway,
    LoadStats,
    Logout,
    Recorder,
    Session,
    VirtualUser,
    login,
    refresh,
    start_users,
)
from courseredis.patterns.blacklist import revoke_script
from courseredis.patterns.flow import Batch, Command, execute_async, execute_sync
from courseredis.patterns.refresh import AsyncRefreshTokens
from courseredis.patterns.replica_ack import (
    Acknowledged,
    ReplicaAck,
    write_acknowledged,
    write_acknowledged_async,
)
from courseredis.patterns.sessions import AsyncSessions
from courseredis.services.settings import DEFAULT_RATE_LIMITS
from courseredis.topology import slot_masters
from courseredis.waiting import Deadline, TimedOut, wait_until_async

NAME = "failover"
TITLE = "1. Master failover under load"
HEADLINE = (
    "time_to_cluster_ok_s",
    "time_to_writes_s",
    "error_window_s",
    "failed_requests",
    "requests",
    "http_500",
    "logouts_checked",
    "revocations_lost",
    "refresh_witnesses_ok",
    "unacked_revocations_lost",
    "ack_cost_p50_ms",
)
_POLL_S = 0.05
# How long the users may take to finish their last request once told to stop.
_STOP_BUDGET_S = 30.0


@dataclass(frozen=True)
class FailoverOptions:
    users: int = 16
    logout_witnesses: int = 24
    refresh_witnesses: int = 4
    before_s: float = 5.0  # load before the kill
    after_s: float = 4.0  # load after the victim is back as a replica
    failover_timeout_s: float = 30.0
    cost_samples: int = 150
    probe_revocations: int = 20
    courses: int = 50
    seed: int | None = None
    # The error window may exceed the time to cluster_state ok by this much before the
    # scenario fails: the clients' retries and a slot-table refresh come on top.
    window_slack_s: float = 3.0

    @classmethod
    def short(cls) -> FailoverOptions:
        return cls(
            users=8,
            logout_witnesses=10,
            refresh_witnesses=2,
            before_s=3.0,
            after_s=2.0,
            cost_samples=50,
            probe_revocations=10,
        )


@dataclass
class _Timeline:
    kill: float = 0.0
    first_fail_state: float | None = None
    cluster_ok: float | None = None
    writes: float | None = None
    redundant: float | None = None
    notes: list[str] = field(default_factory=list)


def run(workdir: Path, options: FailoverOptions | None = None) -> ScenarioResult:
    options = options or FailoverOptions()
    result = ScenarioResult(NAME, TITLE, headline=HEADLINE)
    started = time.monotonic()
    students = options.users + 2 + _witness_accounts(options)
    try:
        with live_platform(workdir, students=students, courses=options.courses) as platform:
            asyncio.run(_scenario(platform, options, result))
    except Exception as error:  # the scenario could not finish: say why, never hang
        result.error = describe_error(error)
    result.duration_s = time.monotonic() - started
    return result


async def _scenario(
    platform: LivePlatform, options: FailoverOptions, result: ScenarioResult
) -> None:
    rng = random.Random(options.seed)
    figures = result.figures
    figures.update(await measure_ack_cost(platform, options.cost_samples))

    recorder = Recorder()
    gateway = Gateway(platform.gateway, recorder)
    stats = LoadStats()
    addresses = Addresses()
    students = platform.credentials.students
    users = [
        VirtualUser(
            gateway,
            username,
            password,
            courses=options.courses,
            addresses=addresses,
            stats=stats,
            seed=rng.randrange(2**32),
        )
        for username, password in students[: options.users]
    ]
    witness_users = students[options.users + 2 :]
    try:
        logged_in = await start_users(users)
        result.check("users logged in", logged_in == len(users), f"{logged_in}/{len(users)}")
        logins = await _logins(
            gateway,
            witness_users,
            addresses,
            options.logout_witnesses + options.refresh_witnesses,
        )
        logout_sessions = logins[: options.logout_witnesses]
        refresh_sessions = logins[options.logout_witnesses :]
        result.check(
            "witnesses logged in",
            len(logout_sessions) == options.logout_witnesses
            and len(refresh_sessions) == options.refresh_witnesses,
            f"{len(logout_sessions)} logout and {len(refresh_sessions)} refresh witnesses",
        )
        recorder.samples.clear()  # the figures count the load from here on

        victim = rng.choice(_masters(platform))
        victim_index = index_of(platform.stack, victim.addr)
        figures["victim"] = victim.addr
        in_victim = _slot_test(victim.slots)

        stop = asyncio.Event()
        witnesses_stop = asyncio.Event()
        hard_end = Deadline(options.before_s + options.failover_timeout_s * 2 + 30)
        tasks = [asyncio.create_task(u.run(stop, hard_end)) for u in users]
        witness_logouts: list[Logout] = []
        refresh_latest: dict[int, Session] = {}
        witnesses = [
            asyncio.create_task(
                _log_out_until(
                    gateway,
                    logout_sessions,
                    addresses,
                    options.before_s,
                    witnesses_stop,
                    witness_logouts,
                )
            ),
            asyncio.create_task(
                _rotate_until(gateway, refresh_sessions, addresses, witnesses_stop, refresh_latest)
            ),
        ]
        await asyncio.sleep(options.before_s)

        # Built while every node answers: a client's start-up asks its default node, which
        # might be the victim.
        writer = create_client(
            platform.admin_settings(retries=0, socket_timeout_s=0.5, connect_timeout_s=0.5)
        )
        # The witnesses stop here: what they were acknowledged had a replica to go to. The
        # probe below takes the replica away first (a second fault), and a rotation, which
        # does not insist on its replica, could then be acknowledged and lost.
        witnesses_stop.set()
        await asyncio.wait_for(asyncio.gather(*witnesses), timeout=_STOP_BUDGET_S)
        probe = await asyncio.to_thread(_cut_and_revoke, platform, victim, in_victim, options)
        timeline = _Timeline(kill=time.monotonic())
        sigkill_node(platform.stack, victim_index)
        await asyncio.to_thread(_restore_replica, platform, probe)
        try:
            await _watch_failover(
                platform, victim, in_victim, writer, timeline, options.failover_timeout_s
            )
        finally:
            writer.close()
        if timeline.cluster_ok is not None:
            platform.stack = await asyncio.to_thread(
                relaunch_node, platform.stack, platform.topology, victim_index
            )
            await _watch_redundancy(platform, timeline, options.failover_timeout_s)
        await asyncio.sleep(options.after_s)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=_STOP_BUDGET_S)
        probe.join(timeout=30)

        _failover_figures(result, timeline, recorder, options)
        await _check_enrollments(platform, result, stats, recorder)
        logouts = [lo for lo in stats.logouts + witness_logouts if lo.acked < timeline.kill]
        await _check_logouts(platform, gateway, addresses, result, logouts)
        await _check_refresh_witnesses(gateway, addresses, result, list(refresh_latest.values()))
        _check_probe(platform, result, probe)
        await _check_full_service(platform, gateway, addresses, result, students[options.users + 1])
        figures["rate_limited"] = stats.rate_limited
        figures["sessions_lost"] = dict(Counter(stats.sessions_lost))
        figures["refresh_rejected_during_load"] = dict(Counter(stats.refresh_rejected))
        result.check(
            "services never restarted",
            not platform.services_gone(),
            f"gone: {platform.services_gone()}",
        )
    finally:
        await gateway.aclose()


# --- the replica acknowledgement's cost -------------------------------------------------------


async def measure_ack_cost(platform: LivePlatform, samples: int) -> dict[str, Any]:
    """A logout's Redis writes as the auth service's ACL user, without and with the WAIT.

    Each sample logs out a real session (its refresh family and session exist), so all
    three writes change data on their nodes, as in production.
    """
    client = await open_async_client(platform.service_settings("auth"))
    ack = ReplicaAck(1, REPLICA_ACK_TIMEOUT_MS)
    plain: list[float] = []
    acked: list[float] = []
    not_acked = 0
    try:
        for i in range(samples):
            for with_ack in (i % 2 == 0, i % 2 == 1):
                family = (await AsyncRefreshTokens(client).issue(1, "courses")).record.family
                await AsyncSessions(client).create(1, ("student",), session_id=family)
                writes = (
                    revoke_script(
                        uuid.uuid4(),
                        int(time.time()) + int(keys.ACCESS_TOKEN_LIFETIME.total_seconds()),
                    ),
                    Command(("DEL", keys.refresh_token(family))),
                    Command(("DEL", keys.session(family))),
                )
                began = time.perf_counter()
                if with_ack:
                    outcome = await write_acknowledged_async(client, writes, ack)
                    acked.append(time.perf_counter() - began)
                    not_acked += not outcome.acked
                else:
                    await execute_async(client, Batch(writes))
                    plain.append(time.perf_counter() - began)
    finally:
        await client.aclose()
    p50_plain, p95_plain = _percentiles(plain)
    p50_acked, p95_acked = _percentiles(acked)
    return {
        "ack_cost_samples": samples,
        "logout_writes_p50_ms": p50_plain,
        "logout_writes_p95_ms": p95_plain,
        "logout_writes_acked_p50_ms": p50_acked,
        "logout_writes_acked_p95_ms": p95_acked,
        "ack_cost_p50_ms": rounded(p50_acked - p50_plain),
        "ack_cost_p95_ms": rounded(p95_acked - p95_plain),
        "ack_cost_not_acked": not_acked,
    }


def _percentiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (rounded(values[0] * 1000) if values else 0.0), 0.0
    cuts = statistics.quantiles([v * 1000 for v in values], n=20)
    return rounded(statistics.median(v * 1000 for v in values)), rounded(cuts[18])


# --- witnesses --------------------------------------------------------------------------------


def _witness_accounts(options: FailoverOptions) -> int:
    """How many accounts the witnesses log in as: the gateway limits logins per account
    (services.settings' login policy), so they spread their logins, each account keeping
    half its budget for retries."""
    per_account = min(spec.limit for spec in DEFAULT_RATE_LIMITS["login"].per_account)
    logins = options.logout_witnesses + options.refresh_witnesses
    return -(-logins // max(1, per_account // 2))


async def _logins(
    gateway: Gateway, users: Sequence[tuple[str, str]], addresses: Addresses, count: int
) -> list[Session]:
    semaphore = asyncio.Semaphore(4)

    async def one(user: tuple[str, str]) -> Session | None:
        async with semaphore:
            for _ in range(3):
                session = await login(gateway, *user, addresses.take(), op="witness-login")
                if session is not None:
                    return session
            return None

    found = await asyncio.gather(*(one(users[i % len(users)]) for i in range(count)))
    return [s for s in found if s is not None]


async def _log_out_until(
    gateway: Gateway,
    sessions: list[Session],
    addresses: Addresses,
    span_s: float,
    witnesses_stop: asyncio.Event,
    acked: list[Logout],
) -> None:
    """Log the sessions out one by one over `span_s`, the last right before the kill."""
    pace = span_s / max(1, len(sessions))
    for session in sessions:
        if witnesses_stop.is_set():
            return
        response = await gateway.request(
            "witness-logout", "POST", "/auth/logout", ip=addresses.take(), token=session.access
        )
        if response is not None and response.status_code == 204:
            acked.append(Logout(session.access, session.refresh, time.monotonic()))
        await asyncio.sleep(pace)


async def _rotate_until(
    gateway: Gateway,
    sessions: list[Session],
    addresses: Addresses,
    witnesses_stop: asyncio.Event,
    latest: dict[int, Session],
) -> None:
    """Rotate each session's refresh token again and again until the kill.

    `latest` keeps, per witness, the last token whose rotation was acknowledged (200).
    """
    for i, session in enumerate(sessions):
        latest[i] = session
    for _ in range(100_000):
        if witnesses_stop.is_set():
            return
        for i in list(latest):
            if witnesses_stop.is_set():
                return
            response = await refresh(
                gateway, latest[i].refresh, addresses.take(), op="witness-refresh"
            )
            if response is not None and response.status_code == 200:
                body = response.json()
                latest[i] = Session(
                    body["access_token"], body["refresh_token"], 0, time.monotonic()
                )
        await asyncio.sleep(0.05)


# --- the kill ---------------------------------------------------------------------------------


@dataclass
class _Probe:
    """Revocations written right after the victim's replication link was cut."""

    acked_jtis: list[str] = field(default_factory=list)
    plain_jtis: list[str] = field(default_factory=list)
    outcome: Acknowledged | None = None
    thread: threading.Thread | None = None
    error: str = ""
    replica: str = ""  # the victim's replica, kept from reconnecting until the kill
    masterauth: str = ""  # its replication password, put back before the kill

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


def _cut_and_revoke(
    platform: LivePlatform,
    victim: _Master,
    in_victim: Callable[[str], bool],
    options: FailoverOptions,
) -> _Probe:
    """Cut the victim's replication link, then revoke with and without an ack.

    The replica would reconnect within milliseconds; a wrong `masterauth` keeps it out
    until the kill (`_restore_replica`). Meanwhile the master acknowledges writes that its
    replica, promoted in a moment, will never have: a network partition's effect.
    """
    probe = _Probe(
        acked_jtis=_jtis_where(in_victim, options.probe_revocations),
        plain_jtis=_jtis_where(in_victim, options.probe_revocations),
    )
    view = platform.cluster_view(victim.addr)
    probe.replica = next(n.addr for n in view if n.master_id == victim.node_id)
    with platform.node(probe.replica) as replica:
        probe.masterauth = str(replica.config_get("masterauth")["masterauth"])
        replica.config_set("masterauth", "chaos-" + uuid.uuid4().hex)
    client = create_client(platform.admin_settings())
    expires = int(time.time()) + int(keys.ACCESS_TOKEN_LIFETIME.total_seconds())
    with platform.node(victim.addr) as node:
        node.execute_command("CLIENT", "KILL", "TYPE", "replica")

    def acknowledged() -> None:
        try:
            probe.outcome = write_acknowledged(
                client,
                [revoke_script(j, expires) for j in probe.acked_jtis],
                ReplicaAck(1, REPLICA_ACK_TIMEOUT_MS),
            )
        except Exception as error:
            probe.error = f"{type(error).__name__}: {error}"
        finally:
            client.close()

    probe.thread = threading.Thread(target=acknowledged, daemon=True)
    probe.thread.start()
    time.sleep(0.02)  # the acknowledged batch is in, its WAIT blocked on the cut link
    with create_client(platform.admin_settings()) as plain:
        replies = execute_sync(
            plain, Batch(tuple(revoke_script(j, expires) for j in probe.plain_jtis))
        )
    if any(isinstance(r, Exception) for r in replies):
        probe.error += f" plain revocations failed: {replies[0]!r}"
    return probe


def _restore_replica(platform: LivePlatform, probe: _Probe) -> None:
    with platform.node(probe.replica) as replica:
        replica.config_set("masterauth", probe.masterauth)


def _jtis_where(in_victim: Callable[[str], bool], count: int) -> list[str]:
    out: list[str] = []
    for _ in range(count * 10_000):
        jti = str(uuid.uuid4())
        if in_victim(keys.jwt_revoked(jti)):
            out.append(jti)
            if len(out) == count:
                break
    return out


def _slot_test(ranges: Sequence[tuple[int, int]]) -> Callable[[str], bool]:
    def inside(key: str) -> bool:
        slot = key_slot(key.encode())
        return any(start <= slot <= end for start, end in ranges)

    return inside


@dataclass(frozen=True)
class _Master:
    addr: str
    node_id: str
    slots: tuple[tuple[int, int], ...]


def _masters(platform: LivePlatform) -> list[_Master]:
    view = platform.cluster_view(platform.stack.nodes[0])
    return [_Master(n.addr, n.node_id, n.slots) for n in slot_masters(view)]


async def _watch_failover(
    platform: LivePlatform,
    victim: _Master,
    in_victim: Callable[[str], bool],
    writer: Any,
    timeline: _Timeline,
    timeout_s: float,
) -> None:
    """Poll every surviving node until all say `cluster_state:ok` with the victim's slots
    served by another master, and a write to those slots succeeds."""
    survivors = [a for a in platform.stack.nodes if a != victim.addr]
    probe_key = next(
        keys.course(900_000 + i) for i in range(100_000) if in_victim(keys.course(900_000 + i))
    )

    async def failed_over() -> bool:
        now = time.monotonic()
        if timeline.cluster_ok is None:
            states = await asyncio.to_thread(_states, platform, survivors)
            if timeline.first_fail_state is None and "fail" in states:
                timeline.first_fail_state = now
            if all(s == "ok" for s in states) and await asyncio.to_thread(
                _slots_moved, platform, survivors[0], victim
            ):
                timeline.cluster_ok = now
        if timeline.writes is None and await asyncio.to_thread(_write, writer, probe_key):
            timeline.writes = time.monotonic()
        return timeline.cluster_ok is not None and timeline.writes is not None

    # The time counts from the kill, not from the first poll.
    left_s = max(0.0, timeline.kill + timeout_s - time.monotonic())
    with contextlib.suppress(TimedOut):  # what was missed is noted below, then checked
        await wait_until_async(
            failed_over, timeout_s=left_s, what="the failover", interval_s=_POLL_S
        )
    if timeline.cluster_ok is None:
        timeline.notes.append(f"cluster not ok {timeout_s:g} s after the kill")


def _states(platform: LivePlatform, nodes: Sequence[str]) -> list[str]:
    states = []
    for addr in nodes:
        try:
            with platform.node(addr) as client:
                states.append(str(client.cluster("INFO").get("cluster_state")))
        except RedisError:
            states.append("unreachable")
    return states


def _slots_moved(platform: LivePlatform, addr: str, victim: _Master) -> bool:
    try:
        view = platform.cluster_view(addr)
    except RedisError:
        return False
    first_slot = victim.slots[0][0]
    for node in slot_masters(view):
        if node.owns(first_slot):
            return node.node_id != victim.node_id
    return False


def _write(client: Any, key: str) -> bool:
    try:
        client.set(key, "failover probe", px=5_000)
    except Exception:
        return False
    return True


async def _watch_redundancy(platform: LivePlatform, timeline: _Timeline, timeout_s: float) -> None:
    stack = platform.stack

    async def healthy() -> bool:
        health = await asyncio.to_thread(
            cluster_health, stack.nodes, stack.username, stack.password, 1
        )
        return health.ok

    try:
        await wait_until_async(
            healthy,
            timeout_s=timeout_s,
            what="the victim back as an in-sync replica",
            interval_s=_POLL_S * 2,
        )
    except TimedOut:
        timeline.notes.append("the victim did not come back as an in-sync replica")
        return
    timeline.redundant = time.monotonic()


# --- checks -----------------------------------------------------------------------------------


def _failover_figures(
    result: ScenarioResult, timeline: _Timeline, recorder: Recorder, options: FailoverOptions
) -> None:
    figures = result.figures
    since = timeline.kill

    def after_kill(moment: float | None) -> float | None:
        return None if moment is None else rounded(moment - since, 2)

    figures["time_to_fail_state_s"] = after_kill(timeline.first_fail_state)
    figures["time_to_cluster_ok_s"] = after_kill(timeline.cluster_ok)
    figures["time_to_writes_s"] = after_kill(timeline.writes)
    figures["time_to_replica_back_s"] = after_kill(timeline.redundant)
    failed = recorder.failed()
    window = recorder.error_window()
    figures["requests"] = len(recorder.samples)
    figures["failed_requests"] = len(failed)
    figures["error_window_s"] = rounded(window[1] - window[0], 2) if window else 0.0
    figures["error_window_from_kill_s"] = (
        [rounded(window[0] - since, 2), rounded(window[1] - since, 2)] if window else None
    )
    figures["first_failed_sent_s"] = (
        rounded(min(s.started for s in failed) - since, 2) if failed else None
    )
    figures["statuses"] = recorder.statuses()
    figures["failed_by_op"] = dict(sorted(Counter(s.op for s in failed).items()))
    figures["failed_details"] = dict(Counter(s.detail[:80] for s in failed).most_common(5))
    figures["http_500"] = sum(1 for s in recorder.samples if s.status == 500)
    calm = [s.ended - s.started for s in recorder.samples if s.ended < since and not s.failed]
    figures["latency_before_kill_p50_ms"], figures["latency_before_kill_p95_ms"] = _percentiles(
        calm
    )
    span = max((s.ended for s in recorder.samples), default=since) - min(
        (s.started for s in recorder.samples), default=since
    )
    figures["requests_per_s"] = rounded(len(recorder.samples) / span, 1) if span > 0 else 0.0
    result.check(
        "cluster_state ok again", timeline.cluster_ok is not None, "; ".join(timeline.notes)
    )
    result.check(
        "victim back as an in-sync replica",
        timeline.redundant is not None,
        "; ".join(timeline.notes),
    )
    result.check("no 500", figures["http_500"] == 0, f"{figures['http_500']} answers 500")
    ok_after = figures["time_to_cluster_ok_s"]
    result.check(
        "error window close to the failover time",
        ok_after is not None and figures["error_window_s"] <= ok_after + options.window_slack_s,
        f"window {figures['error_window_s']} s, cluster ok after {ok_after} s",
    )
    late = [
        s for s in failed if timeline.redundant is not None and s.started > timeline.redundant + 1
    ]
    result.check(
        "no failure once the cluster is whole again",
        not late,
        f"{len(late)} failed after the victim was back: {[s.op for s in late[:5]]}",
    )


async def _check_enrollments(
    platform: LivePlatform, result: ScenarioResult, stats: LoadStats, recorder: Recorder
) -> None:
    twice_seen = sum(1 for n in stats.enrolled.values() if n > 1)
    path = platform.database_url.split("///", 1)[1]
    with sqlite3.connect(path) as db:
        duplicates = db.execute(
            "SELECT COUNT(*) FROM (SELECT user_id, course_id FROM enrollments"
            " GROUP BY user_id, course_id HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        rows = db.execute("SELECT COUNT(*) FROM enrollments").fetchone()[0]
    result.figures["enrollments"] = rows
    result.figures["enrollments_created_201"] = sum(stats.enrolled.values())
    result.check(
        "no user enrolled twice",
        twice_seen == 0 and duplicates == 0,
        f"{twice_seen} enrollments answered 201 twice, {duplicates} duplicate rows",
    )


async def _check_logouts(
    platform: LivePlatform,
    gateway: Gateway,
    addresses: Addresses,
    result: ScenarioResult,
    logouts: list[Logout],
) -> None:
    """Every logout acknowledged before the kill: the token is refused, the revocation is
    stored, the refresh token is dead."""
    client = create_client(platform.admin_settings())
    problems: list[str] = []
    try:
        for logout in logouts:
            jti = str(claims_of(logout.access)["jti"])
            if not client.exists(keys.jwt_revoked(jti)):
                problems.append(f"revocation of {jti} lost")
            response = await gateway.request(
                "check", "GET", "/courses/1", ip=addresses.take(), token=logout.access, record=False
            )
            if response is None or response.status_code != 401:
                problems.append(f"token {jti[:8]} answered {response and response.status_code}")
            answer = await refresh(gateway, logout.refresh, addresses.take(), op="check")
            if answer is None or answer.status_code != 401:
                problems.append(f"refresh of {jti[:8]} answered {answer and answer.status_code}")
    finally:
        client.close()
    lost = sum(1 for p in problems if p.startswith("revocation"))
    result.figures["logouts_checked"] = len(logouts)
    result.figures["revocations_lost"] = lost
    result.check(
        "every logout acknowledged before the kill still revokes",
        bool(logouts) and not problems,
        f"{len(logouts)} checked; " + "; ".join(problems[:5]),
    )


async def _check_refresh_witnesses(
    gateway: Gateway, addresses: Addresses, result: ScenarioResult, sessions: list[Session]
) -> None:
    """The last token acknowledged before the kill rotates, exactly once: a repeat gets the
    same successor (the grace window), and the successor rotates in turn."""
    problems: list[str] = []
    for session in sessions:
        first = await refresh(gateway, session.refresh, addresses.take(), op="check")
        if first is None or first.status_code != 200:
            problems.append(
                f"rotation answered {first and first.status_code}: {first and first.text[:80]}"
            )
            continue
        successor = first.json()["refresh_token"]
        again = await refresh(gateway, session.refresh, addresses.take(), op="check")
        if again is None or again.status_code != 200 or again.json()["refresh_token"] != successor:
            problems.append("a repeat got another successor: the token rotated twice")
            continue
        onward = await refresh(gateway, successor, addresses.take(), op="check")
        if onward is None or onward.status_code != 200:
            problems.append(f"the successor answered {onward and onward.status_code}")
    result.figures["refresh_witnesses_ok"] = f"{len(sessions) - len(problems)}/{len(sessions)}"
    result.check(
        "refresh tokens acknowledged before the kill rotate exactly once",
        bool(sessions) and not problems,
        "; ".join(problems[:5]),
    )


def _check_probe(platform: LivePlatform, result: ScenarioResult, probe: _Probe) -> None:
    client = create_client(platform.admin_settings())
    try:
        present_acked = sum(client.exists(keys.jwt_revoked(j)) for j in probe.acked_jtis)
        present_plain = sum(client.exists(keys.jwt_revoked(j)) for j in probe.plain_jtis)
    finally:
        client.close()
    acked = probe.outcome is not None and probe.outcome.acked
    result.figures["unacked_revocations_lost"] = (
        f"{len(probe.plain_jtis) - present_plain}/{len(probe.plain_jtis)}"
    )
    result.figures["acked_probe"] = (
        "acknowledged"
        if acked
        else f"refused ({probe.outcome.detail if probe.outcome else probe.error})"[:120]
    )
    result.check(
        "an acknowledged revocation survives the failover",
        not acked or present_acked == len(probe.acked_jtis),
        f"acked={acked}, {present_acked}/{len(probe.acked_jtis)} present",
    )


async def _check_full_service(
    platform: LivePlatform,
    gateway: Gateway,
    addresses: Addresses,
    result: ScenarioResult,
    user: tuple[str, str],
) -> None:
    steps: list[str] = []
    ip = addresses.take()
    session = await login(gateway, *user, ip, op="check")
    if session is None:
        steps.append("login failed")
    else:
        read = await gateway.request("check", "GET", "/courses/2", ip=ip, token=session.access)
        enroll = await gateway.request(
            "check", "POST", "/courses/3/enrollments", ip=ip, token=session.access
        )
        out = await gateway.request("check", "POST", "/auth/logout", ip=ip, token=session.access)
        for name, response, good in (
            ("read", read, {200}),
            ("enroll", enroll, {201, 409}),
            ("logout", out, {204}),
        ):
            if response is None or response.status_code not in good:
                steps.append(f"{name} answered {response and response.status_code}")
    result.check("full service after the failover", not steps, "; ".join(steps))

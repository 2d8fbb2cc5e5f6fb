"""Rate limiting: drive the gateway's limits past their thresholds and check they held.

    locust -f loadtests/rate_limiting.py --headless -u 16 -r 16 -t 20s

Users (their mix is the table `MIX`, the load shape the table `RateLimitShape.stages`):
- `LoginGuesser`: password guessing, two users per client IP, against the per-IP login
  limit (10 per minute). Unknown usernames, so no argon2 is spent on them.
- `CourseBrowser`: students listing and reading courses as fast as they are answered,
  eight users per client IP (`USERS_PER_IP`), against the per-user and per-IP limits of
  `courses.list` and `courses.read`.
- `EnrollmentBurster`: students enrolling in bursts, against the per-user GCRA limit of
  `enrollments.create` (10 per second).
- `RetryProbe` (one per run): with a student and an IP of its own, runs into a limit, waits
  exactly the `Retry-After` it was told, and checks that the retry is admitted.

Every answer of a limited route is recorded (identity, sent, answered, admitted). At the
end, for every limit of the policy table (`courseredis.services.settings`, or the JSON of
--rate-limits, as the gateway's GATEWAY_RATE_LIMITS), the admitted requests of each
identity are checked against what the limit's algorithm allows in any window
(`loadtests.analysis.check_window`): admitted-over-limit must be 0. The 429 ratio, the
retry checks and the `RateLimit-Policy` headers are reported beside it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import gevent  # type: ignore[import-untyped]
from gevent.pool import Group  # type: ignore[import-untyped]
from locust import constant_throughput, task

from courseredis import ratelimit_algorithms
from courseredis.services.settings import GatewaySettings, RoutePolicy
from loadtests.analysis import Timed, check_window, per_second, per_window, ratio
from loadtests.common.findings import Finding, gate
from loadtests.common.options import SEEDED_COURSES, Option, option
from loadtests.common.outcome import Outcome, retry_after_s
from loadtests.common.platform_user import PlatformUser
from loadtests.common.run_state import RunState, state
from loadtests.common.shapes import Stage, StageShape
from loadtests.common.suite import Suite

# Statuses that mean the gateway let the request through to the service. On routes that
# need a token a 401 comes from the gateway before any limit is consulted; on the public
# ones (login, refresh) it is the service's answer to an admitted request.
_PUBLIC_ROUTES = {"login", "refresh"}

# The user mix: class -> (weight, task runs per second per user). -u scales the weights.
MIX: dict[str, tuple[int, float]] = {
    "LoginGuesser": (3, 3.0),
    "CourseBrowser": (8, 20.0),  # as fast as the gateway answers, on few client IPs
    "EnrollmentBurster": (3, 0.5),  # a burst of BURST enrollments at once every 2 s
}
# Users sharing one client IP, per kind: the per-IP limits see several users at once.
USERS_PER_IP = {"guessers": 2, "browsers": 8}
# Beyond the GCRA bucket (10): a burst runs into the per-second limit. The probe's is larger
# still, so that it does even when a loaded gateway spreads the burst over a second.
BURST = 14
PROBE_BURST = 24


def admitted(route: str, status: int) -> bool:
    if status in (0, 429, 503):
        return False
    return not (status == 401 and route not in _PUBLIC_ROUTES)


def policy_table(overrides: str) -> dict[str, RoutePolicy]:
    """The gateway's policy table: the defaults, with the routes the JSON names replaced."""
    return GatewaySettings.model_validate({"rate_limits": overrides or "{}"}).rate_limits


def record(user: PlatformUser, route: str, outcome: Outcome) -> None:
    """Keep what the check needs: route, identities, times, admitted, the policy header."""
    user.ctx.collector.add(
        "rl",
        [
            route,
            user.ip or "",
            user.user_id or 0,
            outcome.sent,
            outcome.answered,
            outcome.status,
            outcome.header("RateLimit-Policy") or "",
        ],
    )


def shared_ip(user: PlatformUser, pool: str, per_ip: int) -> str | None:
    """Give `per_ip` consecutive users of a kind the same client IP."""
    run = user.ctx
    counters: dict[str, int] = run.extras.setdefault("ip_counters", {})
    addresses: dict[str, list[str | None]] = run.extras.setdefault("ip_pools", {})
    index = counters.get(pool, 0)
    counters[pool] = index + 1
    slots = addresses.setdefault(pool, [])
    if index // per_ip >= len(slots):
        slots.append(run.addresses.next())
    return slots[index // per_ip]


class LoginGuesser(PlatformUser):
    """Password guessing with unknown usernames: 401 when admitted, 429 when limited."""

    account_kind = "none"
    weight = MIX["LoginGuesser"][0]
    wait_time = constant_throughput(MIX["LoginGuesser"][1])

    def on_start(self) -> None:
        super().on_start()
        self.ip = shared_ip(self, "guessers", USERS_PER_IP["guessers"])
        self.attempt = 0

    @task
    def guess(self) -> None:
        self.attempt += 1
        outcome = self.call(
            "POST",
            "/auth/login",
            name="/auth/login (guess)",
            authenticated=False,
            json={"username": f"nobody-{self.ctx.rng.randrange(10**6)}", "password": "guessing"},
            expect=(401, 429),
        )
        record(self, "login", outcome)


class CourseBrowser(PlatformUser):
    """Lists pages of courses and reads courses, faster than the per-user limits allow."""

    weight = MIX["CourseBrowser"][0]
    wait_time = constant_throughput(MIX["CourseBrowser"][1])

    def excluded_students(self) -> tuple[str, ...]:
        return reserved_students()

    def on_start(self) -> None:
        super().on_start()
        self.ip = shared_ip(self, "browsers", USERS_PER_IP["browsers"])

    @task(3)
    def list_courses(self) -> None:
        page = self.ctx.rng.randint(1, 10)
        outcome = self.call(
            "GET", f"/courses?page={page}&size=20", name="/courses?page={n}", expect=(200, 429)
        )
        record(self, "courses.list", outcome)

    @task(1)
    def read_course(self) -> None:
        course = self.ctx.rng.randint(1, SEEDED_COURSES)
        outcome = self.call("GET", f"/courses/{course}", name="/courses/{id}", expect=(200, 429))
        record(self, "courses.read", outcome)


def burst(user: PlatformUser, size: int) -> list[Outcome]:
    """`size` enrollments of one user at once (random courses): more than the bucket holds."""
    outcomes: list[Outcome] = []

    def enroll() -> None:
        course = user.ctx.rng.randint(1, SEEDED_COURSES)
        outcome = user.call(
            "POST",
            f"/courses/{course}/enrollments",
            name="/courses/{id}/enrollments",
            expect=(201, 409, 429),
        )
        record(user, "enrollments.create", outcome)
        outcomes.append(outcome)

    if user.token() is None:
        return outcomes
    group = Group()
    for _ in range(size):
        group.spawn(enroll)
    try:
        group.join()
    finally:
        group.kill()  # the user was stopped mid-burst: the burst stops with it
    return outcomes


class EnrollmentBurster(PlatformUser):
    """Bursts of enrollments at once: the GCRA bucket (10, refilled at 10 per second) runs
    dry within each burst."""

    weight = MIX["EnrollmentBurster"][0]
    wait_time = constant_throughput(MIX["EnrollmentBurster"][1])
    concurrency = BURST

    def excluded_students(self) -> tuple[str, ...]:
        return reserved_students()

    @task
    def burst(self) -> None:
        burst(self, BURST)


class RetryProbe(PlatformUser):
    """Runs into a limit, waits exactly `Retry-After`, retries: the retry must pass.

    It has a student and a client IP nobody else uses, so nothing but the limit itself can
    refuse the retry. Enrollments (a one-second GCRA) are probed over and over; the login
    limit (a minute) once, when the run is long enough to wait for it.
    """

    fixed_count = 1
    wait_time = constant_throughput(1.0)
    concurrency = PROBE_BURST

    def on_start(self) -> None:
        run = state()
        self.ctx = run
        self.ip = run.addresses.next()
        reserved = reserved_students()
        account = next(s for s in run.students() if s.username in reserved)
        self.shared = run.session(account, self.ip)
        self.login_probed = False

    def _retry(self, route: str, limited: Outcome | None, send: Callable[[], Outcome]) -> None:
        collector = self.ctx.collector
        if limited is None:
            collector.count(f"retry_not_limited:{route}")
            return
        wait = retry_after_s(limited)
        left = remaining_run_time(self.ctx)
        if left is not None and wait + 2.0 > left:
            collector.add("retry", [route, wait, -1])  # skipped: past the end of the run
            return
        gevent.sleep(wait)
        retried = send()
        record(self, route, retried)
        collector.add("retry", [route, wait, retried.status])

    def _enroll_once(self) -> Outcome:
        course = self.ctx.rng.randint(1, SEEDED_COURSES)
        return self.call(
            "POST",
            f"/courses/{course}/enrollments",
            name="/courses/{id}/enrollments",
            expect=(201, 409, 429),
        )

    def _guess(self) -> Outcome:
        outcome = self.call(
            "POST",
            "/auth/login",
            name="/auth/login (guess)",
            authenticated=False,
            json={"username": "nobody-probe", "password": "guessing"},
            expect=(401, 429),
        )
        return outcome

    @task
    def probe(self) -> None:
        # Enrollments: one burst empties the bucket; Retry-After is then about a second.
        refused = [o for o in burst(self, PROBE_BURST) if o.status == 429]
        limited = max(refused, key=lambda o: o.answered, default=None)
        self._retry("enrollments.create", limited, self._enroll_once)
        if not self.login_probed:
            # Login: ten guesses a minute per IP; Retry-After is most of a minute, so this
            # retry is checked only when the run lasts that long.
            self.login_probed = True
            limited = None
            for _ in range(20):
                outcome = self._guess()
                record(self, "login", outcome)
                if outcome.status == 429:
                    limited = outcome
                    break
            self._retry("login", limited, self._guess)


class RateLimitShape(StageShape):
    """All users at once: the limits are reached early and held there for the run."""

    stages = (Stage(until=1.0, users=1.0),)


def reserved_students() -> tuple[str, ...]:
    """The one student the retry probe keeps to itself (the last one)."""
    students = state().students()
    return (students[-1].username,) if len(students) > 1 else ()


def remaining_run_time(run: RunState) -> float | None:
    run_time = getattr(run.environment.parsed_options, "run_time", None)
    if not run_time:
        return None
    return float(run_time) - (time.time() - run.started_at)


def _parse_policy(header: str) -> tuple[int, float] | None:
    try:
        limit, _, window = header.partition(";w=")
        return int(limit), float(window)
    except ValueError:
        return None


def analyse(run: RunState) -> Finding:
    environment = run.environment
    table = policy_table(option(environment, "rate_limits"))
    skew = float(option(environment, "clock_skew_ms")) / 1000.0
    records = run.collector.get("rl")
    by_route: dict[str, list[list[Any]]] = defaultdict(list)
    for r in records:
        by_route[r[0]].append(r)

    limits: list[dict[str, Any]] = []
    over_total = 0
    mismatches = 0
    for route, rows in sorted(by_route.items()):
        policy = table.get(route)
        if policy is None:
            continue
        known = {(s.limit, float(s.window_s)) for s in [*policy.per_ip, *policy.per_user]}
        for row in rows:
            header = _parse_policy(row[6]) if row[6] else None
            if header is not None and admitted(route, row[5]) and header not in known:
                mismatches += 1
        for scope, specs, column in (("ip", policy.per_ip, 1), ("user", policy.per_user, 2)):
            identities: dict[Any, list[Timed]] = defaultdict(list)
            requests = refused = 0
            for row in rows:
                if not row[column]:
                    continue
                requests += 1
                if row[5] == 429:
                    refused += 1
                if admitted(route, row[5]):
                    identities[row[column]].append(Timed(row[3], row[4]))
            if not requests:
                continue
            for spec in specs:
                checks = [
                    check_window(
                        timed,
                        algorithm=policy.algorithm.value,
                        limit=spec.limit,
                        window_s=spec.window_s,
                        skew_s=skew,
                    )
                    for timed in identities.values()
                ]
                over = sum(c.over_limit for c in checks)
                over_total += over
                busiest = max(identities.values(), key=len, default=[])
                limits.append(
                    {
                        "route": route,
                        "scope": scope,
                        "limit": spec.limit,
                        "window_s": spec.window_s,
                        "algorithm": policy.algorithm.value,
                        "identities": len(identities),
                        "requests": requests,
                        "admitted": sum(c.admitted for c in checks),
                        "refused": refused,
                        "max_admitted_in_window": max((c.max_in_window for c in checks), default=0),
                        # What the check held it to (its admission bound).
                        "guarantee": ratelimit_algorithms.spec(policy.algorithm).guarantee,
                        # The busiest identity's admitted requests, window after window.
                        "busiest_per_window": per_window(busiest, spec.window_s, run.started_at),
                        "over_limit": over,
                    }
                )

    total = len(records)
    limited = sum(1 for r in records if r[5] == 429)
    per_route = {
        route: {
            "requests": len(rows),
            "limited": sum(1 for r in rows if r[5] == 429),
            "ratio_429": ratio(sum(1 for r in rows if r[5] == 429), len(rows)),
        }
        for route, rows in sorted(by_route.items())
    }
    retries = run.collector.get("retry")
    attempted = [r for r in retries if r[2] != -1]
    failed = [r for r in attempted if r[2] == 429 or r[2] == 0]
    figures: dict[str, Any] = {
        "ratio_429": ratio(limited, total),
        # [second, requests, 429s]: the demo report plots it
        "over_time": per_second((float(r[4]), r[5] == 429) for r in records),
        "limited_requests": limited,
        "limited_route_requests": total,
        "routes": per_route,
        "limits": limits,
        "admitted_over_limit": over_total,
        "policy_header_mismatches": mismatches,
        "retry_after": {
            "attempted": len(attempted),
            "succeeded": len(attempted) - len(failed),
            "failed": len(failed),
            "skipped_past_run_end": len(retries) - len(attempted),
            "skipped_routes": sorted({r[0] for r in retries if r[2] == -1}),
            "waits_s": sorted({r[1] for r in attempted}),
        },
    }
    gates = [
        gate(environment, "admitted_over_limit", "max", "max_over_limit", over_total),
        gate(environment, "retry_after_failures", "max", "max_retry_failures", len(failed)),
        gate(environment, "retries_checked", "min", "min_retries", len(attempted)),
        gate(environment, "ratio_429", "min", "min_429_ratio", ratio(limited, total)),
        gate(environment, "policy_header_mismatches", "max", "max_policy_mismatches", mismatches),
    ]
    notes = [
        "admitted-over-limit counts only certain violations: a request counts inside a "
        "window when both its send and its answer are (latency can hide, never invent one)",
    ]
    skipped = figures["retry_after"]["skipped_routes"]
    if skipped:
        why = "; the login limit's needs a run over a minute" if "login" in skipped else ""
        notes.append(
            "retries whose Retry-After reached past the end of the run were skipped "
            f"({', '.join(skipped)}){why}"
        )
    return Finding(figures, gates, notes)


SUITE = Suite(
    name="rate_limiting",
    p95_ms=2000.0,
    options=[
        Option(
            "--rate-limits",
            "LOAD_RATE_LIMITS",
            "",
            "the gateway's policy overrides, the JSON of its GATEWAY_RATE_LIMITS",
            str,
        ),
        Option(
            "--clock-skew-ms",
            "LOAD_CLOCK_SKEW_MS",
            0.0,
            "clock error between load generators (widens every request's interval)",
        ),
        Option(
            "--max-over-limit",
            "LOAD_MAX_OVER_LIMIT",
            0.0,
            "gate: requests admitted beyond a limit, over all limits and identities",
        ),
        Option(
            "--max-retry-failures",
            "LOAD_MAX_RETRY_FAILURES",
            0.0,
            "gate: retries sent after Retry-After that were refused again",
        ),
        Option(
            "--min-retries",
            "LOAD_MIN_RETRIES",
            1.0,
            "gate: Retry-After checks made at least this many times",
        ),
        Option(
            "--min-429-ratio",
            "LOAD_MIN_429_RATIO",
            0.01,
            "gate: 429s / limited-route requests at least this (the limits were reached)",
        ),
        Option(
            "--max-policy-mismatches",
            "LOAD_MAX_POLICY_MISMATCHES",
            0.0,
            "gate: RateLimit-Policy headers naming a limit the policy table lacks",
        ),
    ],
    analyse=analyse,
)
SUITE.install()

"""Lock contention: many students enroll in the same few hot courses at the same moments,
some racing themselves, and no one may end up enrolled twice.

    locust -f loadtests/lock_contention.py --headless -u 20 -r 20 -t 20s

`HotEnroller`s fire on a shared clock (every --tick-ms, aligned to wall-clock time, so
users on different workers fire together too) at one of --hot-courses courses, chosen from
the seed. With --race-probability a user sends --race-fanout enrollments at once: the
same user racing itself, which is what the enrollment lock (`lock:enrollment:<course>:
<user>`) is for. Each answer is 201 (enrolled), 409 (the lock was held: "in progress"; or
the database's unique constraint: "already enrolled") or 429 (the per-user limit).

It reports the 409 ratio (by cause), p95 and p99 latency of the enrollments, the lock wait
the enrollments service measured (its /metrics: `lock_wait_seconds`,
`lock_acquisitions_total`), and at the end lists, as the admin, the enrollments of every
course it touched: a user enrolled twice in a course misses the double-enrollment gate.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from gevent.pool import Group  # type: ignore[import-untyped]
from locust import task

from loadtests.analysis import delta, double_enrollments, histogram_quantile, ratio
from loadtests.common.api_client import ApiClient
from loadtests.common.findings import Finding, gate
from loadtests.common.metrics import metrics_option, scrape
from loadtests.common.options import Option, courses_option, option
from loadtests.common.platform_user import PlatformUser
from loadtests.common.report import measured_entry
from loadtests.common.run_state import RunState
from loadtests.common.sessions import LoginFailed
from loadtests.common.shapes import Stage, StageShape
from loadtests.common.suite import Suite

ENROLL = "/courses/{id}/enrollments"
_KINDS = {201: "created", 429: "limited"}


def hot_courses(run: RunState) -> list[int]:
    """The hot courses: the same on every worker (drawn from the run's seed)."""
    hot: list[int] | None = run.extras.get("hot")
    if hot is None:
        import random

        courses = int(option(run.environment, "courses"))
        count = max(1, min(int(option(run.environment, "hot_courses")), courses))
        hot = sorted(random.Random(run.seed).sample(range(1, courses + 1), count))
        run.extras["hot"] = hot
    return hot


def kind_of(status: int, detail: str) -> str:
    if status == 409:
        return "lock" if "in progress" in detail else "enrolled"
    return _KINDS.get(status, "other")


class HotEnroller(PlatformUser):
    """Enrolls in a hot course on every tick; sometimes several times at once."""

    def wait_time(self) -> float:
        tick = float(option(self.environment, "tick_ms")) / 1000.0
        # The next multiple of the tick on the wall clock, plus a hair of jitter: every
        # user (on every worker) fires within a millisecond or two of the others.
        return tick - (time.time() % tick) + self.ctx.rng.uniform(0.0, 0.002)

    def _enroll(self, course: int, race: int) -> None:
        outcome = self.call(
            "POST", f"/courses/{course}/enrollments", name=ENROLL, expect=(201, 409, 429)
        )
        self.ctx.collector.add(
            "enroll",
            [
                course,
                self.user_id or 0,
                outcome.status,
                kind_of(outcome.status, outcome.detail),
                outcome.sent,
                outcome.answered,
                race,
            ],
        )

    @task
    def enroll(self) -> None:
        run = self.ctx
        course = run.rng.choice(hot_courses(run))
        if self.token() is None:
            return
        fanout = int(option(self.environment, "race_fanout"))
        if fanout > 1 and run.rng.random() < float(option(self.environment, "race_probability")):
            race = run.rng.randrange(1, 2**31)
            racers = Group()
            for _ in range(fanout):
                racers.spawn(self._enroll, course, race)
            try:
                racers.join()
            finally:
                racers.kill()  # the user was stopped mid-race: its racers stop with it
        else:
            self._enroll(course, 0)


class LockShape(StageShape):
    """Half the users for the first fifth of the run, then all of them."""

    stages = (Stage(until=0.2, users=0.5), Stage(until=1.0, users=1.0))


def verify_no_double_enrollment(run: RunState, courses: list[int]) -> dict[str, Any]:
    """List every touched course's enrollments as the admin: nobody may appear twice."""
    host = run.environment.host
    if not host:
        return {"checked": False, "reason": "no gateway URL"}
    client = ApiClient(host, run.addresses.next())
    listings: dict[int, list[int]] = {}
    problems: list[str] = []
    try:
        client.login(run.admin())
        for course in courses:
            status, body = client.send("GET", f"/courses/{course}/enrollments")
            if status != 200 or not isinstance(body, dict):
                problems.append(f"course {course}: HTTP {status}")
                continue
            listings[course] = [int(item["user_id"]) for item in body.get("items", [])]
    except (LoginFailed, OSError) as error:
        return {"checked": False, "reason": str(error)}
    result = double_enrollments(listings)
    return {
        "checked": not problems,
        "problems": problems,
        "courses_checked": result.courses_checked,
        "enrollments_listed": result.enrollments,
        "duplicates": result.duplicates,
        "examples": result.examples,
    }


def analyse(run: RunState) -> Finding:
    environment = run.environment
    records = list(run.collector.get("enroll"))
    kinds: dict[str, int] = defaultdict(int)
    for r in records:
        kinds[r[3]] += 1
    answered = [r for r in records if r[2] != 0]
    conflicts = kinds["lock"] + kinds["enrolled"]

    # Races: every request of one race shares an id; two 201s in one race is a double the
    # client saw itself.
    races: dict[int, list[list[Any]]] = defaultdict(list)
    for r in records:
        if r[6]:
            races[r[6]].append(r)
    raced_doubles = sum(1 for rs in races.values() if sum(1 for r in rs if r[2] == 201) > 1)
    created: dict[tuple[int, int], int] = defaultdict(int)
    for r in records:
        if r[2] == 201:
            created[(r[0], r[1])] += 1
    client_doubles = sum(n - 1 for n in created.values() if n > 1)

    before = run.metrics_before.get("enrollments", {})
    after = scrape(run, "enrollments")
    lock_wait: dict[str, Any] = {"source": "enrollments /metrics"}
    if after:
        count = delta(before, after, "lock_wait_seconds_count")
        total = delta(before, after, "lock_wait_seconds_sum")
        lock_wait |= {
            "acquired": delta(before, after, "lock_acquisitions_total", result="acquired"),
            "contended": delta(before, after, "lock_acquisitions_total", result="contended"),
            "mean_ms": 1000 * total / count if count else None,
            **{
                f"p{int(q * 100)}_ms": _ms(
                    histogram_quantile(q, before, after, "lock_wait_seconds")
                )
                for q in (0.5, 0.95, 0.99)
            },
        }
        lock_wait["contended_ratio"] = ratio(
            lock_wait["contended"], lock_wait["acquired"] + lock_wait["contended"]
        )
    else:
        lock_wait["unavailable"] = "no /metrics (pass --enrollments-metrics-url)"

    stats = environment.runner.stats if environment.runner else None
    latency: dict[str, Any] = {}
    if stats is not None:
        entry = measured_entry([e for e in stats.entries.values() if e.name == ENROLL], stats)
        if entry.num_requests:
            latency = {
                q: float(entry.get_response_time_percentile(p))
                for q, p in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99))
            }

    touched = sorted({*hot_courses(run), *(c for c, _ in created)})
    verification = verify_no_double_enrollment(run, touched)
    api_doubles = verification.get("duplicates") if verification.get("checked") else None
    doubles = None if api_doubles is None else max(int(api_doubles), client_doubles)

    figures = {
        "hot_courses": hot_courses(run),
        "enrollments": len(records),
        "outcomes": dict(kinds),
        "ratio_409": ratio(conflicts, len(answered)),
        "ratio_409_lock": ratio(kinds["lock"], len(answered)),
        "ratio_409_already_enrolled": ratio(kinds["enrolled"], len(answered)),
        "ratio_429": ratio(kinds["limited"], len(answered)),
        "latency": latency,
        "races": {
            "count": len(races),
            "fanout": int(option(environment, "race_fanout")),
            "with_lock_conflict": sum(
                1 for rs in races.values() if any(r[3] == "lock" for r in rs)
            ),
            "doubles_seen_by_clients": raced_doubles,
        },
        "lock_wait": lock_wait,
        "double_enrollment_check": verification,
        "double_enrollments": doubles,
    }
    gates = [gate(environment, "double_enrollments", "max", "max_double_enrollments", doubles)]
    notes = []
    if not verification.get("checked"):
        notes.append(f"the double-enrollment check could not run: {verification}")
    return Finding(figures, gates, notes)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000.0 * seconds


def _init_hot(run: RunState) -> None:
    hot_courses(run)


SUITE = Suite(
    name="lock_contention",
    p95_ms=2000.0,
    metrics_services=("enrollments",),
    options=[
        metrics_option("enrollments"),
        courses_option(),
        Option("--hot-courses", "LOAD_HOT_COURSES", 3, "how many hot courses", int),
        Option(
            "--tick-ms",
            "LOAD_TICK_MS",
            250.0,
            "users fire together on every multiple of this (wall clock)",
        ),
        Option("--race-probability", "LOAD_RACE_PROBABILITY", 0.5, "how often a user races itself"),
        Option(
            "--race-fanout",
            "LOAD_RACE_FANOUT",
            3,
            "concurrent enrollments of one user in one race",
            int,
        ),
        Option(
            "--max-double-enrollments",
            "LOAD_MAX_DOUBLE_ENROLLMENTS",
            0.0,
            "gate: users enrolled twice in one course (checked through the API)",
        ),
    ],
    analyse=analyse,
    on_start=_init_hot,
)
SUITE.install()

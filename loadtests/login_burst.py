"""Login burst: many real logins at once, and the auth service must take it standing.

    locust -f loadtests/login_burst.py --headless -u 40 -r 40 -t 20s

Every argon2 check costs 64 MiB (issue 13, finding 8): a burst of logins with real
passwords used to run as many checks at once as the thread pool allowed, enough to get a
512 MiB auth pod killed. The auth service now runs them in a bounded pool with a bounded
queue and answers 503 with `Retry-After` beyond that; the gateway's per-IP and per-account
login limits answer 429 with `Retry-After` before that (docs/security.md).

`LoginBurster` users, each from a client address of its own, log in as the demo students
(real usernames and passwords: every admitted login costs a full argon2 check) as fast as
they are answered, `--burst` requests at once per user. What the run shows, as gates:

- every answer is 200, 429 or 503; a 429 or a 503 carries `Retry-After` (`bad_answers`:
  any other status, a 5xx but that 503, a dropped connection, a refusal without
  `Retry-After`, must be 0);
- the auth service is alive at the end: its `/healthz` answers, and its process is the one
  it was at the start when the local stack says which (`auth_down` must be 0);
- some logins were admitted, so the burst did load the password checks.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import psutil
from gevent.pool import Group  # type: ignore[import-untyped]
from locust import constant, task

from loadtests.analysis import ratio
from loadtests.common.findings import Finding, gate
from loadtests.common.options import Option, option
from loadtests.common.platform_user import PlatformUser
from loadtests.common.run_state import RunState
from loadtests.common.suite import Suite

# What a login may get in a burst: admitted, limited by the gateway, or turned away by the
# auth service's full password-check queue. Anything else is the finding.
ANSWERS = {200, 429, 503}
REFUSALS = {429, 503}  # these must say when to come back


class LoginBurster(PlatformUser):
    """Logs in as a demo student, again and again, as fast as it is answered."""

    account_kind = "none"  # it logs in itself: the login is the request under test
    wait_time = constant(0)
    concurrency = 16  # connections: up to `--burst` requests in flight per user

    def on_start(self) -> None:
        super().on_start()
        students = self.ctx.students()
        self.student = students[self.ctx.rng.randrange(len(students))]

    @task
    def burst(self) -> None:
        """`--burst` logins at once (a client retrying in parallel, a script): together,
        the users ask for far more checks than the pool and its queue hold."""
        group = Group()
        for _ in range(int(option(self.environment, "burst"))):
            group.spawn(self.login)
        group.join()

    def login(self) -> None:
        outcome = self.call(
            "POST",
            "/auth/login",
            name="/auth/login (burst)",
            authenticated=False,
            json={"username": self.student.username, "password": self.student.password},
            expect=tuple(ANSWERS),
        )
        retry_after = outcome.header("Retry-After")
        self.ctx.collector.add("login", [outcome.status, retry_after is not None])
        if outcome.status in REFUSALS and retry_after is None:
            # Counted apart as well: Locust marked it a success (an expected status).
            self.ctx.collector.count("refused_without_retry_after")


def auth_health(run: RunState) -> dict[str, Any]:
    """Whether the auth service answers /healthz now, and (local stack) its process id."""
    url = option(run.environment, "auth_url") or ((run.stack and run.stack.services) or {}).get(
        "auth"
    )
    found: dict[str, Any] = {"url": url, "alive": None, "pid": None}
    if run.stack and run.stack.service_processes:
        found["pid"] = next((p.pid for p in run.stack.service_processes if p.name == "auth"), None)
    if not url:
        return found
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/healthz", timeout=5) as response:
            found["alive"] = response.status == 200 and json.load(response) == {"status": "ok"}
    except OSError:
        found["alive"] = False
    return found


def on_start(run: RunState) -> None:
    run.extras["auth_before"] = auth_health(run)


def _pid_alive(pid: int | None) -> bool | None:
    # The local stack's services run on this machine: a dead auth is a missing process
    # (its supervisor does not restart it). In a cluster the kubelet would: /healthz and
    # the pod's restart count (kubectl) tell there.
    return None if pid is None else psutil.pid_exists(pid)


def analyse(run: RunState) -> Finding:
    environment = run.environment
    answers = run.collector.get("login")
    by_status: dict[str, int] = {}
    for status, _ in answers:
        by_status[str(status)] = by_status.get(str(status), 0) + 1
    bad = sum(1 for status, _ in answers if status not in ANSWERS)
    bad += sum(1 for status, has_retry in answers if status in REFUSALS and not has_retry)
    before = run.extras.get("auth_before") or {}
    after = auth_health(run)
    pid_alive = _pid_alive(before.get("pid"))
    auth_down = 0
    if after["alive"] is False or pid_alive is False:
        auth_down = 1
    if before.get("pid") and after.get("pid") and before["pid"] != after["pid"]:
        auth_down = 1  # restarted: it died during the burst
    admitted = by_status.get("200", 0)
    figures = {
        "logins": len(answers),
        "by_status": by_status,
        "admitted_ratio": ratio(admitted, len(answers)),
        "busy_503": by_status.get("503", 0),
        "limited_429": by_status.get("429", 0),
        "bad_answers": bad,
        "auth": {"before": before, "after": after, "process_alive": pid_alive},
    }
    gates = [
        gate(environment, "bad_answers", "max", "max_bad_answers", bad),
        gate(environment, "auth_down", "max", "max_auth_down", auth_down),
        gate(environment, "admitted_logins", "min", "min_admitted_logins", admitted),
    ]
    notes = [
        "503 = the auth service's password-check queue was full (PASSWORD_CHECK_CONCURRENCY "
        "+ PASSWORD_CHECK_QUEUE), 429 = the gateway's per-IP or per-account login limit",
    ]
    if after["url"] is None:
        notes.append("auth's URL unknown (--auth-url): its health was not checked")
    return Finding(figures, gates, notes)


SUITE = Suite(
    name="login_burst",
    # A login is an argon2 check (about 50 ms of CPU) behind a queue: slow by design.
    p95_ms=5000.0,
    options=[
        Option(
            "--auth-url",
            "LOAD_AUTH_URL",
            "",
            "the auth service's own URL, for its /healthz (default: the local stack's)",
            str,
        ),
        Option("--burst", "LOAD_BURST", 12, "logins each user sends at once", int),
        Option("--max-bad-answers", "LOAD_MAX_BAD_ANSWERS", 0.0, "gate: answers not 200/429/503"),
        Option("--max-auth-down", "LOAD_MAX_AUTH_DOWN", 0.0, "gate: auth dead or restarted"),
        Option(
            "--min-admitted-logins",
            "LOAD_MIN_ADMITTED_LOGINS",
            1.0,
            "gate: logins admitted (the burst did reach the password checks)",
        ),
    ],
    on_start=on_start,
    analyse=analyse,
)
SUITE.install()

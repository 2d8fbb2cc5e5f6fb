"""What the three locustfiles share: options and gates, the abstract user, shared sessions,
client addresses, the collector that brings figures from workers to the master, load
shapes as tables, and the end-of-run report.

Importing this module imports Locust, which monkey-patches the process with gevent: import
it from locustfiles only, never from the project's tests (they run Locust as a process).

One locustfile per Locust process: each suite registers its own options and listeners.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import random
import socket
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Any, ClassVar, Literal

import gevent  # type: ignore[import-untyped]
import gevent.lock  # type: ignore[import-untyped]
from locust import FastHttpUser, LoadTestShape, events
from locust.argument_parser import LocustArgumentParser
from locust.contrib.fasthttp import FastHttpSession
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import StatsEntry

from courseredis import keys
from courseredis.services.db.seed import DEFAULT_COURSES
from loadtests import target
from loadtests.analysis import Samples, merge_samples, parse_metrics
from loadtests.gates import Gate, build_summary, failure_message, write_summary
from loadtests.target import Account, Accounts, TargetError

log = logging.getLogger("loadtests")

# Requests a user makes to keep its session (login, refresh) are named with this suffix and
# left out of the latency gates: they measure argon2, not the pattern under test.
SESSION = " (session)"
# RFC 2544's benchmarking network: addresses that can never be a real client's.
DEFAULT_CLIENT_NETWORK = "198.18.0.0/15"
COLLECTOR_KEY = "courseredis"
# Until the login says otherwise (`expires_in`).
ACCESS_TOKEN_LIFETIME_S = keys.ACCESS_TOKEN_LIFETIME.total_seconds()
# The courses `python -m courseredis.services.db seed` makes by default (ids 1..n).
SEEDED_COURSES = DEFAULT_COURSES


# --- options --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """A command-line option with its environment variable; gates name both when missed."""

    flag: str  # --max-p95-ms
    env_var: str  # LOAD_MAX_P95_MS
    default: Any
    help: str
    kind: Callable[[str], Any] = float

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def common_options(p95_ms: float, error_ratio: float = 0.01) -> list[Option]:
    return [
        Option(
            "--stack-file",
            "LOAD_STACK_FILE",
            target.DEFAULT_STACK_FILE,
            "the local stack's state: default gateway, accounts, /metrics, Redis",
            str,
        ),
        Option(
            "--credentials-file",
            "LOAD_CREDENTIALS_FILE",
            "",
            "demo accounts (the JSON `python -m courseredis.services.db seed` prints); "
            "default: the stack file's",
            str,
        ),
        Option(
            "--summary-dir",
            "LOAD_SUMMARY_DIR",
            "",
            "where summary.json goes (default reports/load/<suite>)",
            str,
        ),
        Option(
            "--client-network",
            "LOAD_CLIENT_NETWORK",
            DEFAULT_CLIENT_NETWORK,
            "simulated client IPs are drawn from this network and sent as X-Forwarded-For "
            "(the gateway believes it from trusted proxies only); '' sends none",
            str,
        ),
        Option(
            "--refresh-after-s",
            "LOAD_REFRESH_AFTER_S",
            0.0,
            "refresh an access token once it is this old (0: at 80%% of its lifetime)",
        ),
        Option(
            "--seed", "LOAD_SEED", 0, "random seed (0: a fresh one, recorded in the summary)", int
        ),
        Option(
            "--max-error-ratio",
            "LOAD_MAX_ERROR_RATIO",
            error_ratio,
            "gate: failed requests / requests at most this",
        ),
        Option(
            "--max-p95-ms",
            "LOAD_MAX_P95_MS",
            p95_ms,
            "gate: 95th percentile latency (ms) of the suite's requests at most this",
        ),
        Option(
            "--max-p99-ms",
            "LOAD_MAX_P99_MS",
            0.0,
            "gate: 99th percentile latency (ms) at most this (0: no gate)",
        ),
        Option(
            "--max-user-exceptions",
            "LOAD_MAX_USER_EXCEPTIONS",
            0.0,
            "gate: exceptions raised in the locustfile's own code at most this",
        ),
    ]


def add_options(parser: LocustArgumentParser, options: Sequence[Option]) -> None:
    group = parser.add_argument_group("courseredis load suite")
    for option in options:
        group.add_argument(
            option.flag,
            type=option.kind,
            default=option.default,
            env_var=option.env_var,
            help=f"{option.help} [env {option.env_var}; default {option.default!r}]",
        )


def option(environment: Environment, name: str) -> Any:
    options = environment.parsed_options
    if options is None:
        raise TargetError("Locust's options are not parsed yet")
    return getattr(options, name)


# --- client addresses -----------------------------------------------------------------------


class ClientAddresses:
    """Distinct client IPs for simulated users, drawn at random from one network."""

    def __init__(self, network: str, rng: random.Random) -> None:
        self._network: IPv4Network | IPv6Network | None = (
            ip_network(network, strict=False) if network else None
        )
        self._rng = rng
        self._given: set[str] = set()

    def next(self) -> str | None:
        net = self._network
        if net is None:
            return None
        usable = net.num_addresses - 2 if net.num_addresses > 2 else net.num_addresses
        for _ in range(100):
            offset = 1 + self._rng.randrange(usable) if net.num_addresses > 2 else 0
            address = str(ip_address(int(net.network_address) + offset))
            if address not in self._given:
                self._given.add(address)
                return address
        return address


# --- sessions -------------------------------------------------------------------------------


class LoginFailed(RuntimeError):
    pass


@dataclass
class Outcome:
    """One HTTP exchange as a user saw it."""

    status: int
    headers: dict[str, str]
    body: Any
    sent: float  # wall clock, for checks across workers
    answered: float

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def detail(self) -> str:
        return str(self.body.get("detail", "")) if isinstance(self.body, dict) else ""


def retry_after_s(outcome: Outcome, default: float = 1.0) -> float:
    value = outcome.header("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


class SharedSession:
    """One login per account per process, shared by the users that act as that account.

    A login costs about 0.1 s of argon2 on the auth service, so users log in once and then
    refresh. Refresh tokens are single use: the semaphore makes one user refresh while the
    others wait for the new token, instead of racing each other into reuse detection.
    """

    def __init__(self, account: Account, ip: str | None, refresh_after_s: float) -> None:
        self.account = account
        self.ip = ip
        self.access_token: str | None = None
        self.refresh_token: str | None = None
        self.obtained_at = 0.0
        self.lifetime_s = ACCESS_TOKEN_LIFETIME_S
        self.refresh_after_s = refresh_after_s
        self._lock = gevent.lock.Semaphore()
        self.logins = 0
        self.refreshes = 0
        self.user_id: int | None = None

    def token(self, user: PlatformUser) -> str:
        """A valid access token: logs in or refreshes first when needed."""
        current = self.access_token
        if current is not None and not self._stale():
            return current
        with self._lock:
            if self.access_token is not None and not self._stale():
                return self.access_token
            if self.refresh_token is not None and self._refresh(user):
                assert self.access_token is not None
                return self.access_token
            self._login(user)
            assert self.access_token is not None
            return self.access_token

    def rejected(self, token: str) -> None:
        """The gateway refused this token (401): refresh before the next request."""
        if self.access_token == token:
            self.obtained_at = -math.inf

    def _refresh_age(self) -> float:
        return self.refresh_after_s or 0.8 * self.lifetime_s

    def _stale(self) -> bool:
        return time.monotonic() - self.obtained_at >= self._refresh_age()

    def _headers(self) -> dict[str, str]:
        return {"X-Forwarded-For": self.ip} if self.ip else {}

    def _accept(self, body: dict[str, Any]) -> None:
        self.access_token = str(body["access_token"])
        self.refresh_token = str(body["refresh_token"])
        self.lifetime_s = float(body.get("expires_in", ACCESS_TOKEN_LIFETIME_S))
        self.obtained_at = time.monotonic()
        self.user_id = _subject(self.access_token)

    def _login(self, user: PlatformUser) -> None:
        deadline = time.monotonic() + 120.0
        body = {"username": self.account.username, "password": self.account.password}
        while True:
            outcome = user.call(
                "POST",
                "/auth/login",
                name="/auth/login" + SESSION,
                json=body,
                expect=(200, 429),
                headers=self._headers(),
                authenticated=False,
            )
            if outcome.status == 200:
                self._accept(outcome.body)
                self.logins += 1
                user.ctx.collector.count("session_logins")
                return
            if outcome.status != 429 or time.monotonic() > deadline:
                raise LoginFailed(f"login of {self.account.username}: HTTP {outcome.status}")
            # The per-IP login limit: the gateway does not believe our X-Forwarded-For (not
            # a trusted proxy), so every user shares one address. Wait as told.
            gevent.sleep(retry_after_s(outcome) + random.random())

    def _refresh(self, user: PlatformUser) -> bool:
        outcome = user.call(
            "POST",
            "/auth/refresh",
            name="/auth/refresh" + SESSION,
            json={"refresh_token": self.refresh_token},
            expect=(200, 401, 429),
            headers=self._headers(),
            authenticated=False,
        )
        if outcome.status == 200:
            self._accept(outcome.body)
            self.refreshes += 1
            user.ctx.collector.count("session_refreshes")
            return True
        if outcome.status == 429 and self.access_token is not None:
            # Limited: keep the current token and try again once Retry-After has passed.
            self.obtained_at = time.monotonic() - self._refresh_age() + retry_after_s(outcome)
            return True
        self.refresh_token = None  # expired, reused or revoked: log in again
        return False


def _subject(token: str) -> int | None:
    """The user id in an access token (`sub`), read without verifying: for bookkeeping."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return int(claims["sub"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


class ApiClient:
    """A plain client of the gateway for the end-of-run checks (outside any user)."""

    def __init__(self, base_url: str, ip: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.ip = ip
        self.token: str | None = None

    def send(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if self.ip:
            headers["X-Forwarded-For"] = self.ip
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            self.base_url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    def login(self, account: Account) -> None:
        """Log in, riding out a limit or an overloaded gateway (429, 502-504) for a while."""
        for attempt in range(6):
            status, body = self.send(
                "POST",
                "/auth/login",
                {"username": account.username, "password": account.password},
            )
            if status == 200:
                self.token = str(body["access_token"])
                return
            if status not in (429, 502, 503, 504):
                break
            time.sleep(2.0 * (attempt + 1))
        raise LoginFailed(f"login of {account.username} for the end-of-run check: HTTP {status}")


# --- the collector: figures from every worker, on the master --------------------------------


class Collector:
    """Records the suites keep besides Locust's stats (lists of plain values per kind).

    On a worker, what was recorded since the last report travels with Locust's own stats
    report to the master (`report_to_master`), which merges it (`worker_report`); in a
    single process the records simply stay here.
    """

    def __init__(self) -> None:
        self.records: dict[str, list[Any]] = {}
        self.counters: dict[str, float] = {}

    def add(self, kind: str, record: Any) -> None:
        self.records.setdefault(kind, []).append(record)

    def count(self, name: str, amount: float = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + amount

    def get(self, kind: str) -> list[Any]:
        return self.records.get(kind, [])

    def drain(self) -> dict[str, Any]:
        data = {"records": self.records, "counters": self.counters}
        self.records, self.counters = {}, {}
        return data

    def merge(self, data: dict[str, Any] | None) -> None:
        if not data:
            return
        for kind, records in data.get("records", {}).items():
            self.records.setdefault(kind, []).extend(records)
        for name, amount in data.get("counters", {}).items():
            self.count(name, amount)


# --- the run's shared state, per process ----------------------------------------------------


@dataclass
class RunState:
    environment: Environment
    suite: Suite
    rng: random.Random
    seed: int
    stack: dict[str, Any] | None
    addresses: ClientAddresses
    collector: Collector = field(default_factory=Collector)
    accounts: Accounts | None = None
    sessions: dict[str, SharedSession] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    metrics_before: dict[str, Samples] = field(default_factory=dict)
    _next_student: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    def students(self) -> tuple[Account, ...]:
        if self.accounts is None:
            raise TargetError("no accounts loaded")
        return self.accounts.students

    def next_student(self, exclude: Sequence[str] = ()) -> Account:
        """Students in turn, from an offset per worker so workers spread over them."""
        pool = [s for s in self.students() if s.username not in exclude]
        if not pool:
            raise TargetError("no student account left for this user")
        offset = max(0, getattr(self.environment.runner, "worker_index", 0)) * 7
        account = pool[(offset + self._next_student) % len(pool)]
        self._next_student += 1
        return account

    def session(self, account: Account, ip: str | None) -> SharedSession:
        existing = self.sessions.get(account.username)
        if existing is None:
            existing = SharedSession(
                account, ip, float(option(self.environment, "refresh_after_s"))
            )
            self.sessions[account.username] = existing
        return existing

    def admin(self) -> Account:
        if self.accounts is None or self.accounts.admin is None:
            raise TargetError("no admin account: the credentials need an `admin` entry")
        return self.accounts.admin


_STATE: RunState | None = None


def state() -> RunState:
    if _STATE is None:
        raise TargetError("the run has not started (no test_start yet)")
    return _STATE


# --- the abstract user ----------------------------------------------------------------------


class PlatformUser(FastHttpUser):
    """A client of the gateway: one simulated IP, one session (shared per account).

    `call` sends a request with the bearer token and X-Forwarded-For, names it for Locust's
    statistics (`name=`, so `/courses/17` and `/courses/18` are one line), marks it failed
    unless its status is expected, and on a 401 refreshes the session and retries once.
    """

    abstract = True
    # Which account the user acts as: a student (in turn), the admin, or none.
    account_kind: ClassVar[Literal["student", "admin", "none"]] = "student"
    network_timeout = 30.0
    connection_timeout = 10.0
    concurrency = 4  # several requests of one user at once (a user racing itself)

    client: FastHttpSession
    ip: str | None
    shared: SharedSession | None

    def on_start(self) -> None:
        run = state()
        self.ctx = run
        self.ip = run.addresses.next()
        self.shared = None
        if self.account_kind == "student":
            self.shared = run.session(run.next_student(self.excluded_students()), self.ip)
        elif self.account_kind == "admin":
            self.shared = run.session(run.admin(), self.ip)

    def excluded_students(self) -> Sequence[str]:
        """Students this user may not act as (kept for a user that needs one alone)."""
        return ()

    @property
    def user_id(self) -> int | None:
        return self.shared.user_id if self.shared else None

    def token(self) -> str | None:
        """The session's token; None (after a pause) when the login failed."""
        if self.shared is None:
            return None
        try:
            return self.shared.token(self)
        except LoginFailed as error:
            self.ctx.collector.count("login_failures")
            log.warning("%s", error)
            gevent.sleep(1.0)
            return None

    def call(
        self,
        method: str,
        path: str,
        *,
        name: str,
        expect: Sequence[int] = (200,),
        json: Any = None,
        headers: dict[str, str] | None = None,
        authenticated: bool = True,
    ) -> Outcome:
        for attempt in (1, 2):
            sent_headers = {"X-Forwarded-For": self.ip} if self.ip else {}
            sent_headers.update(headers or {})
            token = None
            if authenticated:
                token = self.token()
                if token is None:
                    return Outcome(0, {}, None, time.time(), time.time())
                sent_headers["Authorization"] = f"Bearer {token}"
            sent = time.time()
            with self.client.request(
                method, path, name=name, json=json, headers=sent_headers, catch_response=True
            ) as response:
                answered = time.time()
                status = int(response.status_code or 0)
                response_headers = {k.lower(): v for k, v in (response.headers or {}).items()}
                try:
                    body = response.json() if response.text else None
                except ValueError:
                    body = None
                retry = authenticated and status == 401 and attempt == 1 and self.shared
                if retry:
                    response.success()  # an expired or revoked token: refreshed below
                elif status in expect:
                    response.success()
                else:
                    text = (response.text or "")[:200]
                    response.failure(f"HTTP {status}, expected {tuple(expect)}: {text}")
            if retry and token is not None and self.shared is not None:
                self.ctx.collector.count("reauthentications")
                self.shared.rejected(token)
                continue
            return Outcome(status, response_headers, body, sent, answered)
        raise AssertionError("unreachable")


# --- load shapes as tables ------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """Until `until` (a fraction of --run-time), run `users` (a fraction of --users),
    spawning `spawn_rate` users per second (0: --spawn-rate)."""

    until: float
    users: float
    spawn_rate: float = 0.0


class StageShape(LoadTestShape):
    """A load shape read from a table of stages, scaled by -u/--users and -t/--run-time.

    Without a run time (the web UI), the last stage holds until the run is stopped.
    """

    abstract = True
    use_common_options = True
    stages: ClassVar[tuple[Stage, ...]] = (Stage(1.0, 1.0),)

    def tick(self) -> tuple[int, float] | None:
        runner = self.runner
        options = runner.environment.parsed_options if runner else None
        users = int(getattr(options, "num_users", None) or 1)
        default_rate = float(getattr(options, "spawn_rate", None) or users)
        run_time = getattr(options, "run_time", None)
        elapsed = time.perf_counter() - self.start_time
        if run_time and elapsed >= run_time:
            return None
        fraction = elapsed / run_time if run_time else 0.0
        stage = next((s for s in self.stages if fraction < s.until), self.stages[-1])
        return max(1, round(users * stage.users)), stage.spawn_rate or default_rate


# --- the suite: options, listeners, the end-of-run report ------------------------------------


@dataclass(frozen=True)
class Finding:
    """What a suite contributes to its summary: figures, gates and notes."""

    figures: dict[str, Any]
    gates: list[Gate]
    notes: list[str] = field(default_factory=list)


@dataclass
class Suite:
    name: str
    p95_ms: float
    options: list[Option] = field(default_factory=list)
    # Scrapes of services' /metrics before and after the run: name -> service.
    metrics_services: tuple[str, ...] = ()
    analyse: Callable[[RunState], Finding] | None = None
    on_start: Callable[[RunState], None] | None = None
    needs_gateway: bool = True

    def all_options(self) -> list[Option]:
        return [*common_options(self.p95_ms), *self.options]

    def install(self) -> None:
        """Register the suite's options and listeners on Locust's events."""
        hooks: Any = events  # Locust's EventHook.add_listener carries no annotations
        hooks.init_command_line_parser.add_listener(
            lambda parser, **_: add_options(parser, self.all_options())
        )
        hooks.init.add_listener(self._on_init)
        hooks.test_start.add_listener(self._on_test_start)
        hooks.report_to_master.add_listener(self._on_report_to_master)
        hooks.worker_report.add_listener(self._on_worker_report)
        hooks.quitting.add_listener(self._on_quitting)

    # -- listeners --

    def _on_init(self, environment: Environment, **_: Any) -> None:
        if isinstance(environment.runner, WorkerRunner):
            return  # the master's options and host arrive with its spawn message
        options = environment.parsed_options
        if options is not None and not int(options.seed):
            # Drawn here, on the master, so that it travels to every worker with the
            # options: the workers then agree on whatever the seed decides (hot courses).
            options.seed = random.SystemRandom().randrange(1, 2**31)
        if environment.host or not self.needs_gateway:
            return
        stack = target.stack_document(option(environment, "stack_file"))
        url = target.gateway_url(stack)
        if url is None:
            log.error(
                "no gateway URL: pass --host (or LOCUST_HOST), or start the local stack "
                "(`make up`) so that %s names it",
                option(environment, "stack_file"),
            )
            raise SystemExit(2)
        environment.host = url

    def _on_test_start(self, environment: Environment, **_: Any) -> None:
        global _STATE
        seed = int(option(environment, "seed")) or random.SystemRandom().randrange(1, 2**31)
        environment.parsed_options.seed = seed  # type: ignore[union-attr]
        worker_index = max(0, getattr(environment.runner, "worker_index", 0))
        rng = random.Random(seed * 1009 + worker_index)
        stack = target.stack_document(option(environment, "stack_file"))
        run = RunState(
            environment=environment,
            suite=self,
            rng=rng,
            seed=seed,
            stack=stack,
            addresses=ClientAddresses(option(environment, "client_network"), rng),
        )
        if self.needs_gateway:
            run.accounts = target.accounts(option(environment, "credentials_file") or None, stack)
        _STATE = run
        if isinstance(environment.runner, MasterRunner):
            run.extras["workers"] = environment.runner.worker_count
        if not isinstance(environment.runner, WorkerRunner):
            for service in self.metrics_services:
                run.metrics_before[service] = scrape(run, service)
        if self.on_start is not None:
            self.on_start(run)

    def _on_report_to_master(self, data: dict[str, Any], **_: Any) -> None:
        if _STATE is not None:
            data[COLLECTOR_KEY] = _STATE.collector.drain()

    def _on_worker_report(self, data: dict[str, Any], **_: Any) -> None:
        if _STATE is not None:
            _STATE.collector.merge(data.get(COLLECTOR_KEY))

    def _on_quitting(self, environment: Environment, **_: Any) -> None:
        if isinstance(environment.runner, WorkerRunner):
            return
        try:
            summary = self.report(environment)
        except Exception:
            log.error(
                "the %s suite could not evaluate its gates:\n%s", self.name, traceback.format_exc()
            )
            environment.process_exit_code = 2
            return
        environment.process_exit_code = 0 if summary["passed"] else 1

    # -- the report --

    def report(self, environment: Environment) -> dict[str, Any]:
        run = _STATE
        runner = environment.runner
        assert runner is not None
        stats = runner.stats
        measured = measured_entry(stats.entries.values(), stats)
        total = stats.total
        duration = max(1e-9, (total.last_request_timestamp or time.time()) - total.start_time)
        p99_gate = float(option(environment, "max_p99_ms"))
        requests: dict[str, Any] = {
            "total": total.num_requests,
            "failures": total.num_failures,
            "error_ratio": total.num_failures / total.num_requests if total.num_requests else None,
            "rps": total.num_requests / duration,
            "measured_requests": measured.num_requests,
            "p50_ms": _percentile(measured, 0.50),
            "p95_ms": _percentile(measured, 0.95),
            "p99_ms": _percentile(measured, 0.99),
            "by_name": by_name(stats.entries.values()),
            "errors": [
                {
                    "name": e.name,
                    "method": e.method,
                    "error": str(e.error)[:300],
                    "occurrences": e.occurrences,
                }
                for e in list(stats.errors.values())[:10]
            ],
        }
        finding = (
            self.analyse(run) if (self.analyse is not None and run is not None) else Finding({}, [])
        )
        gates = [
            gate(environment, "error_ratio", "max", "max_error_ratio", requests["error_ratio"]),
            gate(environment, "p95_ms", "max", "max_p95_ms", requests["p95_ms"]),
        ]
        if p99_gate > 0:
            gates.append(gate(environment, "p99_ms", "max", "max_p99_ms", requests["p99_ms"]))
        gates.append(
            gate(
                environment,
                "user_exceptions",
                "max",
                "max_user_exceptions",
                float(sum(e["count"] for e in runner.exceptions.values())),
            )
        )
        gates += finding.gates
        run_info = {
            "host": environment.host,
            "started_at": datetime.fromtimestamp(total.start_time, UTC).isoformat(
                timespec="seconds"
            ),
            "duration_s": duration,
            "users": runner.target_user_count,
            "workers": run.extras.get("workers", 1) if run else 1,
            "seed": run.seed if run else None,
            "generator": socket.gethostname(),
            "sessions": _session_counts(run),
        }
        summary = build_summary(
            suite=self.name,
            run=run_info,
            requests=requests,
            figures=finding.figures,
            gates=gates,
            notes=finding.notes,
        )
        directory = Path(option(environment, "summary_dir") or f"reports/load/{self.name}")
        path = write_summary(directory, summary)
        print_report(self.name, summary, path, gates)
        return summary


def gate(
    environment: Environment,
    name: str,
    bound: Literal["max", "min"],
    dest: str,
    actual: float | None,
) -> Gate:
    """A gate whose threshold is the option `dest` (its flag and variable are looked up)."""
    suite = state().suite if _STATE is not None else None
    options = suite.all_options() if suite else []
    found = next((o for o in options if o.dest == dest), None)
    return Gate(
        name=name,
        bound=bound,
        threshold=float(option(environment, dest)),
        actual=None if actual is None else float(actual),
        option=found.flag if found else f"--{dest.replace('_', '-')}",
        env_var=found.env_var if found else "",
    )


def measured_entry(entries: Any, stats: Any) -> StatsEntry:
    """All requests but the session upkeep, merged: what the latency gates look at."""
    merged = StatsEntry(stats, "measured", "", use_response_times_cache=False)
    for entry in entries:
        if not entry.name.endswith(SESSION):
            merged.extend(entry)
    return merged


def _percentile(entry: StatsEntry, q: float) -> float | None:
    return float(entry.get_response_time_percentile(q)) if entry.num_requests else None


def by_name(entries: Any) -> list[dict[str, Any]]:
    rows = []
    for entry in sorted(entries, key=lambda e: (-e.num_requests, e.name)):
        rows.append(
            {
                "name": entry.name,
                "method": entry.method,
                "requests": entry.num_requests,
                "failures": entry.num_failures,
                "p50_ms": _percentile(entry, 0.50),
                "p95_ms": _percentile(entry, 0.95),
                "p99_ms": _percentile(entry, 0.99),
            }
        )
    return rows


def _session_counts(run: RunState | None) -> dict[str, float]:
    """Logins and refreshes over every process (counted where they happened)."""
    if run is None:
        return {}
    counters = run.collector.counters
    return {
        "logins": counters.get("session_logins", 0),
        "refreshes": counters.get("session_refreshes", 0),
        "login_failures": counters.get("login_failures", 0),
        "reauthentications": counters.get("reauthentications", 0),
    }


def scrape(run: RunState, service: str) -> Samples:
    """Sum of a service's /metrics over the URLs it has ({} when none answers)."""
    urls = target.service_metrics_urls(
        option(run.environment, f"{service}_metrics_url") if _has_option(run, service) else None,
        run.stack,
        service,
    )
    parts = []
    for url in urls:
        try:
            parts.append(parse_metrics(target.fetch_text(url)))
        except OSError as error:
            log.warning("could not scrape %s: %s", url, error)
    return merge_samples(parts)


def _has_option(run: RunState, service: str) -> bool:
    return hasattr(run.environment.parsed_options, f"{service}_metrics_url")


def courses_option() -> Option:
    return Option(
        "--courses",
        "LOAD_COURSES",
        SEEDED_COURSES,
        f"courses in the database (ids 1..n; the seed makes {SEEDED_COURSES})",
        int,
    )


def metrics_option(service: str) -> Option:
    return Option(
        f"--{service}-metrics-url",
        f"LOAD_{service.upper()}_METRICS_URL",
        "",
        f"the {service} service's /metrics, comma-separated for several pods "
        "(default: the local stack's)",
        str,
    )


def print_report(suite: str, summary: dict[str, Any], path: Path, gates: Sequence[Gate]) -> None:
    lines = [f"== {suite}: {'PASSED' if summary['passed'] else 'FAILED'} (summary: {path})"]
    lines += [f"   {g.describe()}" for g in gates]
    for note in summary.get("notes", []):
        lines.append(f"   note: {note}")
    message = failure_message(gates)
    if message:
        lines.append(message)
    print("\n".join(lines), flush=True)

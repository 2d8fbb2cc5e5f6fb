"""The user flows the smoke suite drives through the gateway, and what they left in Redis.

One scenario per run, as a student: log in, refresh, read a course (twice: a miss or a hit,
then a hit), enroll, read the enrollment back (as the platform admin when an admin account
is given, else as the student, who sees its own enrollments only), hit the rate limit of
one route, log out. The course is `--course-id`, else the platform's dedicated smoke course
(`SMOKE_COURSE_TITLE`, which a deployment's `prepare` creates), else the first course.
After each step the keys the step wrote are read back with the Redis admin account (type,
TTL, Redis time) and kept in a `FlowRecord`; the tests then hold each observation against
its rule.

Test data: the scenario deletes what it wrote (rate-limit keys, its sessions, refresh
families and revocations, a course cache entry it created) when the run ends. What it
cannot take back through the API is the enrollment: the student is enrolled in the chosen
course once, on the first run, and every later run gets `409 already enrolled` (which
takes and releases the enrollment lock all the same). So the platform keeps one
enrollment row per (student, course), its `EnrollmentCreated` event in the stream and the
consumer's 24 h idempotency marker: real state of a real enrollment, not growing per run.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import redis
from redis.exceptions import RedisError

from courseredis import keys, ratelimit_algorithms
from courseredis.connection import SyncClient
from courseredis.patterns.idempotency import CLAIM_LEASE
from courseredis.services.db.prepare import SMOKE_COURSE_TITLE
from courseredis.services.settings import GatewaySettings, RoutePolicy
from smoke.target import Account, Target

HTTP_TIMEOUT_S = 10.0
# How long the courses consumer may take to mark the enrollment event done.
EVENT_WAIT_S = 10.0
# How far back in the enrollment stream to look for an earlier run's event.
EVENT_SEARCH = 1000
BURST_WORKERS = 16
# The rate-limit burst never sends more than this many requests.
BURST_CAP = 2000
RATE_LIMITED_ROUTE = "enrollments.list"
# Looking for the smoke course: the listing's largest page, and how many pages at most
# (well within the per-user limit of `courses.list`).
COURSE_PAGE_SIZE = 100
COURSE_PAGES = 20


class StepFailed(RuntimeError):
    """A step of the scenario could not be done; the message says which and why."""


@dataclass(frozen=True)
class KeyState:
    """One key as read back after a step (`pttl_ms` None: the key has no TTL)."""

    step: str
    key: str
    exists: bool
    redis_type: str | None
    pttl_ms: int | None
    now_ms: int  # Redis TIME when it was read
    value: str | None = None  # string values of course keys, to check their content

    def describe(self) -> str:
        if not self.exists:
            return f"{self.key} (after {self.step}): does not exist"
        ttl = "no TTL" if self.pttl_ms is None else f"TTL {self.pttl_ms} ms"
        return f"{self.key} (after {self.step}): {self.redis_type}, {ttl}"


@dataclass(frozen=True)
class Reply:
    step: str
    method: str
    path: str
    status: int
    headers: dict[str, str]
    body: Any

    def describe(self) -> str:
        return f"{self.method} {self.path} -> {self.status} {str(self.body)[:200]}"


@dataclass
class FlowRecord:
    student: Account
    course_id: int | None = None
    user_id: int | None = None
    session_id: str | None = None
    jtis: list[str] = field(default_factory=list)  # access tokens the student was issued
    token_expiry: dict[str, int] = field(default_factory=dict)  # jti -> exp (s)
    client_ip: str | None = None
    client_ip_how: str = ""
    replies: dict[str, Reply] = field(default_factory=dict)
    observed: list[KeyState] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    enrollment_status: int | None = None
    event_id: str | None = None
    burst_sent: int = 0
    server_errors: list[str] = field(default_factory=list)  # 5xx answers, in any step
    admin_user_id: int | None = None
    # Who read the enrollment back ("the app admin", "the student itself"), and whose
    # enrollments in the course that reader was shown.
    enrollment_reader: str | None = None
    enrollment_users_seen: list[int] | None = None
    notes: list[str] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)  # step -> seconds
    # Keys to delete at the end (what the run wrote and may take back).
    cleanup: set[str] = field(default_factory=set)

    def require(self, step: str) -> None:
        """Fail the calling test unless `step` completed (naming what went wrong)."""
        if step in self.completed:
            return
        reason = self.failed.get(step)
        if reason is None:
            earlier = "; ".join(f"{s}: {r}" for s, r in self.failed.items()) or "unknown"
            reason = f"not run because an earlier step failed ({earlier})"
        raise AssertionError(f"flow step {step!r} did not complete: {reason}")

    def state(self, step: str, key: str) -> KeyState:
        """The last observation of `key` after `step`."""
        for state in reversed(self.observed):
            if state.step == step and state.key == key:
                return state
        raise AssertionError(f"{key} was not read back after {step}")

    def states(self, step: str | None = None) -> list[KeyState]:
        return [s for s in self.observed if step is None or s.step == step]


def decode_claims(token: str) -> dict[str, Any]:
    """A JWT's payload, unverified: the suite has no signing key, and only reads its ids."""
    try:
        payload = token.split(".")[1]
        padded = payload + "=" * (-len(payload) % 4)
        claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    except (IndexError, ValueError) as exc:
        raise StepFailed(f"the access token is not a JWT: {exc}") from None
    return claims


def local_address(url: str) -> str:
    """The address this machine uses to reach `url`: what the gateway sees without a proxy."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    with socket.create_connection((parsed.host, port), timeout=5) as sock:
        address: str = sock.getsockname()[0]
    return address


def canonical_ip(address: str) -> str:
    """The address as rate-limit keys spell it (compressed; IPv4-mapped IPv6 as IPv4)."""
    match = keys.classify(keys.ratelimit_ip(address, "login"))
    assert match is not None
    return match.ids["ip"]


def route_policy(route: str) -> RoutePolicy:
    """The gateway's policy for a route: the defaults, or GATEWAY_RATE_LIMITS when set here
    as the deployment sets it."""
    return GatewaySettings().rate_limits[route]


def rate_limit_max_ttl(route: str) -> timedelta:
    """The longest TTL a rate-limit key of `route` may carry: its policy's longest window,
    times the windows its algorithm's key lives (`ratelimit_algorithms`)."""
    policy = route_policy(route)
    windows = [timedelta(seconds=s.window_s) for s in policy.per_ip + policy.per_user]
    if not windows:
        return keys.RATE_LIMIT_KEY_MAX_TTL
    return ratelimit_algorithms.spec(policy.algorithm).ttl_windows * max(windows)


class Scenario:
    """Drives the flows; `run()` returns the record, `cleanup()` takes the test data back."""

    def __init__(
        self,
        target: Target,
        client: SyncClient,
        masters: Callable[[], list[redis.Redis]],
    ) -> None:
        if target.gateway_url is None or target.student is None:
            raise ValueError("the scenario needs the gateway and a student account")
        self.target = target
        self.redis = client
        self.masters = masters
        self.http = httpx.Client(base_url=target.gateway_url, timeout=HTTP_TIMEOUT_S)
        self.record = FlowRecord(student=target.student)
        self._access: str | None = None
        self._refresh: str | None = None
        self._ip_existing: set[str] = set()

    # --- plumbing -----------------------------------------------------------------------

    def close(self) -> None:
        self.http.close()

    def call(
        self,
        step: str,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        record: bool = True,
    ) -> Reply:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = self.http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise StepFailed(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        try:
            content: Any = response.json() if response.content else None
        except ValueError:
            content = response.text[:500]
        reply = Reply(step, method, path, response.status_code, dict(response.headers), content)
        if record:
            self.record.replies[step] = reply
            if reply.status >= 500:
                self.record.server_errors.append(f"{step}: {reply.describe()}")
        return reply

    def expect(self, reply: Reply, *statuses: int) -> Reply:
        if reply.status not in statuses:
            wanted = " or ".join(str(s) for s in statuses)
            raise StepFailed(f"{reply.describe()} (wanted {wanted})")
        return reply

    def now_ms(self) -> int:
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def observe(self, step: str, key: str, *, with_value: bool = False) -> KeyState:
        """Read `key` back (type, TTL, Redis time) as the admin, and keep the observation."""
        try:
            # Redis time first: a TTL read after it can only be shorter than `now` implies.
            now = self.now_ms()
            redis_type = str(self.redis.type(key))
            pttl = int(self.redis.pttl(key))
            value = self.redis.get(key) if with_value and redis_type == "string" else None
        except RedisError as exc:
            raise StepFailed(f"reading {key} back failed: {type(exc).__name__}: {exc}") from None
        exists = redis_type != "none" and pttl != -2
        state = KeyState(
            step=step,
            key=key,
            exists=exists,
            redis_type=redis_type if exists else None,
            pttl_ms=pttl if pttl >= 0 else None,
            now_ms=now,
            value=str(value) if value is not None else None,
        )
        self.record.observed.append(state)
        return state

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        except StepFailed as exc:
            self.record.failed[name] = str(exc)
            raise
        except (RedisError, OSError) as exc:
            self.record.failed[name] = f"{type(exc).__name__}: {exc}"
            raise StepFailed(str(exc)) from exc
        except AssertionError:  # what it needs from an earlier step is not there
            self.record.failed[name] = "not run: an earlier step it needs failed"
            raise StepFailed(name) from None
        finally:
            self.record.durations[name] = time.monotonic() - started
        self.record.completed.append(name)

    # --- the scenario -------------------------------------------------------------------

    def run(self) -> FlowRecord:
        steps: list[tuple[str, Callable[[], None]]] = [
            ("login", self.login),
            ("refresh", self.refresh),
            ("read_course", self.read_course),
            ("enroll", self.enroll),
            ("read_enrollment_back", self.read_enrollment_back),
            ("rate_limit", self.rate_limit),
            ("logout", self.logout),
        ]
        for name, run in steps:
            try:
                with self.step(name):
                    run()
            except StepFailed:
                if name in ("login", "refresh"):
                    break  # nothing after works without a session
        if "logout" not in self.record.completed and self._access:
            # The scenario stopped early: end the session anyway (cleanup deletes the rest).
            try:
                self.call("logout_after_failure", "POST", "/auth/logout", token=self._access)
            except StepFailed as exc:
                self.record.notes.append(f"logout after a failure did not work: {exc}")
        return self.record

    def _user_keys(self, user_id: int) -> None:
        for route in GatewaySettings().rate_limits:
            self.record.cleanup.add(keys.ratelimit_user(user_id, route))

    def _account_key(self, username: str) -> None:
        """The login's per-account limit key is taken back, unless it was there before
        (someone else's attempts: deleting it would reset their limit)."""
        key = keys.ratelimit_account(username, "login")
        if not self.redis.exists(key):
            self.record.cleanup.add(key)

    def _pre_existing_ip_keys(self, ip: str) -> set[str]:
        existing = set()
        for route in GatewaySettings().rate_limits:
            key = keys.ratelimit_ip(ip, route)
            if self.redis.exists(key):
                existing.add(key)
        return existing

    def login(self) -> None:
        record = self.record
        assert self.target.gateway_url is not None
        ip_given = self.target.client_ip
        guess = ip_given or local_address(self.target.gateway_url)
        ip = canonical_ip(guess)
        self._ip_existing = self._pre_existing_ip_keys(ip)
        routes = list(GatewaySettings().rate_limits)
        # Registered before the login, so a failed login's hit is taken back too.
        record.cleanup |= {
            keys.ratelimit_ip(ip, route)
            for route in routes
            if keys.ratelimit_ip(ip, route) not in self._ip_existing
        }
        self._account_key(record.student.username)
        reply = self.expect(
            self.call(
                "login",
                "POST",
                "/auth/login",
                body={"username": record.student.username, "password": record.student.password},
            ),
            200,
        )
        self._take_tokens(reply.body)
        assert record.user_id is not None and record.session_id is not None
        self._user_keys(record.user_id)
        record.cleanup |= {
            keys.session(record.session_id),
            keys.refresh_token(record.session_id),
        }
        login_key = keys.ratelimit_ip(ip, "login")
        if ip_given or self.redis.exists(login_key):
            record.client_ip = ip
            record.client_ip_how = "given" if ip_given else "this machine's address"
        else:
            found = self._find_ip_from_redis()
            if found is None:
                raise StepFailed(
                    f"no ratelimit:ip:*:login key after the login (looked for {login_key}): "
                    "the gateway did not rate-limit the login"
                )
            record.client_ip = found
            record.client_ip_how = (
                "found in Redis (the gateway sees a proxy or NAT address, not this machine's)"
            )
            # Shared with whoever else is behind that address: left to expire, not deleted.
            record.notes.append(
                f"the gateway sees this client as {found}; its per-IP keys are left to expire"
            )
        self.observe("login", keys.session(record.session_id))
        self.observe("login", keys.refresh_token(record.session_id))
        self.observe("login", keys.ratelimit_ip(record.client_ip, "login"))
        self.observe("login", keys.ratelimit_account(record.student.username, "login"))

    def _take_tokens(self, body: Any) -> None:
        try:
            self._access = str(body["access_token"])
            self._refresh = str(body["refresh_token"])
        except (TypeError, KeyError):
            raise StepFailed(f"no tokens in the reply: {str(body)[:200]}") from None
        claims = decode_claims(self._access)
        record = self.record
        try:
            user_id = keys.valid_int_id("sub", int(claims["sub"]))
            session_id = keys.valid_uuid("sid", claims["sid"])
            jti = keys.valid_uuid("jti", claims["jti"])
            expiry = int(claims["exp"])
        except (KeyError, ValueError, TypeError, keys.InvalidIdentifier) as exc:
            raise StepFailed(f"the access token's claims are not usable: {exc}") from None
        if record.session_id not in (None, session_id):
            raise StepFailed(
                f"the refresh changed the session: {record.session_id} -> {session_id}"
            )
        record.user_id, record.session_id = user_id, session_id
        record.jtis.append(jti)
        record.token_expiry[jti] = expiry
        record.cleanup.add(keys.jwt_revoked(jti))

    def _find_ip_from_redis(self) -> str | None:
        """The IP of the `ratelimit:ip:*:login` key with the latest hit (SCAN every master)."""
        best: tuple[float, str] | None = None
        for node in self.masters():
            for key in node.scan_iter(match="ratelimit:ip:*:login", count=1000):
                match = keys.classify(key)
                if match is None or match.pattern is not keys.RATE_LIMIT_IP:
                    continue
                if node.type(key) != "zset":
                    continue
                newest: list[Any] = list(node.zrange(key, -1, -1, withscores=True))
                score = float(newest[0][1]) if newest else None
                if score is not None and (best is None or score > best[0]):
                    best = (score, match.ids["ip"])
        return best[1] if best else None

    def refresh(self) -> None:
        record = self.record
        assert record.session_id is not None and record.client_ip is not None
        reply = self.expect(
            self.call("refresh", "POST", "/auth/refresh", body={"refresh_token": self._refresh}),
            200,
        )
        self._take_tokens(reply.body)
        self.observe("refresh", keys.refresh_token(record.session_id))
        self.observe("refresh", keys.session(record.session_id))
        self.observe("refresh", keys.ratelimit_ip(record.client_ip, "refresh"))

    def read_course(self) -> None:
        record = self.record
        assert record.user_id is not None and record.client_ip is not None
        course_id = self.target.course_id
        if course_id is None:
            course_id = self._choose_course()
        record.course_id = course_id
        key = keys.course(course_id)
        if not self.redis.exists(key):
            record.cleanup.add(key)
        first = self.expect(
            self.call("read_course", "GET", f"/courses/{course_id}", token=self._access), 200
        )
        self.observe("read_course", key, with_value=True)
        second = self.expect(
            self.call("read_course_again", "GET", f"/courses/{course_id}", token=self._access),
            200,
        )
        record.notes.append(
            f"course {course_id}: X-Cache {first.headers.get('x-cache')}, then "
            f"{second.headers.get('x-cache')}"
        )
        self.observe("read_course", keys.ratelimit_ip(record.client_ip, "courses.read"))
        self.observe("read_course", keys.ratelimit_user(record.user_id, "courses.read"))

    def _choose_course(self) -> int:
        """The smoke course, found by its title in the listing (ordered by id), so that the
        run's enrollment takes no seat of a real course; else the first course listed."""
        first: int | None = None
        seen = 0
        for page in range(1, COURSE_PAGES + 1):
            listing = self.expect(
                self.call(
                    "list_courses",
                    "GET",
                    f"/courses?page={page}&size={COURSE_PAGE_SIZE}",
                    token=self._access,
                ),
                200,
            )
            body = listing.body if isinstance(listing.body, dict) else {}
            items = body.get("items") or []
            for item in items:
                if item.get("title") == SMOKE_COURSE_TITLE:
                    self.record.notes.append(f"course {item['id']} is the smoke course")
                    return int(item["id"])
            if first is None and items:
                first = int(items[0]["id"])
            seen += len(items)
            if len(items) < COURSE_PAGE_SIZE or seen >= int(body.get("total") or 0):
                break
        if first is None:
            raise StepFailed(f"no course to read: {listing.describe()}")
        self.record.notes.append(
            f"no smoke course ({SMOKE_COURSE_TITLE!r}) among the first {seen} courses: the "
            f"first course listed, {first}, is used and the enrollment takes one of its seats"
        )
        return first

    def enroll(self) -> None:
        record = self.record
        assert record.user_id is not None and record.course_id is not None
        reply = self.call(
            "enroll", "POST", f"/courses/{record.course_id}/enrollments", token=self._access
        )
        already = reply.status == 409 and "already enrolled" in str(reply.body)
        if reply.status != 201 and not already:
            raise StepFailed(f"{reply.describe()} (wanted 201, or 409 already enrolled)")
        record.enrollment_status = reply.status
        self.observe("enroll", keys.enrollment_lock(record.course_id, record.user_id))
        self.observe("enroll", keys.ratelimit_user(record.user_id, "enrollments.create"))
        if reply.status == 201:
            enrollment_id = reply.body.get("id") if isinstance(reply.body, dict) else None
            self._follow_event(lambda p: p.get("enrollment_id") == enrollment_id, wait=True)
        else:
            record.notes.append(
                f"{record.student.username} was already enrolled in course {record.course_id} "
                "(an earlier run): no new enrollment, event or idempotency marker"
            )
            user, course = record.user_id, record.course_id
            self._follow_event(
                lambda p: p.get("user_id") == user and p.get("course_id") == course, wait=False
            )

    def _follow_event(self, matches: Callable[[dict[str, Any]], bool], *, wait: bool) -> None:
        """Find the enrollment's EnrollmentCreated event and its idempotency marker; with
        `wait`, wait until the courses consumer has marked it done."""
        record = self.record
        stream = keys.event_stream("enrollments")
        deadline = time.monotonic() + (EVENT_WAIT_S if wait else 0)
        while record.event_id is None:
            entries: list[Any] = list(self.redis.xrevrange(stream, count=EVENT_SEARCH) or [])
            for _entry_id, fields in entries:
                try:
                    payload = json.loads(fields["payload"])
                except (KeyError, ValueError):
                    continue
                if fields.get("type") == "EnrollmentCreated" and matches(payload):
                    record.event_id = str(fields["id"])
                    break
            else:
                if time.monotonic() > deadline:
                    if wait:
                        raise StepFailed("no EnrollmentCreated event for the new enrollment")
                    record.notes.append(
                        f"the enrollment's event is not among the last {EVENT_SEARCH} of {stream}"
                    )
                    return
                time.sleep(0.1)
        idem = keys.idempotency("courses", record.event_id)
        lease_ms = int(CLAIM_LEASE.total_seconds() * 1000)
        while True:
            state = self.observe("event_processed", idem, with_value=True)
            # Claimed: a lease of CLAIM_LEASE; done: the 24 h marker.
            done = state.exists and state.pttl_ms is not None and state.pttl_ms > lease_ms
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.observe("event_processed", stream)

    def read_enrollment_back(self) -> None:
        """The platform admin lists the course's enrollments when an admin account is given;
        else the student lists its own (a student is shown no one else's)."""
        record = self.record
        assert record.user_id is not None and record.course_id is not None
        admin = self.target.app_admin
        if admin is None:
            listing = self.expect(
                self.call(
                    "student_lists_enrollments",
                    "GET",
                    f"/courses/{record.course_id}/enrollments",
                    token=self._access,
                ),
                200,
            )
            record.enrollment_reader = "the student itself"
            record.enrollment_users_seen = self._enrolled_users(listing)
            record.notes.append("no app admin account: the student read its enrollment back")
            return
        self._account_key(admin.username)
        reply = self.expect(
            self.call(
                "admin_login",
                "POST",
                "/auth/login",
                body={"username": admin.username, "password": admin.password},
            ),
            200,
        )
        try:
            token = str(reply.body["access_token"])
        except (TypeError, KeyError):
            raise StepFailed(f"no access token for the admin: {reply.describe()}") from None
        claims = decode_claims(token)
        admin_id, sid = int(claims["sub"]), str(claims["sid"])
        record.admin_user_id = admin_id
        self._user_keys(admin_id)
        record.cleanup |= {
            keys.session(sid),
            keys.refresh_token(sid),
            keys.jwt_revoked(str(claims["jti"])),
        }
        try:
            listing = self.expect(
                self.call(
                    "admin_lists_enrollments",
                    "GET",
                    f"/courses/{record.course_id}/enrollments",
                    token=token,
                ),
                200,
            )
            record.enrollment_reader = "the app admin"
            record.enrollment_users_seen = self._enrolled_users(listing)
        finally:
            self.expect(self.call("admin_logout", "POST", "/auth/logout", token=token), 204)
        self.observe("admin_logout", keys.session(sid))
        self.observe("admin_logout", keys.refresh_token(sid))

    @staticmethod
    def _enrolled_users(listing: Reply) -> list[int]:
        items = listing.body.get("items") if isinstance(listing.body, dict) else None
        if not isinstance(items, list):
            raise StepFailed(f"no enrollment list in the reply: {listing.describe()}")
        return [int(i["user_id"]) for i in items if isinstance(i, dict) and "user_id" in i]

    def rate_limit(self) -> None:
        record = self.record
        assert record.user_id is not None and record.course_id is not None
        path = f"/courses/{record.course_id}/enrollments"
        first = self.expect(self.call("rate_limit_first", "GET", path, token=self._access), 200)
        remaining = first.headers.get("ratelimit-remaining", "")
        # The requests it takes to be refused: what remains, plus one.
        need = int(remaining) + 1 if remaining.isdigit() else BURST_CAP
        sent = 1
        extra = 0
        limited: Reply | None = None
        with ThreadPoolExecutor(BURST_WORKERS) as pool:
            while limited is None and extra < min(need + 20, BURST_CAP):
                batch = max(1, min(need - extra, 4 * BURST_WORKERS))
                replies = list(
                    pool.map(
                        lambda _: self.call(
                            "rate_limit", "GET", path, token=self._access, record=False
                        ),
                        range(batch),
                    )
                )
                sent += batch
                extra += batch
                unexpected = [r for r in replies if r.status not in (200, 429)]
                if any(r.status < 500 for r in unexpected):
                    first_bad = next(r for r in unexpected if r.status < 500)
                    raise StepFailed(f"during the burst: {first_bad.describe()}")
                # A server error does not stop the burst (the limiter still counted the hit);
                # test_no_server_error_during_the_flows reports it.
                record.server_errors += [f"rate_limit: {r.describe()}" for r in unexpected]
                limited = next((r for r in replies if r.status == 429), None)
        record.burst_sent = sent
        if limited is None:
            raise StepFailed(
                f"no 429 after {sent} requests to {path} (RateLimit-Remaining was {remaining!r})"
            )
        record.replies["rate_limit"] = limited
        self.observe("rate_limit", keys.ratelimit_user(record.user_id, RATE_LIMITED_ROUTE))

    def logout(self) -> None:
        record = self.record
        assert record.session_id is not None and record.user_id is not None
        self.expect(self.call("logout", "POST", "/auth/logout", token=self._access), 204)
        jti = record.jtis[-1]
        self.observe("logout", keys.jwt_revoked(jti))
        self.observe("logout", keys.session(record.session_id))
        self.observe("logout", keys.refresh_token(record.session_id))
        self.observe("logout", keys.ratelimit_user(record.user_id, "logout"))
        # The revoked access token and the ended family are refused from now on.
        self.call("revoked_token_used", "GET", f"/courses/{record.course_id}", token=self._access)
        self.call(
            "ended_refresh_used", "POST", "/auth/refresh", body={"refresh_token": self._refresh}
        )
        self._access = None

    # --- taking the test data back -------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Delete the keys the run wrote; returns what could not be deleted."""
        problems = []
        for key in sorted(self.record.cleanup):
            try:
                self.redis.delete(key)
            except RedisError as exc:
                problems.append(f"{key}: {type(exc).__name__}: {exc}")
        return problems

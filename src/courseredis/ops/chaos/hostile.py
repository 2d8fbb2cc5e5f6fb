"""Scenario 5: hostile input, through the gateway, against the running services.

- **Property-based requests** from the services' own OpenAPI documents (schemathesis),
  valid and invalid ones, sent through the gateway as an admin; and a *stateful* run of
  the token lifecycle (login, refresh, reuse of an old refresh token, logout, use after
  logout) as a Hypothesis state machine, checking its rules at every step.
- **Key injection**: identifiers with `{`, `}`, `*`, `:`, newlines, RESP fragments, 10 KB
  strings, unicode, in every path, body field, query and header that may reach a key.
- **JWT attacks**: `alg: none`, algorithm confusion (HS256 keyed with our public key; an
  RS256 header), a stranger's key, an unknown `kid`, expired, not yet valid (`nbf` and
  `iat` in the future), revoked, tampered, missing or injected claims, over-long.
- **Oversized** headers and bodies (declared and streamed).
- **Bursts of bad logins**: from one address (the limiter must step in) and from many.

Afterwards the keyspace audit (`courseredis.ops.audit`) walks every master: no key may be
outside the schema. Figures: inputs tried, 5xx seen (target 0), tokens accepted that should
not be (target 0), keys outside the schema (target 0).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import secrets
import statistics
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt

from courseredis.ops.audit import Credentials, audit_keyspace
from courseredis.ops.chaos.live import JWT_ISSUER, LivePlatform, claims_of, live_platform
from courseredis.ops.chaos.report import ScenarioResult, describe_error, rounded
from courseredis.services import registry
from courseredis.services.tokens import KeyPair, SigningKey, issue_access_token

NAME = "hostile"
TITLE = "5. Hostile input"
HEADLINE = (
    "inputs_tried",
    "http_5xx",
    "jwt_attacks",
    "jwt_accepted",
    "keys_scanned",
    "keys_outside_schema",
    "audit_violations",
)
_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class HostileOptions:
    examples: int = 15  # schemathesis cases per operation and mode (9 operations, 2 modes)
    stateful_examples: int = 5
    stateful_steps: int = 8
    burst: int = 30  # bad logins from one address
    spread: int = 8  # bad logins from as many addresses, for an existing and a missing user

    @classmethod
    def short(cls) -> HostileOptions:
        return cls(examples=4, stateful_examples=2, stateful_steps=5, burst=20, spread=3)


@dataclass
class _Tally:
    """Every request sent: its kind and status (None: no HTTP answer)."""

    statuses: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, status: int | None, what: str) -> None:
        with self.lock:
            self.statuses[f"{kind} {status}"] += 1
            if status is not None and status >= 500:
                self.server_errors.append(f"{kind}: {status} {what}"[:200])

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


def run(workdir: Path, options: HostileOptions | None = None) -> ScenarioResult:
    options = options or HostileOptions()
    result = ScenarioResult(NAME, TITLE, headline=HEADLINE)
    started = time.monotonic()
    try:
        # Students 0-5 each play one part; 6-15 share the stateful run's logins, so that no
        # account meets its login limit (10 a minute) there.
        with live_platform(workdir, students=16, courses=30) as platform:
            _scenario(platform, options, result)
    except Exception as error:
        result.error = describe_error(error)
    result.duration_s = time.monotonic() - started
    return result


def _scenario(platform: LivePlatform, options: HostileOptions, result: ScenarioResult) -> None:
    tally = _Tally()
    figures = result.figures
    addresses = _Addresses()
    phases: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        phases[name] = rounded(now - clock, 1)
        clock = now

    with httpx.Client(base_url=platform.gateway, timeout=_TIMEOUT_S) as http:
        admin = _login(http, platform.credentials.admin, addresses)
        student = _login(http, platform.credentials.students[0], addresses)
        lap("logins")
        figures["schemathesis_cases"] = _schemathesis(
            platform, http, admin, options, tally, addresses
        )
        lap("schemathesis")
        figures["stateful_steps"] = _stateful(platform, options, tally, result)
        lap("stateful")
        figures["injection_inputs"] = _injection(http, admin, student, tally, addresses)
        lap("injection")
        accepted, tried = _jwt_attacks(platform, http, tally, addresses)
        figures["jwt_attacks"] = tried
        figures["jwt_accepted"] = len(accepted)
        lap("jwt")
        figures["oversized_inputs"] = _oversized(http, student, tally, addresses)
        lap("oversized")
        figures.update(_bad_logins(http, platform, options, tally, addresses))
        lap("bad_logins")

    figures["phases_s"] = phases
    figures["inputs_tried"] = tally.total
    figures["http_5xx"] = len(tally.server_errors)
    figures["statuses"] = dict(sorted(tally.statuses.items()))
    result.check(
        "no 5xx for any input", not tally.server_errors, "; ".join(tally.server_errors[:5])
    )
    result.check("no forged or dead token accepted", not accepted, "; ".join(accepted[:5]))
    result.check(
        "bad logins from one address are rate limited",
        figures["burst_429"] > 0 and figures["burst_401"] <= 10,
        f"{figures['burst_401']} checked, {figures['burst_429']} refused with 429",
    )

    report = audit_keyspace(
        platform.stack.nodes, Credentials(platform.stack.username, platform.stack.password)
    )
    figures["keys_scanned"] = report.scanned
    figures["keys_outside_schema"] = report.outside_schema.count
    figures["audit_violations"] = report.violation_total
    figures["audit_violation_kinds"] = dict(report.violation_count)
    figures["keys_by_pattern"] = {
        name: stats.count for name, stats in report.patterns.items() if stats.count
    }
    listed = [v.message() for v in report.violations[:5]]
    result.check("no key outside the schema", report.outside_schema.count == 0, "; ".join(listed))
    result.check("the audit finds no violation", report.ok, "; ".join(listed))
    result.check(
        "services stay up", not platform.services_gone(), f"gone: {platform.services_gone()}"
    )


class _Addresses:
    """A fresh client address per call (X-Forwarded-For), so per-IP limits count per call."""

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            self._n += 1
            n = self._n
        return f"203.0.{(n >> 8) & 255}.{n & 255}" if n < 65536 else f"198.51.100.{n & 255}"


def _login(http: httpx.Client, user: tuple[str, str], addresses: _Addresses) -> str:
    response = http.post(
        "/auth/login",
        json={"username": user[0], "password": user[1]},
        headers={"X-Forwarded-For": addresses.take()},
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def _send(
    http: httpx.Client,
    tally: _Tally,
    kind: str,
    method: str,
    url: str,
    *,
    ip: str,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response | None:
    sent = {"X-Forwarded-For": ip, **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    try:
        response = http.request(method, url, headers=sent, **kwargs)
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeEncodeError, ValueError) as error:
        # A request the server closed without an answer (an oversized header, say) or one
        # the client could not even encode: refused, never a server error.
        tally.add(kind, None, f"{method} {url[:60]}: {type(error).__name__}")
        return None
    tally.add(kind, response.status_code, f"{method} {url[:60]}: {response.text[:100]}")
    return response


# --- schemathesis -----------------------------------------------------------------------------


def _schemathesis(
    platform: LivePlatform,
    http: httpx.Client,
    admin: str,
    options: HostileOptions,
    tally: _Tally,
    addresses: _Addresses,
) -> int:
    """Every operation of auth, courses and enrollments, through the gateway, as an admin."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable

    sent = 0

    def fuzz(strategy: Any, logout: bool) -> None:
        @settings(
            max_examples=options.examples,
            deadline=None,
            derandomize=True,  # the same inputs on every run: a failure reproduces
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def call(case: Any) -> None:
            nonlocal sent
            sent += 1
            token = _throwaway_token(platform) if logout else admin
            headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": addresses.take()}
            try:
                response = case.call(base_url=platform.gateway, headers=headers, timeout=_TIMEOUT_S)
            except Exception as error:  # no answer: counted as refused
                what = f"{case.method} {case.formatted_path}: {error!r}"
                tally.add("schemathesis", None, what[:200])
                return
            tally.add(
                "schemathesis",
                response.status_code,
                f"{case.method} {case.formatted_path}: {response.text[:100]}",
            )

        # Unsatisfiable: no invalid input exists for this operation (logout has no parameter).
        with contextlib.suppress(Unsatisfiable):
            call()

    for service in (s.name for s in registry.UPSTREAMS):
        document = httpx.get(platform.url(service) + "/openapi.json", timeout=_TIMEOUT_S).json()
        schema = schemathesis.openapi.from_dict(document)
        for found in schema.get_all_operations():
            operation: Any = found.ok()  # type: ignore[union-attr]
            for mode in (
                schemathesis.GenerationMode.POSITIVE,
                schemathesis.GenerationMode.NEGATIVE,
            ):
                fuzz(
                    operation.as_strategy(generation_mode=mode), operation.path.endswith("/logout")
                )
    return sent


def _throwaway_token(platform: LivePlatform) -> str:
    """A valid admin token of its own session, for fuzzing logout without ending ours."""
    from courseredis.connection import create_client
    from courseredis.patterns.sessions import Sessions

    session_id = str(uuid.uuid4())
    with create_client(platform.admin_settings()) as client:
        Sessions(client).create(1, ("admin",), session_id=session_id)
    token, _ = issue_access_token(
        SigningKey.from_pem(platform.jwt_keys.private_pem),
        JWT_ISSUER,
        user_id=1,
        roles=("admin",),
        session_id=session_id,
    )
    return token


# --- the token lifecycle, stateful ------------------------------------------------------------


def _stateful(
    platform: LivePlatform, options: HostileOptions, tally: _Tally, result: ScenarioResult
) -> int:
    """Login, refresh, reuse of a spent refresh token, logout, use after logout, at random.

    The rules: a spent refresh token presented again (past the 10 s grace: here, always a
    token two rotations old) revokes its whole family; a logged-out token is refused; a
    live one is accepted; nothing answers 5xx.
    """
    from hypothesis import HealthCheck, settings
    from hypothesis import strategies as st
    from hypothesis.stateful import (
        Bundle,
        RuleBasedStateMachine,
        consumes,
        initialize,
        invariant,
        rule,
        run_state_machine_as_test,
    )

    addresses = _Addresses()
    accounts = itertools.cycle(platform.credentials.students[6:16])
    broken: list[str] = []
    steps = 0
    errors_before = len(tally.server_errors)

    @dataclass
    class Login:
        access: str
        refresh: str
        spent: list[str] = field(default_factory=list)
        alive: bool = True

    class TokenLifecycle(RuleBasedStateMachine):
        sessions = Bundle("sessions")

        def __init__(self) -> None:
            super().__init__()
            self.http = httpx.Client(base_url=platform.gateway, timeout=_TIMEOUT_S)

        def teardown(self) -> None:
            self.http.close()

        def _post(
            self, path: str, body: Any = None, token: str | None = None
        ) -> httpx.Response | None:
            nonlocal steps
            steps += 1
            return _send(
                self.http,
                tally,
                "stateful",
                "POST",
                path,
                ip=addresses.take(),
                token=token,
                json=body,
            )

        def _read(self, token: str) -> int | None:
            nonlocal steps
            steps += 1
            response = _send(
                self.http, tally, "stateful", "GET", "/courses/1", ip=addresses.take(), token=token
            )
            return None if response is None else response.status_code

        @initialize(target=sessions)
        def first(self) -> Login:
            return self._login()

        @rule(target=sessions)
        def login(self) -> Login:
            return self._login()

        def _login(self) -> Login:
            username, password = next(accounts)
            response = self._post("/auth/login", {"username": username, "password": password})
            assert response is not None and response.status_code == 200, response
            body = response.json()
            return Login(body["access_token"], body["refresh_token"])

        @rule(session=sessions)
        def refresh(self, session: Login) -> None:
            response = self._post("/auth/refresh", {"refresh_token": session.refresh})
            status = None if response is None else response.status_code
            if not session.alive:
                if status != 401:
                    broken.append(f"refresh of a dead family answered {status}")
                return
            if status != 200 or response is None:
                broken.append(f"refresh of a live family answered {status}")
                return
            body = response.json()
            session.spent.append(session.refresh)
            session.access, session.refresh = body["access_token"], body["refresh_token"]

        @rule(session=sessions, data=st.data())
        def reuse(self, session: Login, data: st.DataObject) -> None:
            if len(session.spent) < 2:
                return  # the previous token is within its grace: a retry, not a reuse
            old = data.draw(st.sampled_from(session.spent[:-1]))
            response = self._post("/auth/refresh", {"refresh_token": old})
            if response is None or response.status_code != 401:
                broken.append(f"a spent refresh token answered {response and response.status_code}")
            session.alive = False  # the family is revoked now, so is the session

        @rule(session=consumes(sessions))
        def logout(self, session: Login) -> None:
            response = self._post("/auth/logout", token=session.access)
            status = None if response is None else response.status_code
            if session.alive and status != 204:
                broken.append(f"logout of a live session answered {status}")
            if self._read(session.access) != 401:
                broken.append("a logged-out token was accepted")

        @rule(session=sessions)
        def use(self, session: Login) -> None:
            status = self._read(session.access)
            # 404 too is the token accepted: the fuzzing may have deleted the course.
            if session.alive and status not in (200, 404):
                broken.append(f"a live token answered {status}")
            if not session.alive and status != 401:
                broken.append(f"a token of a revoked family answered {status}")

        @invariant()
        def no_server_error(self) -> None:
            if len(tally.server_errors) > errors_before:
                broken.append(f"5xx: {tally.server_errors[-1]}")

    run_state_machine_as_test(
        TokenLifecycle,
        settings=settings(
            max_examples=options.stateful_examples,
            stateful_step_count=options.stateful_steps,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    result.check("token lifecycle rules hold at every step", not broken, "; ".join(broken[:5]))
    return steps


# --- key injection ----------------------------------------------------------------------------

INJECTION_IDS = (
    "{",
    "}",
    "{1}",
    "1{x}",
    "*",
    "1*",
    ":",
    "1:2",
    "course:1",
    "\n",
    "1\n2",
    "1\r\nFLUSHALL\r\n",
    "*1\r\n$8\r\nFLUSHALL\r\n",
    " 1",
    "1 ",
    "0",
    "-1",
    "01",
    "1.0",
    "1e3",
    "9" * 30,
    "x" * 10_240,
    "é",
    "\uff11\uff12\uff13",  # fullwidth digits: int() reads them, a key must not
    "\u202e1",
    "💥",
    "\x00",
    "../1",
    "%2e%2e",
    "1;DEL *",
)


def _injection(
    http: httpx.Client, admin: str, student: str, tally: _Tally, addresses: _Addresses
) -> int:
    course_body = {"title": "t", "description": "", "capacity": 10}
    count = 0
    for value in INJECTION_IDS:
        quoted = urllib.parse.quote(value, safe="")
        requests: list[tuple[str, str, str | None, dict[str, Any]]] = [
            ("GET", f"/courses/{quoted}", student, {}),
            ("PUT", f"/courses/{quoted}", admin, {"json": course_body}),
            ("DELETE", f"/courses/{quoted}", admin, {}),
            ("POST", f"/courses/{quoted}/enrollments", student, {}),
            ("GET", f"/courses/{quoted}/enrollments", student, {}),
            ("GET", f"/courses?page={quoted}&size={quoted}", student, {}),
            ("POST", "/auth/login", None, {"json": {"username": value, "password": value}}),
            ("POST", "/auth/refresh", None, {"json": {"refresh_token": value}}),
            ("POST", "/auth/refresh", None, {"json": {"refresh_token": f"{uuid.uuid4()}.{value}"}}),
            ("POST", "/auth/refresh", None, {"json": {"refresh_token": f"{value}.{'A' * 43}"}}),
        ]
        for method, url, token, kwargs in requests:
            _send(http, tally, "injection", method, url, ip=addresses.take(), token=token, **kwargs)
            count += 1
        # Headers: a forged client address (the gateway trusts loopback's X-Forwarded-For)
        # and a forged bearer token.
        if value.isprintable() and value.isascii() and len(value) < 1000:
            for headers in ({"X-Forwarded-For": value}, {"Authorization": f"Bearer {value}"}):
                _send(
                    http,
                    tally,
                    "injection",
                    "GET",
                    "/courses/1",
                    ip=addresses.take(),
                    token=None if "Authorization" in headers else student,
                    headers=headers,
                )
                count += 1
    return count


# --- JWT attacks ------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    """Base64url without padding, as a JWS writes each part."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made_jws(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A JWS by hand, HMAC-signed (SHA-512 for HS512, else SHA-256) or unsigned (`key`
    None): PyJWT refuses to build most of these, which is the point. The services' tests
    forge their tokens with it too."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    if key is None:
        return signing_input + "."
    digest = hashlib.sha512 if header.get("alg") == "HS512" else hashlib.sha256
    signature = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def _eddsa(signing: SigningKey, claims: dict[str, Any], kid: str | None = None) -> str:
    """Signed as auth signs (EdDSA), with `signing`'s key, under `kid` (default: its own)."""
    return jwt.encode(
        claims, signing.private_key, algorithm="EdDSA", headers={"kid": kid or signing.kid}
    )


def _jwt_attacks(
    platform: LivePlatform, http: httpx.Client, tally: _Tally, addresses: _Addresses
) -> tuple[list[str], int]:
    """Each forged or dead token against a route that needs one; none may be accepted."""
    # The public key is public: the algorithm-confusion attacks use it as an HMAC secret.
    public = platform.jwt_keys.public_pem.encode()
    signing = SigningKey.from_pem(platform.jwt_keys.private_pem)
    stranger = SigningKey.from_pem(KeyPair.generate().private_pem)
    live = _login(http, platform.credentials.students[2], addresses)
    good = claims_of(live)
    now = int(time.time())
    hs256 = {"alg": "HS256", "typ": "JWT", "kid": signing.kid}

    def claims(**changes: Any) -> dict[str, Any]:
        out = {**good, **changes}
        return {k: v for k, v in out.items() if v is not _DROP}

    revoked = _login(http, platform.credentials.students[3], addresses)
    _send(http, tally, "jwt", "POST", "/auth/logout", ip=addresses.take(), token=revoked)
    header, payload, signature = live.split(".")
    tampered = b64url(json.dumps({**good, "sub": "1", "roles": ["admin"]}).encode())
    none_header = b64url(json.dumps({"alg": "NONE"}).encode())
    rs256_header = b64url(json.dumps({"alg": "RS256"}).encode())
    attacks: dict[str, str] = {
        "alg none": hand_made_jws({"alg": "none", "typ": "JWT"}, good, None),
        "alg None": hand_made_jws({"alg": "None"}, good, None),
        "alg NONE, real signature": f"{none_header}.{payload}.{signature}",
        "RS256 header, forged signature": (
            f"{rs256_header}.{payload}.{b64url(secrets.token_bytes(256))}"
        ),
        "RS256 header, HMAC with the public key": hand_made_jws({"alg": "RS256"}, good, public),
        "HS256 keyed with the public key (algorithm confusion)": hand_made_jws(hs256, good, public),
        "HS512 keyed with the public key": hand_made_jws({"alg": "HS512"}, good, public),
        "HS256 with a random key": hand_made_jws(hs256, good, secrets.token_bytes(32)),
        "empty key": hand_made_jws(hs256, good, b""),
        "EdDSA, a stranger's key and kid": _eddsa(stranger, good),
        "EdDSA, a stranger's key under our kid": _eddsa(stranger, good, signing.kid),
        "EdDSA, our key under an unknown kid": _eddsa(signing, good, "not-a-key-we-hold"),
        "expired": _eddsa(signing, claims(iat=now - 3600, exp=now - 60)),
        "not yet valid (nbf)": _eddsa(signing, claims(nbf=now + 600)),
        "not yet valid (iat)": _eddsa(signing, claims(iat=now + 600, exp=now + 1200)),
        "revoked (logged out)": revoked,
        "tampered claims, old signature": f"{header}.{tampered}.{signature}",
        "no signature": f"{header}.{payload}.",
        "no jti": _eddsa(signing, claims(jti=_DROP)),
        "no sid": _eddsa(signing, claims(sid=_DROP)),
        "no exp": _eddsa(signing, claims(exp=_DROP)),
        "wrong issuer": _eddsa(signing, claims(iss="someone-else")),
        "jti injection": _eddsa(signing, claims(jti="*")),
        "sid injection": _eddsa(signing, claims(sid="{x}:*")),
        "sub injection": _eddsa(signing, claims(sub="1\r\nFLUSHALL")),
        "sub zero": _eddsa(signing, claims(sub="0")),
        "role injection": _eddsa(signing, claims(roles=["admin", "x y"])),
        "over-long": _eddsa(signing, claims(pad="x" * 5000)),
        "unknown session": _eddsa(signing, claims(sid=str(uuid.uuid4()), jti=str(uuid.uuid4()))),
        "garbage": "not.a.jwt",
        "two dots only": "..",
    }
    accepted = []
    for name, token in attacks.items():
        for url in ("/courses/1", "/courses/1/enrollments"):
            response = _send(http, tally, "jwt", "GET", url, ip=addresses.take(), token=token)
            if response is not None and response.status_code != 401:
                accepted.append(f"{name} on {url}: {response.status_code}")
    # Straight to a service too: each decodes the token itself.
    with httpx.Client(base_url=platform.url("courses"), timeout=_TIMEOUT_S) as direct:
        for name, token in attacks.items():
            if name in ("revoked (logged out)", "unknown session"):
                continue  # revocation and sessions are the gateway's to check
            response = _send(
                direct, tally, "jwt", "GET", "/courses/1", ip=addresses.take(), token=token
            )
            if response is not None and response.status_code != 401:
                accepted.append(f"{name} on the courses service: {response.status_code}")
    control = _send(http, tally, "jwt", "GET", "/courses/1", ip=addresses.take(), token=live)
    if control is None or control.status_code not in (200, 404):  # the fuzzing deletes courses
        accepted.append(f"(control: the live token answered {control and control.status_code})")
    return accepted, len(attacks) * 3


class _Dropped:
    pass


_DROP: Any = _Dropped()


# --- oversized --------------------------------------------------------------------------------


def _oversized(http: httpx.Client, student: str, tally: _Tally, addresses: _Addresses) -> int:
    login_body = {"username": "student1", "password": "x" * 10}
    big_json = json.dumps({**login_body, "padding": "x" * 1_000_000}).encode()

    def streamed() -> Iterator[bytes]:
        for _ in range(64):
            yield b"x" * 16_384

    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/auth/login", {"headers": {"X-Big": "a" * 65_536}, "json": login_body}),
        ("GET", "/courses/1", {"headers": {f"X-H{i}": "v" * 100 for i in range(300)}}),
        ("GET", "/courses/1", {"headers": {"Cookie": "c=" + "x" * 100_000}}),
        (
            "POST",
            "/auth/login",
            {"content": big_json, "headers": {"Content-Type": "application/json"}},
        ),
        ("POST", "/auth/login", {"json": {**login_body, "padding": "x" * 20_000}}),
        ("POST", "/auth/refresh", {"json": {"refresh_token": "x" * 100_000}}),
        (
            "POST",
            "/auth/login",
            {"content": streamed(), "headers": {"Content-Type": "application/json"}},
        ),
        ("PUT", "/courses/1", {"json": {"title": "t" * 50_000, "description": "", "capacity": 1}}),
        ("GET", "/courses/" + "1" * 20_000, {}),
    ]
    for method, url, kwargs in cases:
        _send(http, tally, "oversized", method, url, ip=addresses.take(), token=student, **kwargs)
    return len(cases)


# --- bursts of bad logins ---------------------------------------------------------------------


def _bad_logins(
    http: httpx.Client,
    platform: LivePlatform,
    options: HostileOptions,
    tally: _Tally,
    addresses: _Addresses,
) -> dict[str, Any]:
    user = platform.credentials.students[4][0]
    one_ip = addresses.take()
    statuses: Counter[int | None] = Counter()

    def attempt(username: str, ip: str) -> tuple[int | None, float]:
        began = time.perf_counter()
        response = _send(
            http,
            tally,
            "bad-login",
            "POST",
            "/auth/login",
            ip=ip,
            json={"username": username, "password": "wrong-" + secrets.token_hex(4)},
        )
        return (None if response is None else response.status_code), time.perf_counter() - began

    async def burst() -> list[tuple[int | None, float]]:
        # Ten at a time from one address: the limiter (10 a minute) must refuse the rest.
        out: list[tuple[int | None, float]] = []
        for start in range(0, options.burst, 10):
            batch = [
                asyncio.to_thread(attempt, user, one_ip)
                for _ in range(start, min(start + 10, options.burst))
            ]
            out += await asyncio.gather(*batch)
        return out

    for status, _ in asyncio.run(burst()):
        statuses[status] += 1
    # Another account than the burst's: that one has met its own limit (10 a minute).
    spread_user = platform.credentials.students[5][0]
    existing = [attempt(spread_user, addresses.take()) for _ in range(options.spread)]
    missing = [attempt(f"nobody{i}", addresses.take()) for i in range(options.spread)]

    def median_ms(samples: list[tuple[int | None, float]]) -> float:
        return rounded(statistics.median(s for _, s in samples) * 1000, 1)

    return {
        "burst_401": statuses[401],
        "burst_429": statuses[429],
        "spread_logins_401": sum(1 for s, _ in existing + missing if s == 401),
        # A login for a user that exists checks the password (argon2, ~0.1 s); one for a
        # user that does not exist answers at once: the difference tells who has an account.
        "bad_login_existing_user_ms": median_ms(existing),
        "bad_login_missing_user_ms": median_ms(missing),
    }

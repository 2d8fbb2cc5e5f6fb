"""Scenario 2: every Redis node stopped for 10 s, then started again; the services keep running.

A prober sends, several times a second, one request of each kind whose answer the failure
policy fixes, and checks each answer:

| request | Redis up | Redis down: the policy |
|---|---|---|
| authenticated read, gateway | 200 | 503: the blacklist fails closed |
| login, gateway | 200 | 503 "rate limiter": the login limiter fails closed |
| refresh (unknown token), gateway | 401 | 503 from auth: the refresh limiter fails open |
| read, courses service | 200 | 200 from the database (`X-Cache: miss`) |
| enroll, enrollments service | 201 / 409 | 503: no lock, no enrollment |
| `/healthz` of every service | 200 | 200: the processes stay up |

No answer is ever a 500. The nodes are stopped (`SHUTDOWN SAVE`) and started with the
stack's own restart code path (`restart_stack`, on their own addresses: the services'
configuration names them); the cluster comes back from its files. Figures: how long after
Redis answers again (cluster healthy) every request kind succeeds again; and, for
information, whether a session from before the outage is still valid (scenario 3 judges
what data a restart keeps).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from courseredis.local import restart_stack, stop_stack
from courseredis.ops.chaos.live import LivePlatform, live_platform
from courseredis.ops.chaos.report import ScenarioResult, describe_error, rounded
from courseredis.ops.chaos.traffic import Addresses, Gateway, Recorder, Session, login

NAME = "outage"
TITLE = "2. Redis down 10 s, then back"
HEADLINE = (
    "outage_s",
    "probes_during_outage",
    "policy_violations",
    "http_500",
    "full_service_after_s",
    "session_survived",
)


@dataclass(frozen=True)
class OutageOptions:
    outage_s: float = 10.0
    probe_pause_s: float = 0.2
    recovery_timeout_s: float = 30.0
    # Full service must be back this soon after the cluster is healthy again.
    max_recovery_s: float = 5.0

    @classmethod
    def short(cls) -> OutageOptions:
        return cls(outage_s=3.0)


@dataclass
class _Round:
    """One probe round: each request kind's answer (status, detail, X-Cache)."""

    started: float
    ended: float = 0.0
    answers: dict[str, tuple[int | None, str, str]] = field(default_factory=dict)


_KINDS = ("read", "login", "refresh", "cache", "enroll", "healthz")


def run(workdir: Path, options: OutageOptions | None = None) -> ScenarioResult:
    options = options or OutageOptions()
    result = ScenarioResult(NAME, TITLE, headline=HEADLINE)
    started = time.monotonic()
    try:
        with live_platform(workdir, students=4) as platform:
            asyncio.run(_scenario(platform, options, result))
    except Exception as error:
        result.error = describe_error(error)
    result.duration_s = time.monotonic() - started
    return result


async def _scenario(platform: LivePlatform, options: OutageOptions, result: ScenarioResult) -> None:
    recorder = Recorder()
    gateway = Gateway(platform.gateway, recorder)
    direct = {
        name: httpx.AsyncClient(base_url=platform.url(name), timeout=10)
        for name in ("courses", "enrollments")  # the two `direct_call`s of a probe
    }
    addresses = Addresses()
    try:
        student, password = platform.credentials.students[0]
        kept = await login(gateway, student, password, addresses.take())
        prober_session = await login(gateway, *platform.credentials.students[1], addresses.take())
        if kept is None or prober_session is None:
            result.check("logged in before the outage", False, "login failed")
            return
        rounds: list[_Round] = []
        before = await _probe(platform, gateway, direct, prober_session, addresses, 1)
        result.check(
            "every request succeeds before the outage",
            _all_up(before),
            str(before.answers),
        )

        stop_began = time.monotonic()
        await asyncio.to_thread(stop_stack, platform.stack, save=True)
        down_since = time.monotonic()
        course = 2
        outage_over = asyncio.Event()
        down_session: Session = prober_session

        async def probe_while_down() -> None:
            nonlocal course
            while not outage_over.is_set():
                course += 1
                rounds.append(
                    await _probe(platform, gateway, direct, down_session, addresses, course)
                )
                await asyncio.sleep(options.probe_pause_s)

        prober = asyncio.create_task(probe_while_down())
        await asyncio.sleep(options.outage_s)
        outage_over.set()
        restart_began = time.monotonic()
        platform.stack = await asyncio.to_thread(
            restart_stack, platform.stack, platform.topology, hosts=platform.stack.hosts
        )
        back = time.monotonic()
        await asyncio.wait_for(prober, timeout=30)

        # Full service: one round in which every kind of request succeeds, then a user's
        # whole journey (login, read, enroll, refresh, logout).
        recovered: float | None = None
        after: list[_Round] = []
        relogins = 0
        while time.monotonic() - back < options.recovery_timeout_s:
            course += 1
            probe = await _probe(platform, gateway, direct, prober_session, addresses, course)
            after.append(probe)
            if _all_up(probe):
                recovered = probe.ended
                break
            if probe.answers["read"][0] == 401:  # its session did not survive: log in again
                relogins += 1
                again = await login(gateway, *platform.credentials.students[1], addresses.take())
                prober_session = again or prober_session
                continue
            await asyncio.sleep(options.probe_pause_s)
        result.figures["prober_logged_in_again"] = relogins

        during = [r for r in rounds if r.started >= down_since and r.ended <= restart_began]
        violations = Counter(
            f"{kind}: {answer}"
            for r in during
            for kind, answer in r.answers.items()
            if not _policy_kept(kind, answer)
        )
        every = [before, *rounds, *after]
        http_500 = sum(1 for r in every for a in r.answers.values() if a[0] == 500)
        http_500 += sum(1 for s in recorder.samples if s.status == 500)
        figures = result.figures
        figures["outage_s"] = rounded(restart_began - down_since, 1)
        figures["stop_took_s"] = rounded(down_since - stop_began, 2)
        figures["restart_took_s"] = rounded(back - restart_began, 2)
        figures["probes_during_outage"] = len(during) * len(_KINDS)
        figures["policy_violations"] = sum(violations.values())
        figures["violations"] = dict(violations.most_common(10))
        figures["answers_during_outage"] = {
            kind: dict(Counter(_label(r.answers[kind]) for r in during)) for kind in _KINDS
        }
        figures["http_500"] = http_500
        figures["full_service_after_s"] = rounded(recovered - back, 2) if recovered else None
        result.check("no 500 at any time", http_500 == 0, f"{http_500} answers 500")
        result.check("probes ran during the outage", len(during) >= 1, f"{len(during)} rounds")
        result.check(
            "each pattern follows its policy while Redis is down",
            not violations,
            "; ".join(f"{k} x{n}" for k, n in violations.most_common(5)),
        )
        result.check(
            f"full service within {options.max_recovery_s:g} s of Redis returning",
            recovered is not None and recovered - back <= options.max_recovery_s,
            f"{figures['full_service_after_s']} s; last: {after[-1].answers if after else None}",
        )
        journey = await _journey(gateway, platform, addresses)
        result.check("a whole user journey works after", not journey, "; ".join(journey))
        # Not a check here: whether the data came back is scenario 3's (restart) to judge.
        survived = await gateway.request(
            "check", "GET", "/courses/1", ip=addresses.take(), token=kept.access
        )
        figures["session_survived"] = survived is not None and survived.status_code == 200
        gone = platform.services_gone()
        result.check("no service restarted", not gone, f"gone: {gone}")
    finally:
        await gateway.aclose()
        for client in direct.values():
            await client.aclose()


async def _probe(
    platform: LivePlatform,
    gateway: Gateway,
    direct: dict[str, httpx.AsyncClient],
    session: Session,
    addresses: Addresses,
    course: int,
) -> _Round:
    """One request of each kind, at once; each answer as (status, detail, X-Cache)."""
    probe = _Round(time.monotonic())
    student, password = platform.credentials.students[2]
    fake_refresh = f"{uuid.uuid4()}.{'A' * 43}"  # well formed, unknown: never rotates anything
    ip = addresses.take()

    async def gateway_call(method: str, path: str, **kwargs: object) -> tuple[int | None, str, str]:
        response = await gateway.request("probe", method, path, ip=ip, **kwargs)  # type: ignore[arg-type]
        return _answer(response)

    async def direct_call(service: str, method: str, path: str) -> tuple[int | None, str, str]:
        try:
            response = await direct[service].request(
                method, path, headers={"Authorization": f"Bearer {session.access}"}
            )
        except httpx.HTTPError as error:
            return None, type(error).__name__, ""
        return _answer(response)

    async def health() -> tuple[int | None, str, str]:
        codes = []
        async with httpx.AsyncClient(timeout=5) as client:
            for service in platform.services:
                try:
                    codes.append((await client.get(service.url + "/healthz")).status_code)
                except httpx.HTTPError:
                    codes.append(0)
        worst = max(codes, key=lambda c: (c != 200, c))
        return worst, "", ""

    kinds = await asyncio.gather(
        gateway_call("GET", "/courses/1", token=session.access),
        gateway_call("POST", "/auth/login", json={"username": student, "password": password}),
        gateway_call("POST", "/auth/refresh", json={"refresh_token": fake_refresh}),
        direct_call("courses", "GET", f"/courses/{1 + course % 40}"),
        direct_call("enrollments", "POST", f"/courses/{1 + course % 40}/enrollments"),
        health(),
    )
    probe.answers = dict(zip(_KINDS, kinds, strict=True))
    probe.ended = time.monotonic()
    return probe


def _answer(response: httpx.Response | None) -> tuple[int | None, str, str]:
    if response is None:
        return None, "no answer", ""
    detail = ""
    if response.status_code >= 400:
        try:
            detail = str(response.json().get("detail", ""))[:80]
        except ValueError:
            detail = response.text[:80]
    return response.status_code, detail, response.headers.get("X-Cache", "")


def _label(answer: tuple[int | None, str, str]) -> str:
    status, detail, cache = answer
    return " ".join(str(x) for x in (status, cache or None, detail or None) if x is not None)


def _all_up(probe: _Round) -> bool:
    a = probe.answers
    return (
        a["read"][0] == 200
        and a["login"][0] == 200
        and a["refresh"][0] == 401
        and a["cache"][0] == 200
        and a["enroll"][0] in (201, 409)
        and a["healthz"][0] == 200
    )


def _policy_kept(kind: str, answer: tuple[int | None, str, str]) -> bool:
    status, detail, cache = answer
    if kind == "read":  # the blacklist fails closed
        return status == 503 and "revocation" in detail
    if kind == "login":  # the login limiter fails closed
        return status == 503 and "rate limiter" in detail
    if kind == "refresh":  # the refresh limiter fails open: auth itself answers 503
        return status == 503 and "rate limiter" not in detail
    if kind == "cache":  # the cache steps aside: served from the database
        return status == 200 and cache == "miss"
    if kind == "enroll":  # no lock, no enrollment
        return status == 503
    return status == 200  # healthz


async def _journey(gateway: Gateway, platform: LivePlatform, addresses: Addresses) -> list[str]:
    problems: list[str] = []
    ip = addresses.take()
    session = await login(gateway, *platform.credentials.students[3], ip)
    if session is None:
        return ["login failed"]
    steps = (
        ("read", "GET", "/courses/5", None, {200}),
        ("enroll", "POST", "/courses/5/enrollments", None, {201, 409}),
        ("refresh", "POST", "/auth/refresh", {"refresh_token": session.refresh}, {200}),
    )
    for name, method, path, body, good in steps:
        response = await gateway.request(
            "check", method, path, ip=ip, token=session.access, json=body
        )
        if response is None or response.status_code not in good:
            problems.append(f"{name} answered {response and response.status_code}")
        elif name == "refresh":
            session = Session(response.json()["access_token"], session.refresh, 0, 0.0)
    out = await gateway.request("check", "POST", "/auth/logout", ip=ip, token=session.access)
    if out is None or out.status_code != 204:
        problems.append(f"logout answered {out and out.status_code}")
    return problems

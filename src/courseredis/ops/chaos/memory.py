"""Scenario 4: a Redis with a small `maxmemory`, filled to the brim with cache entries.

The node runs the project's memory policy (`noeviction`, see `redis_config`): a full Redis
refuses writes rather than evict, because any eviction policy could drop a revocation.
Before the fill, users log in (sessions, refresh tokens) and some log out (revocations);
then the courses service's ACL user fills the cache through the cache pattern until Redis
refuses. While it is full:

- every revocation, refresh token and session is still there (and `evicted_keys` is 0);
- a write fails at once with Redis's OOM error, and a request that needs a write answers
  503 with Retry-After; what only reads (a cached course, the course list) still answers;
  no 500, no service goes down;
- a logout cannot store its revocation (503), but it deletes the session, and the gateway
  then refuses the token anyway ("session ended").

Then memory is given back (the cache entries are deleted, as their 5 m TTL would) and
everything works again, without restarting anything.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.exceptions

from courseredis import keys
from courseredis.connection import open_async_client
from courseredis.environments import load_environment
from courseredis.ops.chaos.live import LivePlatform, claims_of, live_platform
from courseredis.ops.chaos.report import ScenarioResult, describe_error, rounded
from courseredis.ops.chaos.traffic import Addresses, Gateway, Recorder, Session, login, refresh
from courseredis.patterns.cache import AsyncCourseCache

NAME = "memory"
TITLE = "4. Memory pressure (noeviction)"
HEADLINE = (
    "maxmemory_mb",
    "cache_entries_written",
    "evicted_keys",
    "security_keys_kept",
    "requests_while_full",
    "http_500",
    "token_refused_after_failed_logout",
)
_MB = 1024 * 1024


@dataclass(frozen=True)
class MemoryOptions:
    maxmemory: str = "16mb"
    entry_bytes: int = 10_000
    sessions: int = 10
    logouts: int = 5
    rounds_while_full: int = 3

    @classmethod
    def short(cls) -> MemoryOptions:
        return cls(maxmemory="8mb", sessions=6, logouts=3, rounds_while_full=1)


def run(workdir: Path, options: MemoryOptions | None = None) -> ScenarioResult:
    options = options or MemoryOptions()
    result = ScenarioResult(NAME, TITLE, headline=HEADLINE)
    started = time.monotonic()
    topology = load_environment("dev").redis.model_copy(update={"maxmemory": options.maxmemory})
    try:
        with live_platform(workdir, env="dev", topology=topology, students=4) as platform:
            asyncio.run(_scenario(platform, options, result))
    except Exception as error:
        result.error = describe_error(error)
    result.duration_s = time.monotonic() - started
    return result


async def _scenario(platform: LivePlatform, options: MemoryOptions, result: ScenarioResult) -> None:
    figures = result.figures
    recorder = Recorder()
    gateway = Gateway(platform.gateway, recorder)
    addresses = Addresses()
    admin = await open_async_client(platform.admin_settings())
    courses = await open_async_client(platform.service_settings("courses"))
    try:
        student = platform.credentials.students[0]
        live = [
            s
            for s in [
                await login(gateway, *student, addresses.take()) for _ in range(options.sessions)
            ]
            if s
        ]
        for session in live[: options.logouts]:
            await gateway.request(
                "logout", "POST", "/auth/logout", ip=addresses.take(), token=session.access
            )
        logged_out, live = live[: options.logouts], live[options.logouts :]
        security = (
            [keys.jwt_revoked(claims_of(s.access)["jti"]) for s in logged_out]
            + [keys.session(claims_of(s.access)["sid"]) for s in live]
            + [keys.refresh_token(claims_of(s.access)["sid"]) for s in live]
        )
        present = sum([int(await admin.exists(k)) for k in security])
        result.check(
            "security state written", present == len(security), f"{present}/{len(security)}"
        )
        # Courses 1-3 are read once: cached before the fill, served from the cache when full.
        for course in (1, 2, 3):
            await gateway.request(
                "read", "GET", f"/courses/{course}", ip=addresses.take(), token=live[0].access
            )

        written, refusal = await _fill(courses, options)
        memory = await admin.info("memory")
        stats = await admin.info("stats")
        figures["maxmemory_mb"] = rounded(int(memory["maxmemory"]) / _MB, 1)
        figures["used_memory_mb"] = rounded(int(memory["used_memory"]) / _MB, 1)
        figures["maxmemory_policy"] = memory["maxmemory_policy"]
        figures["cache_entries_written"] = written
        figures["evicted_keys"] = int(stats["evicted_keys"])
        figures["refusal"] = refusal
        result.check("Redis filled until it refused a write", bool(refusal), f"{written} entries")
        result.check(
            "a full Redis refuses with a clear OOM error",
            refusal.startswith("OutOfMemoryError") and "maxmemory" in refusal,
            refusal,
        )

        while_full = await _requests_while_full(
            platform, gateway, addresses, live, options.rounds_while_full
        )
        figures["requests_while_full"] = while_full["statuses"]
        figures["answers_while_full"] = while_full["answers"]

        kept = sum([int(await admin.exists(k)) for k in security])
        stats = await admin.info("stats")
        figures["evicted_keys"] = int(stats["evicted_keys"])
        figures["security_keys_kept"] = f"{kept}/{len(security)}"
        result.check(
            "nothing evicted",
            figures["evicted_keys"] == 0,
            f"evicted_keys {figures['evicted_keys']}",
        )
        result.check(
            "revocations, refresh tokens and sessions all kept",
            kept == len(security),
            figures["security_keys_kept"],
        )

        # A logout while full: its revocation cannot be stored, its session is deleted.
        victim = live[-1]
        out = await gateway.request(
            "logout", "POST", "/auth/logout", ip=addresses.take(), token=victim.access
        )
        after = await gateway.request(
            "read", "GET", "/courses/1", ip=addresses.take(), token=victim.access
        )
        figures["logout_while_full"] = out.status_code if out is not None else None
        figures["token_refused_after_failed_logout"] = (
            after is not None and after.status_code == 401
        )
        result.check(
            "a logout refused for want of memory still ends the session",
            figures["token_refused_after_failed_logout"],
            f"logout {figures['logout_while_full']}, then the token: {after and after.status_code}",
        )

        http_500 = sum(1 for s in recorder.samples if s.status == 500)
        figures["http_500"] = http_500
        unclean = [
            s for s in recorder.samples if s.status is None or (s.status >= 500 and s.status != 503)
        ]
        result.check("no 500", http_500 == 0, f"{http_500} answers 500")
        result.check(
            "every failure is a clean 503",
            not unclean,
            "; ".join(f"{s.op} {s.status} {s.detail}" for s in unclean[:5]),
        )
        gone = platform.services_gone()
        result.check("services stay up", not gone, f"gone: {gone}")

        began = time.monotonic()
        freed = await _free(admin)
        figures["cache_entries_freed"] = freed
        journey = await _journey(gateway, platform, addresses)
        figures["recovered_in_s"] = rounded(time.monotonic() - began, 2)
        result.check("full service once memory is freed", not journey, "; ".join(journey))
    finally:
        await gateway.aclose()
        await admin.aclose()
        await courses.aclose()


async def _fill(client: Any, options: MemoryOptions) -> tuple[int, str]:
    """Cache entries through the cache pattern until Redis refuses; (written, refusal)."""
    cache = AsyncCourseCache(client)
    blob = "x" * options.entry_bytes
    limit = 4 * _bytes(options.maxmemory) // options.entry_bytes + 100  # bounded, whatever
    written = 0
    for i in range(limit):
        course_id = 100_000 + i

        async def load(course_id: int = course_id) -> dict[str, Any]:
            return {"id": course_id, "title": f"filler {course_id}", "description": blob}

        try:
            await cache.get_or_load(keys.course(course_id), load)
        except redis.exceptions.RedisError as error:
            return written, f"{type(error).__name__}: {error}"
        written += 1
    # The pattern swallowed the refusals (it serves the loaded value uncached): ask Redis.
    try:
        await client.set(keys.course(99_999), blob, px=60_000)
    except redis.exceptions.RedisError as error:
        return written, f"{type(error).__name__}: {error}"
    return written, ""


def _bytes(size: str) -> int:
    units = {"kb": 1024, "mb": _MB, "gb": 1024 * _MB, "b": 1}
    for suffix, factor in units.items():
        if size.endswith(suffix):
            return int(size[: -len(suffix)]) * factor
    return int(size)


async def _requests_while_full(
    platform: LivePlatform,
    gateway: Gateway,
    addresses: Addresses,
    live: list[Session],
    rounds: int,
) -> dict[str, Any]:
    answers: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    student, password = platform.credentials.students[1]
    token = live[0]
    for i in range(rounds):
        ip = addresses.take()
        calls = (
            (
                "cached read",
                gateway.request("read", "GET", "/courses/1", ip=ip, token=token.access),
            ),
            (
                "uncached read",
                gateway.request("read", "GET", f"/courses/{10 + i}", ip=ip, token=token.access),
            ),
            ("list", gateway.request("list", "GET", "/courses", ip=ip, token=token.access)),
            (
                "login",
                gateway.request(
                    "login",
                    "POST",
                    "/auth/login",
                    ip=ip,
                    json={"username": student, "password": password},
                ),
            ),
            ("refresh", refresh(gateway, token.refresh, ip)),
            (
                "enroll",
                gateway.request(
                    "enroll", "POST", f"/courses/{20 + i}/enrollments", ip=ip, token=token.access
                ),
            ),
        )
        for name, call in calls:
            response = await call
            status = "none" if response is None else str(response.status_code)
            statuses[status] += 1
            detail = ""
            if response is not None and response.status_code >= 400:
                try:
                    detail = str(response.json().get("detail", ""))[:60]
                except ValueError:
                    detail = response.text[:60]
            answers[f"{name}: {status} {detail}".strip()] += 1
    return {"statuses": dict(sorted(statuses.items())), "answers": dict(sorted(answers.items()))}


async def _free(admin: Any) -> int:
    """Delete the filler entries, as their TTL would in five minutes."""
    freed = 0
    async for key in admin.scan_iter(match="course:*", count=1000):
        match = keys.classify(key)
        if match is not None and int(match.ids["id"]) >= 99_999:
            freed += await admin.unlink(key)
    return freed


async def _journey(gateway: Gateway, platform: LivePlatform, addresses: Addresses) -> list[str]:
    ip = addresses.take()
    session = await login(gateway, *platform.credentials.students[2], ip)
    if session is None:
        return ["login failed"]
    problems = []
    for name, method, path, good in (
        ("read", "GET", "/courses/7", {200}),
        ("enroll", "POST", "/courses/7/enrollments", {201, 409}),
        ("logout", "POST", "/auth/logout", {204}),
    ):
        response = await gateway.request(name, method, path, ip=ip, token=session.access)
        if response is None or response.status_code not in good:
            problems.append(f"{name} answered {response and response.status_code}")
    return problems

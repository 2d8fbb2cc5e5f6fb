"""Password checks: a bounded number at once, so a burst of logins queues or is refused
(503 with Retry-After), never takes more memory than the budget (64 MiB per check)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace

import pytest

from courseredis.services.auth import AuthState, PasswordCheckSettings
from courseredis.services.passwords import (
    ARGON2_MEMORY_MIB,
    PasswordChecks,
    PasswordChecksBusy,
    concurrency_for,
)


def test_the_default_concurrency_fits_the_memory_budget():
    assert ARGON2_MEMORY_MIB == 64
    assert concurrency_for(256) == 4
    assert concurrency_for(100) == 1
    assert concurrency_for(10) == 1  # one check at a time still lets users log in
    default = PasswordCheckSettings().checks()
    try:
        assert default.concurrency * ARGON2_MEMORY_MIB <= 256
    finally:
        default.close()


def test_the_concurrency_and_queue_are_settings(monkeypatch):
    monkeypatch.setenv("PASSWORD_CHECK_MEMORY_BUDGET_MIB", "128")
    monkeypatch.setenv("PASSWORD_CHECK_QUEUE", "3")
    checks = PasswordCheckSettings().checks()
    try:
        assert (checks.concurrency, checks.queue) == (2, 3)
    finally:
        checks.close()


async def test_beyond_the_running_and_the_queued_a_check_is_refused_at_once():
    checks = PasswordChecks(concurrency=2, queue=1)
    release = threading.Event()
    started = threading.Semaphore(0)

    def slow_check() -> bool:
        started.release()
        return release.wait(timeout=30)

    admitted = [asyncio.create_task(checks.run(slow_check)) for _ in range(3)]
    await asyncio.to_thread(started.acquire)
    await asyncio.to_thread(started.acquire)  # two computing, the third waiting its turn
    with pytest.raises(PasswordChecksBusy):
        await checks.run(slow_check)
    release.set()
    assert await asyncio.gather(*admitted) == [True, True, True]
    assert checks.peak_running == 2
    assert await checks.verify("not a hash", "pw") is False  # room again
    checks.close()


async def _held(checks: PasswordChecks) -> tuple[threading.Event, list[asyncio.Task[bool]]]:
    """Every slot and queue place of `checks` taken by a check that waits for the event."""
    release = threading.Event()
    started = threading.Semaphore(0)

    def slow_check() -> bool:
        started.release()
        return release.wait(timeout=30)

    held = [
        asyncio.create_task(checks.run(slow_check))
        for _ in range(checks.concurrency + checks.queue)
    ]
    for _ in range(checks.concurrency):
        await asyncio.to_thread(started.acquire)
    return release, held


async def test_a_login_beyond_the_queue_gets_503_with_retry_after(platform, credentials):
    runtime = platform.runtime("auth")
    checks = PasswordChecks(concurrency=1, queue=1)
    runtime.attach(replace(runtime.part(AuthState), passwords=checks))
    release, held = await _held(checks)
    username, password = credentials.students[0]
    body = {"username": username, "password": password}
    refused = await platform.direct["auth"].post("/auth/login", json=body)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert "password_checks_busy_total 1.0" in runtime.metrics.render().decode()
    release.set()
    await asyncio.gather(*held)
    assert (await platform.direct["auth"].post("/auth/login", json=body)).status_code == 200
    checks.close()


async def test_a_burst_of_logins_runs_no_more_checks_at_once_than_allowed(platform, credentials):
    """Straight to auth, as a pod reachable past the gateway's limits would get it."""
    runtime = platform.runtime("auth")
    checks = PasswordChecks(concurrency=2, queue=2)
    runtime.attach(replace(runtime.part(AuthState), passwords=checks))
    username, password = credentials.students[1]
    responses = await asyncio.gather(
        *(
            platform.direct["auth"].post(
                "/auth/login", json={"username": username, "password": f"{password}-{i % 2}"}
            )
            for i in range(24)
        )
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {401, 503}, statuses
    assert all(r.headers["Retry-After"] == "1" for r in responses if r.status_code == 503)
    assert checks.peak_running <= 2
    checks.close()

"""Health, readiness and metrics of every service."""

from __future__ import annotations

from tests.services.flows import login


async def test_every_service_is_healthy_and_ready(platform):
    for name, client in platform.direct.items():
        assert (await client.get("/healthz")).json() == {"status": "ok"}, name
        assert (await client.get("/readyz")).status_code == 200, name


async def test_metrics_count_the_patterns(platform, credentials):
    student = await login(platform.gateway, *credentials.students[0])
    await platform.gateway.get("/courses/8", headers=student.headers)
    await platform.gateway.get("/courses/8", headers=student.headers)
    courses = (await platform.direct["courses"].get("/metrics")).text
    assert 'cache_requests_total{result="hit"}' in courses
    gateway = (await platform.direct["gateway"].get("/metrics")).text
    assert (
        'ratelimit_decisions_total{result="allowed",route="courses.read",scope="user"}' in gateway
    )

"""Health, readiness and metrics of every service, and what the public surface shows."""

from __future__ import annotations

import logging

import httpx
import pytest

from courseredis.services import registry
from courseredis.services.main import build
from courseredis.settings import RedisSettings
from tests.services.flows import login
from tests.services.platform import service_settings


async def test_every_service_is_healthy_and_ready(platform):
    for name, client in platform.direct.items():
        assert (await client.get("/healthz")).json() == {"status": "ok"}, name
        assert (await client.get("/readyz")).status_code == 200, name


async def scrape(platform, service: str) -> str:
    """The service's metrics from their own port, as Prometheus reaches them."""
    server = platform.apps[service].state.metrics.serve("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{server.server_port}/metrics")
        assert response.status_code == 200
        return response.text
    finally:
        server.shutdown()
        server.server_close()


async def test_metrics_count_the_patterns_on_their_own_port(platform, credentials):
    student = await login(platform.gateway, *credentials.students[0])
    await platform.gateway.get("/courses/8", headers=student.headers)
    await platform.gateway.get("/courses/8", headers=student.headers)
    assert 'cache_requests_total{result="hit"}' in await scrape(platform, "courses")
    assert (
        'ratelimit_decisions_total{result="allowed",route="courses.read",scope="user"}'
        in await scrape(platform, "gateway")
    )


@pytest.mark.parametrize("path", ["/metrics", "/docs", "/redoc", "/openapi.json"])
async def test_the_service_ports_publish_no_metrics_and_no_documents(platform, path):
    for name, client in platform.direct.items():
        assert (await client.get(path)).status_code == 404, name


async def test_documents_are_served_when_enabled():
    app = build(
        "courses",
        settings=service_settings("courses", "sqlite+aiosqlite://", docs_enabled=True),
        redis_settings=RedisSettings(url="redis://127.0.0.1:1/0"),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://courses") as client:
        assert (await client.get("/openapi.json")).json()["info"]["title"].endswith("courses")
        assert (await client.get("/docs")).status_code == 200


async def test_readiness_names_the_failing_dependency_not_its_error(caplog, tmp_path):
    """The error text names internal hosts and ports: it goes to the logs only."""
    service = "courses"
    assert service in registry.NAMES
    app = build(
        service,
        settings=service_settings(service, f"sqlite+aiosqlite:///{tmp_path}"),  # a directory
        redis_settings=RedisSettings(url="redis://127.0.0.1:1/0", retries=0),
    )
    caplog.set_level(logging.WARNING, logger="courseredis.services.app")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://courses") as client:
            response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "redis": "unavailable",
        "database": "unavailable",
    }
    (logged,) = [r for r in caplog.records if r.getMessage() == "not ready"]
    assert "127.0.0.1" in logged.problems["redis"]

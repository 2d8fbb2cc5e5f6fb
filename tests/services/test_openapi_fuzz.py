"""Property-based requests generated from each service's OpenAPI find no 500.

The services run as real processes; schemathesis sends what the schemas allow and more
(negative cases are part of its default phases), as an admin so that every route is
reached.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from courseredis.local import LocalStack
from courseredis.services.main import build
from courseredis.settings import RedisSettings
from tests.services.live import LiveServices, live_services
from tests.services.platform import service_settings

FUZZ = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases on every run: a failure here is reproducible
)


@pytest.fixture(scope="module")
def live(
    single_node: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServices]:
    with live_services(single_node, tmp_path_factory.mktemp("live")) as running:
        yield running


def _schema(service: str) -> Any:
    """The service's OpenAPI, from its app object (nothing connects until start-up)."""
    app = build(
        service,
        settings=service_settings(service, "sqlite+aiosqlite://"),
        redis_settings=RedisSettings(url="redis://127.0.0.1:1/0"),
    )
    return schemathesis.openapi.from_dict(app.openapi())


def no_server_error(case: Any, live: LiveServices, service: str) -> None:
    response = case.call(
        base_url=live.url(service),
        headers={"Authorization": f"Bearer {live.admin_token}"},
        timeout=10,
    )
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"


@_schema("auth").parametrize()
@FUZZ
def test_auth_answers_no_500(case: Any, live: LiveServices) -> None:
    no_server_error(case, live, "auth")


@_schema("courses").parametrize()
@FUZZ
def test_courses_answers_no_500(case: Any, live: LiveServices) -> None:
    no_server_error(case, live, "courses")


@_schema("enrollments").parametrize()
@FUZZ
def test_enrollments_answers_no_500(case: Any, live: LiveServices) -> None:
    no_server_error(case, live, "enrollments")

"""The service registry: one record per service, and everything that lists services agrees."""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest

from courseredis import keys
from courseredis.services import registry
from courseredis.services.app import Served, ServeOptions
from courseredis.services.gateway import ROUTES
from courseredis.services.main import build
from courseredis.services.settings import DEFAULT_RATE_LIMITS, GatewaySettings
from courseredis.settings import RedisSettings
from tests.services.platform import service_settings

NOWHERE = RedisSettings(url="redis://127.0.0.1:1/0")  # nothing connects before start-up


def test_the_gateway_starts_last_because_it_needs_the_rest():
    assert registry.NAMES[-1] == "gateway"
    assert registry.GATEWAY not in registry.UPSTREAMS
    assert set(registry.UPSTREAMS) == set(registry.SERVICES) - {registry.GATEWAY}


def test_every_pattern_is_written_by_some_service():
    for pattern in keys.PATTERNS:
        assert registry.writers(pattern), pattern.name


def test_a_service_only_reads_what_it_does_not_write():
    for service in registry.SERVICES:
        assert not set(service.writes) & set(service.reads), service.name
    assert registry.readers(keys.JWT_REVOKED) == ("gateway",)


def test_the_gateway_forwards_each_route_under_its_upstreams_prefix():
    prefixes = {
        s.name: re.sub(r"\{[a-z_]+\}", "[^/]+", s.route_prefix or "") for s in registry.UPSTREAMS
    }
    for route in ROUTES:
        assert route.upstream in prefixes, route.name
        assert route.path.pattern.startswith(prefixes[route.upstream]), route.name


def test_each_upstream_setting_is_the_variable_the_chart_renders():
    for service in registry.UPSTREAMS:
        assert service.upstream is not None
        assert service.upstream.setting == f"GATEWAY_{service.name.upper()}_URL"


def test_an_unknown_name_is_refused_with_the_known_ones():
    with pytest.raises(registry.UnknownService, match="gateway"):
        registry.service("billing")


def test_each_record_names_a_module_that_serves_it():
    """`main.build` imports the module the record names and includes what its `serve`
    gives: a service whose module is missing, or does not serve its prefix, fails here."""
    for service in registry.SERVICES:
        module = importlib.import_module(service.module)
        served = module.serve(
            ServeOptions(service_settings(service.name, "sqlite+aiosqlite://"), GatewaySettings())
        )
        assert isinstance(served, Served), service.name
        assert served.startup, service.name  # every service prepares its state at start-up
        if service.route_prefix is not None:
            assert served.router.prefix == service.route_prefix, service.name
            assert served.router.routes, service.name


def _paths(routes: list[Any]) -> set[str]:
    """Every path an app serves, through the routers it includes (FastAPI keeps an included
    router whole, as `original_router`)."""
    found: set[str] = set()
    for route in routes:
        included = getattr(route, "original_router", None)
        found |= _paths(included.routes) if included is not None else {route.path}
    return found


def test_main_serves_every_service_of_the_registry_and_only_those():
    for service in registry.SERVICES:
        settings = service_settings(service.name, "sqlite+aiosqlite://")
        app = build(service.name, settings=settings, redis_settings=NOWHERE)
        paths = _paths(app.routes)
        if service.route_prefix is not None:
            assert any(p.startswith(service.route_prefix) for p in paths), service.name
        else:
            assert "/{path:path}" in paths  # the gateway's catch-all
    with pytest.raises(registry.UnknownService):
        build("billing", settings=service_settings("gateway", "sqlite+aiosqlite://"))


def test_every_route_is_an_upstreams_and_has_a_policy():
    """The gateway's routes come from the registry; each gets its limits from the policy
    table, or the unlisted-route default, and the table names no route that does not exist."""
    assert len(set(registry.ROUTE_NAMES)) == len(registry.ROUTE_NAMES)
    assert {r.name for r in ROUTES} == set(registry.ROUTE_NAMES)
    assert set(DEFAULT_RATE_LIMITS) <= set(registry.ROUTE_NAMES)
    assert set(GatewaySettings().rate_limits) == set(registry.ROUTE_NAMES)


def test_only_the_gateway_is_public_and_only_the_signer_signs():
    assert registry.PUBLIC == "gateway" and registry.GATEWAY.upstream is None
    assert [s.name for s in registry.SERVICES if s.waits_for_replicas] == ["auth"]
    assert not registry.GATEWAY.uses_database  # issue 13 (9): it was given DATABASE_URL

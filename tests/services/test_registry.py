"""The service registry: one record per service, and everything that lists services agrees."""

from __future__ import annotations

import re

import pytest

from courseredis import keys
from courseredis.services import auth, courses, enrollments, registry
from courseredis.services.gateway import ROUTES


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


def test_each_upstream_serves_the_prefix_the_registry_gives_it():
    routers = {"auth": auth.router, "courses": courses.router, "enrollments": enrollments.router}
    assert set(routers) == {s.name for s in registry.UPSTREAMS}
    for service in registry.UPSTREAMS:
        assert routers[service.name].prefix == service.route_prefix

"""The four services in one process, wired as in production but over in-process transports.

The gateway reaches the upstream services through an httpx transport that routes by host
to their ASGI apps: the same code path as over TCP, without ports. Redis is real (the test
stacks), the database is real (SQLite or PostgreSQL), and every app runs its lifespan.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from courseredis.services import registry
from courseredis.services.main import build
from courseredis.services.settings import GatewaySettings, RoutePolicy, ServiceSettings
from courseredis.services.tokens import KeyPair
from courseredis.settings import RedisSettings

# One key pair for the test session: auth signs with it, every service verifies with it.
JWT_KEYS = KeyPair.generate()
UPSTREAMS = {s.name: f"http://{s.name}.internal" for s in registry.UPSTREAMS}


class RoutingTransport(httpx.AsyncBaseTransport):
    """Send each request to the ASGI app of its host."""

    def __init__(self, apps: dict[str, FastAPI]) -> None:
        self._transports = {
            httpx.URL(UPSTREAMS[name]).host: httpx.ASGITransport(app=app)
            for name, app in apps.items()
        }

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transports[request.url.host].handle_async_request(request)


@dataclass
class Platform:
    apps: dict[str, FastAPI]
    gateway: httpx.AsyncClient  # a client of the gateway, as users reach it
    direct: dict[str, httpx.AsyncClient]  # clients of each service, bypassing the gateway

    def runtime(self, service: str) -> Any:
        return self.apps[service].state.runtime


def service_settings(
    service: str, database_url: str, *, keys: KeyPair = JWT_KEYS, **overrides: Any
) -> ServiceSettings:
    """A service's settings as deployed: the public key for all, the private key for auth."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "jwt_public_keys": keys.public_pem,
        "jwt_private_key": keys.private_pem if service == registry.SIGNER else None,
        "event_reclaim_idle_ms": 200,
    }
    return ServiceSettings(**{**values, **overrides})


@contextlib.asynccontextmanager
async def running_platform(
    redis_for: dict[str, RedisSettings],
    database_url: str,
    *,
    rate_limits: dict[str, RoutePolicy] | None = None,
    trusted_proxies: list[str] | None = None,
    peer: tuple[str, int] | None = None,
) -> AsyncIterator[Platform]:
    # A fresh client address per platform: per-IP limits then count only this test's calls.
    peer = peer or (str(ipaddress.IPv6Address("2001:db8::") + random.getrandbits(64)), 50000)
    upstream_apps = {
        name: build(
            name, settings=service_settings(name, database_url), redis_settings=redis_for[name]
        )
        for name in UPSTREAMS
    }
    gateway_settings = GatewaySettings(
        upstreams=UPSTREAMS,
        trusted_proxies=trusted_proxies or [],
        rate_limits=rate_limits or {},
    )
    gateway_app = build(
        "gateway",
        settings=service_settings("gateway", database_url),
        redis_settings=redis_for["gateway"],
        gateway_settings=gateway_settings,
        upstream_transport=RoutingTransport(upstream_apps),
    )
    apps = {"gateway": gateway_app, **upstream_apps}
    async with contextlib.AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
        gateway = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=gateway_app, client=peer),
                base_url="http://gateway.test",
            )
        )
        direct = {
            name: await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url=f"http://{name}.test"
                )
            )
            for name, app in apps.items()
        }
        yield Platform(apps, gateway, direct)

"""Build a service by name, and the `courseredis-service` command that serves one."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import httpx
import uvicorn
from fastapi import APIRouter, FastAPI
from pydantic import ValidationError

from courseredis.services import auth, courses, enrollments, gateway, logs, registry
from courseredis.services.app import StartupHook, create_app
from courseredis.services.settings import GatewaySettings, ServiceSettings
from courseredis.settings import RedisSettings


def build(
    service: str,
    *,
    settings: ServiceSettings | None = None,
    redis_settings: RedisSettings | None = None,
    gateway_settings: GatewaySettings | None = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The app of one service; settings default to the environment."""
    registry.service(service)  # UnknownService (a ValueError) names the known ones
    settings = settings or ServiceSettings()
    redis_settings = redis_settings or RedisSettings()
    if service == "gateway":
        gateway_settings = gateway_settings or GatewaySettings()
        app = create_app(
            service,
            settings=settings,
            redis_settings=redis_settings,
            uses_database=False,
            startup=[gateway.startup_hook(gateway_settings, upstream_transport)],
        )
        gateway.create_gateway_routes(app, gateway_settings)
        return app
    router, hooks = _UPSTREAMS[service]
    app = create_app(
        service,
        settings=settings,
        redis_settings=redis_settings,
        uses_database=True,
        startup=list(hooks),
    )
    app.include_router(router)
    return app


# The services behind the gateway: their router and start-up hooks.
_UPSTREAMS: dict[str, tuple[APIRouter, tuple[StartupHook, ...]]] = {
    "auth": (auth.router, (auth.start,)),
    "courses": (courses.router, (courses.start_consumer,)),
    "enrollments": (enrollments.router, (enrollments.start_publisher,)),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="courseredis-service", description="Serve one service of the course platform."
    )
    parser.add_argument("service", choices=registry.NAMES)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        settings = ServiceSettings()
        logs.configure(args.service, settings.log_level)
        app = build(args.service, settings=settings)
    except ValidationError as error:
        print(f"error: bad settings for {args.service}:\n{error}", file=sys.stderr)
        return 2
    # proxy_headers off: the gateway decides which X-Forwarded-For to believe
    # (GATEWAY_TRUSTED_PROXIES); uvicorn must not rewrite the peer address before it looks.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

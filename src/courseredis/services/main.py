"""Build a service by name, and the `courseredis-service` command that serves one."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import httpx
import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from courseredis.services import logs, registry
from courseredis.services.app import Served, ServeOptions, create_app
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
    """The app of one service; settings default to the environment.

    The service's module comes from its registry record (`Service.module`) and gives its
    routes and start-up hooks through `serve` (`courseredis.services.app.Served`).
    """
    record = registry.service(service)  # UnknownService (a ValueError) names the known ones
    settings = settings or ServiceSettings()
    check_signing_key(service, settings)
    module = importlib.import_module(record.module)
    served: Served = module.serve(ServeOptions(settings, gateway_settings, upstream_transport))
    app = create_app(
        service,
        settings=settings,
        redis_settings=redis_settings or RedisSettings(),
        uses_database=record.uses_database,
        startup=list(served.startup),
    )
    app.include_router(served.router)
    return app


class MisconfiguredService(ValueError):
    """The settings are well formed but wrong for this service (say a key it must not hold)."""


def check_signing_key(service: str, settings: ServiceSettings) -> None:
    """Only auth holds the private key, and its tokens must verify with the public keys.

    A service that is given the private key by mistake refuses to start rather than hold
    it: a compromise of that service could then forge any token. Auth refuses to start
    with a key whose public half the verifiers are not given: every token it signed would
    be refused (the rotation's order, docs/security.md, is what avoids that).
    """
    signing = settings.signing_key()
    if service != registry.SIGNER:
        if signing is not None:
            raise MisconfiguredService(
                f"{service} must not hold JWT_PRIVATE_KEY: only {registry.SIGNER} signs tokens"
            )
        return
    if signing is None:
        raise MisconfiguredService(f"{service} signs access tokens: set JWT_PRIVATE_KEY")
    if signing.kid not in settings.verifying_keys():
        raise MisconfiguredService(
            f"the public key of JWT_PRIVATE_KEY (kid {signing.kid}) is not in JWT_PUBLIC_KEYS: "
            "add it there first, everywhere (docs/security.md)"
        )


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
    except (ValidationError, MisconfiguredService) as error:
        print(f"error: bad settings for {args.service}:\n{error}", file=sys.stderr)
        return 2
    if settings.metrics_port:
        app.state.metrics.serve(args.host, settings.metrics_port)
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

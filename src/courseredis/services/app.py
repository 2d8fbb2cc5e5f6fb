"""The application factory shared by the four services.

Every service gets the same edges: JSON logs, `/healthz` (the process answers), `/readyz`
(Redis and the database answer), a request-body size limit, and errors mapped so that a
failing dependency is a 503 with a reason, never a 500. Its metrics are served on a port of
their own (`Metrics.serve`, started by `main`), its OpenAPI documents only when
`DOCS_ENABLED`. What a client is told is generic (`/readyz` names the failing dependency,
not its error, which may name internal hosts): the details go to the logs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from courseredis.connection import open_async_client
from courseredis.services.metrics import Metrics
from courseredis.services.runtime import Runtime, RuntimeDep
from courseredis.services.settings import GatewaySettings, ServiceSettings
from courseredis.settings import RedisSettings

log = logging.getLogger(__name__)

# A start-up hook prepares the runtime and returns its shutdown coroutine (or None).
StartupHook = Callable[[Runtime], Awaitable[Callable[[], Awaitable[None]] | None]]


@dataclass(frozen=True)
class ServeOptions:
    """What `main.build` hands a service module's `serve`: the settings it was built with,
    and what tests inject in place of the environment (only the gateway reads these two)."""

    settings: ServiceSettings
    gateway_settings: GatewaySettings | None = None
    upstream_transport: httpx.AsyncBaseTransport | None = None


@dataclass(frozen=True)
class Served:
    """A service module's part of its app: its routes and its start-up hooks.

    Every module the registry names (`Service.module`) exposes `serve(options) -> Served`,
    the one name `main.build` imports it by; so adding a service touches the registry and
    its own module, not `main`.
    """

    router: APIRouter
    startup: tuple[StartupHook, ...] = ()


class BodyLimit:
    """Refuse request bodies over the limit with 413, whether declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _too_large(scope, receive, send, self.max_bytes)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(scope, receive, send, self.max_bytes)


class _BodyTooLarge(Exception):
    pass


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413)
    await response(scope, receive, send)


class Observe:
    """Count and time each request by its route template (never the raw path).

    A plain ASGI middleware: Starlette's `BaseHTTPMiddleware` runs the app in a task of its
    own and streams the response through a queue, which costs more per request than a
    service's own work.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._counters: dict[tuple[str, int], Counter] = {}
        self._timers: dict[str, Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, observed)
        if not status:
            return  # no answer (the client left): nothing to count
        name = getattr(scope.get("route"), "path", "unmatched")
        # The labelled children, looked up once: prometheus_client's `labels` takes a lock.
        counter = self._counters.get((name, status))
        if counter is None:
            counter = self._counters[(name, status)] = self.metrics.requests.labels(
                name, str(status)
            )
        timer = self._timers.get(name)
        if timer is None:
            timer = self._timers[name] = self.metrics.latency.labels(name)
        counter.inc()
        timer.observe(time.perf_counter() - started)


def unavailable(what: str) -> JSONResponse:
    return JSONResponse(
        {"detail": f"{what} unavailable, try again shortly"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def create_app(
    service: str,
    *,
    settings: ServiceSettings,
    redis_settings: RedisSettings,
    uses_database: bool,
    startup: list[StartupHook] | None = None,
) -> FastAPI:
    metrics = Metrics(service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = await open_async_client(redis_settings)
        runtime = Runtime(service, settings, redis, metrics)
        if uses_database:
            from courseredis.services.db.engine import create_engine, make_sessionmaker

            runtime.engine = create_engine(settings.database_url)
            runtime.sessionmaker = make_sessionmaker(runtime.engine)
        app.state.runtime = runtime
        stops = []
        for hook in startup or []:
            stop = await hook(runtime)
            if stop is not None:
                stops.append(stop)
        log.info("started")
        try:
            yield
        finally:
            for stop in reversed(stops):
                await stop()
            await redis.aclose()
            if runtime.engine is not None:
                await runtime.engine.dispose()

    docs = settings.docs_enabled
    app = FastAPI(
        title=f"course platform: {service}",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.metrics = metrics
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(Observe, metrics=metrics)  # the outer one: it sees 413s too

    @app.exception_handler(RedisError)
    async def redis_failed(request: Request, error: RedisError) -> JSONResponse:
        metrics.redis_errors.labels("request").inc()
        log.warning("redis error", extra={"error": str(error), "path": request.url.path})
        return unavailable("Redis")

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def database_failed(request: Request, error: Exception) -> JSONResponse:
        log.warning("database error", extra={"error": str(error)[:300], "path": request.url.path})
        return unavailable("database")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(runtime: RuntimeDep) -> JSONResponse:
        problems: dict[str, str] = {}
        try:
            await asyncio.wait_for(runtime.redis.ping(), timeout=2)
        except Exception as error:
            problems["redis"] = f"{type(error).__name__}: {error}"[:300]
        if runtime.engine is not None:
            try:
                async with runtime.engine.connect() as connection:
                    await asyncio.wait_for(connection.execute(text("SELECT 1")), timeout=2)
            except Exception as error:
                problems["database"] = f"{type(error).__name__}: {error}"[:300]
        if problems:
            log.warning("not ready", extra={"problems": problems})
            return JSONResponse(
                {"status": "unavailable", **dict.fromkeys(problems, "unavailable")},
                status_code=503,
            )
        return JSONResponse({"status": "ready"})

    return app


def json_error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)

"""The gateway: the one public entry.

Per request it verifies the JWT locally, then sends all its Redis work at once, in one
batch: the blacklist check, the rate-limit decisions per IP and per user, and the session
touch. On a single node that is one pipeline; on a cluster, one pipeline per node, sent in
parallel: one round trip of latency either way. Then it forwards to the upstream service
over a pooled HTTP client.

Failure policy when Redis cannot answer: the blacklist fails closed (503), each rate limit
follows its policy (open by default, closed for login), the session touch is skipped.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response

from courseredis import keys
from courseredis.patterns.blacklist import is_revoked_command
from courseredis.patterns.flow import Batch, Command, Script, execute_async
from courseredis.patterns.ratelimit import (
    Decision,
    Policy,
    RateLimitUnavailable,
    degraded_decision,
    hit_script,
    parse_decision,
)
from courseredis.patterns.sessions import TOUCH_THROTTLE, touch_script
from courseredis.services.app import json_error, unavailable
from courseredis.services.runtime import Runtime
from courseredis.services.settings import GatewaySettings
from courseredis.services.tokens import (
    AccessClaims,
    InvalidToken,
    bearer_token,
    decode_access_token,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    methods: frozenset[str]
    path: re.Pattern[str]
    name: str  # the rate-limit route: a fixed name, never the raw path
    upstream: str  # auth | courses | enrollments
    public: bool = False


ROUTES = (
    Route(frozenset({"POST"}), re.compile(r"/auth/login"), "login", "auth", public=True),
    Route(frozenset({"POST"}), re.compile(r"/auth/refresh"), "refresh", "auth", public=True),
    Route(frozenset({"POST"}), re.compile(r"/auth/logout"), "logout", "auth"),
    Route(frozenset({"GET"}), re.compile(r"/courses"), "courses.list", "courses"),
    Route(frozenset({"GET"}), re.compile(r"/courses/[^/]+"), "courses.read", "courses"),
    Route(frozenset({"PUT", "DELETE"}), re.compile(r"/courses/[^/]+"), "courses.write", "courses"),
    Route(
        frozenset({"POST"}),
        re.compile(r"/courses/[^/]+/enrollments"),
        "enrollments.create",
        "enrollments",
    ),
    Route(
        frozenset({"GET"}),
        re.compile(r"/courses/[^/]+/enrollments"),
        "enrollments.list",
        "enrollments",
    ),
)
# Hop-by-hop headers end at the gateway (RFC 9110 7.6.1), as does the client's own view of
# who forwarded it.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "x-forwarded-for",
}


def match_route(method: str, path: str) -> Route | None:
    for route in ROUTES:
        if method in route.methods and route.path.fullmatch(path):
            return route
    return None


def client_ip(peer: str | None, forwarded_for: str | None, trusted: list[str]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy; then the
    right-most address in X-Forwarded-For that is not itself a trusted proxy."""
    networks = [ipaddress.ip_network(n, strict=False) for n in trusted]

    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in networks)

    current = peer or "0.0.0.0"
    try:
        current = ipaddress.ip_address(current).compressed
    except ValueError:
        return "0.0.0.0"  # not an IP (a unix socket): one bucket for all such peers
    if not is_trusted(current) or not forwarded_for:
        return current
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return current  # a malformed hop: trust nothing further left of it
        current = hop
        if not is_trusted(hop):
            break
    return current


@dataclass
class Checks:
    """The Redis work of one request, assembled before anything is sent."""

    ops: list[Command | Script]
    revoked_at: int | None = None
    session_at: int | None = None
    limits: list[tuple[int, Policy, str]] | None = None  # (index, policy, scope)


def plan(
    route_name: str, settings: GatewaySettings, ip: str, claims: AccessClaims | None
) -> Checks:
    checks = Checks(ops=[], limits=[])
    assert checks.limits is not None
    if claims is not None:
        checks.revoked_at = len(checks.ops)
        checks.ops.append(is_revoked_command(claims.jti))
        checks.session_at = len(checks.ops)
        checks.ops.append(touch_script(claims.session_id, TOUCH_THROTTLE))
    route_policy = settings.rate_limits[route_name]
    per_ip = route_policy.policy(route_policy.per_ip)
    if per_ip is not None:
        checks.limits.append((len(checks.ops), per_ip, "ip"))
        checks.ops.append(hit_script(keys.ratelimit_ip(ip, route_name), per_ip))
    per_user = route_policy.policy(route_policy.per_user)
    if per_user is not None and claims is not None:
        checks.limits.append((len(checks.ops), per_user, "user"))
        checks.ops.append(hit_script(keys.ratelimit_user(claims.user_id, route_name), per_user))
    return checks


def _rate_headers(decision: Decision) -> dict[str, str]:
    headers = decision.headers()
    headers.pop("Retry-After", None)
    return headers


def create_gateway_routes(app: FastAPI, settings: GatewaySettings) -> None:
    upstreams = {
        "auth": settings.auth_url.rstrip("/"),
        "courses": settings.courses_url.rstrip("/"),
        "enrollments": settings.enrollments_url.rstrip("/"),
    }

    @app.api_route(
        "/{path:path}",
        methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
        include_in_schema=False,
    )
    async def forward(request: Request, path: str) -> Response:
        runtime: Runtime = request.app.state.runtime
        route = match_route(request.method, "/" + path)
        if route is None:
            return json_error(404, "no such route")
        claims: AccessClaims | None = None
        if not route.public:
            try:
                claims = decode_access_token(
                    runtime.settings.jwt_secret.get_secret_value(),
                    runtime.settings.jwt_issuer,
                    bearer_token(request.headers.get("authorization")),
                )
            except InvalidToken as error:
                return json_error(401, str(error), {"WWW-Authenticate": "Bearer"})
        ip = client_ip(
            request.client.host if request.client else None,
            request.headers.get("x-forwarded-for"),
            settings.trusted_proxies,
        )
        checks = plan(route.name, settings, ip, claims)
        refusal, binding = await _decide(runtime, route, checks)
        if refusal is not None:
            return refusal
        response = await _proxy(runtime, request, upstreams[route.upstream] + "/" + path, ip)
        if binding is not None:
            response.headers.update(_rate_headers(binding))
        return response


async def _decide(
    runtime: Runtime, route: Route, checks: Checks
) -> tuple[Response | None, Decision | None]:
    """Send the batch; return the refusal to answer with, or the binding decision."""
    metrics = runtime.metrics
    if checks.ops:
        try:
            replies: list[Any] = await execute_async(runtime.redis, Batch(tuple(checks.ops)))
        except Exception as error:  # the whole batch failed: every check failed alike
            metrics.redis_errors.labels("gateway").inc()
            log.warning("redis batch failed", extra={"error": str(error)})
            replies = [error] * len(checks.ops)
    else:
        replies = []

    if checks.revoked_at is not None:
        reply = replies[checks.revoked_at]
        if isinstance(reply, Exception):
            return unavailable("token revocation check"), None  # fail closed
        if int(reply) == 1:
            return json_error(401, "token revoked", {"WWW-Authenticate": "Bearer"}), None
    if checks.session_at is not None:
        reply = replies[checks.session_at]
        if not isinstance(reply, Exception) and not reply:  # an empty reply: no such session
            return json_error(401, "session ended", {"WWW-Authenticate": "Bearer"}), None

    binding: Decision | None = None
    refused: Decision | None = None
    for index, policy, scope in checks.limits or []:
        reply = replies[index]
        try:
            decision = (
                degraded_decision(policy)
                if isinstance(reply, Exception)
                else parse_decision(policy, reply)
            )
        except RateLimitUnavailable:
            metrics.ratelimit.labels(route.name, scope, "unavailable").inc()
            return unavailable("rate limiter"), None
        result = "degraded" if decision.degraded else "allowed" if decision.allowed else "limited"
        metrics.ratelimit.labels(route.name, scope, result).inc()
        if not decision.allowed:
            if refused is None or decision.retry_after_ms > refused.retry_after_ms:
                refused = decision
        elif not decision.degraded and (binding is None or decision.remaining < binding.remaining):
            binding = decision
    if refused is not None:
        return json_error(429, "rate limit exceeded", refused.headers()), None
    return None, binding


async def _proxy(runtime: Runtime, request: Request, url: str, ip: str) -> Response:
    http: httpx.AsyncClient = runtime.extras["http"]
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
    headers["x-forwarded-for"] = ip
    try:
        upstream = await http.request(
            request.method,
            url,
            params=request.query_params,
            headers=headers,
            content=await request.body(),
        )
    except httpx.InvalidURL:
        return json_error(400, "malformed request path")
    except httpx.TimeoutException:
        return json_error(504, "upstream timed out")
    except httpx.HTTPError as error:
        log.warning("upstream unreachable", extra={"url": url, "error": str(error)})
        return json_error(502, "upstream unavailable")
    # httpx has decoded the body already, so its content-encoding no longer applies; the
    # gateway's server sets its own Date and Server (passing the upstream's would double them).
    dropped = _HOP_BY_HOP | {"content-encoding", "date", "server"}
    out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in dropped}
    return Response(upstream.content, status_code=upstream.status_code, headers=out_headers)


def http_client_hook(
    settings: GatewaySettings, transport: httpx.AsyncBaseTransport | None
) -> Callable[[Runtime], Awaitable[Callable[[], Awaitable[None]]]]:
    async def start(runtime: Runtime) -> Callable[[], Awaitable[None]]:
        client = httpx.AsyncClient(
            timeout=settings.upstream_timeout_s,
            limits=httpx.Limits(
                max_connections=settings.upstream_max_connections,
                max_keepalive_connections=settings.upstream_max_connections,
                # Below uvicorn's 5 s keep-alive: the gateway drops an idle connection before
                # the upstream can close it under a request being sent (a 502 otherwise).
                keepalive_expiry=2.0,
            ),
            transport=transport,
        )
        runtime.extras["http"] = client
        return client.aclose

    return start

"""The gateway: the one public entry.

Per request it verifies the JWT locally, then sends all its Redis work at once, in one
batch: the blacklist check, the rate-limit decisions per IP, per user and (for a login)
per account, and the session touch. On a single node that is one pipeline; on a cluster,
one pipeline per node, sent in parallel: one round trip of latency either way. Then it
forwards to the upstream service over a pooled HTTP client (`upstream`).

Failure policy when Redis cannot answer: the blacklist fails closed (503), each rate limit
follows its policy (open by default, closed for login), the session touch is skipped.

The catch-all route is a plain ASGI endpoint rather than a FastAPI one: the gateway reads
three headers and passes the rest through, and FastAPI's request parsing and dependency
solving per request would cost it more CPU than its own work.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias
from urllib.parse import quote_from_bytes

import httpx
from fastapi import APIRouter
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Route as AsgiRoute
from starlette.types import Receive, Scope, Send

from courseredis import keys
from courseredis.patterns.blacklist import is_revoked_command
from courseredis.patterns.flow import Batch, Command, Script, execute_async
from courseredis.patterns.ratelimit import (
    Decision,
    Policy,
    RateLimitUnavailable,
    decision_of,
    hit_script,
)
from courseredis.patterns.sessions import TOUCH_THROTTLE, touch_script
from courseredis.services import registry
from courseredis.services.app import Served, ServeOptions, json_error, unavailable
from courseredis.services.runtime import Runtime
from courseredis.services.settings import GatewaySettings
from courseredis.services.tokens import (
    AccessClaims,
    InvalidToken,
    TokenVerifier,
    bearer_token,
)
from courseredis.services.upstream import (
    HttpxUpstream,
    Origin,
    RawHeaders,
    Upstream,
    UpstreamPool,
    UpstreamTimeout,
    UpstreamUnreachable,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    methods: frozenset[str]
    path: re.Pattern[str]
    name: str  # the rate-limit route: a fixed name, never the raw path
    upstream: str  # a service of the registry's UPSTREAMS
    public: bool = False


def _prefix_regex(prefix: str) -> str:
    # A path parameter ({course_id}) matches one segment, as FastAPI's router does.
    parts = re.split(r"\{[a-z_]+\}", prefix)
    return "[^/]+".join(re.escape(part) for part in parts)


# Derived from the registry: each upstream's routes under its prefix, so a new service's
# routes reach it without an edit here.
ROUTES = tuple(
    Route(
        route.methods,
        re.compile(_prefix_regex(service.route_prefix or "") + route.path),
        route.name,
        service.name,
        route.public,
    )
    for service in registry.UPSTREAMS
    for route in service.routes
)
# Hop-by-hop headers end at the gateway (RFC 9110 7.6.1), as does the client's own view of
# who forwarded it. Names as ASGI carries them: lower case bytes.
_HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"host",
    b"content-length",
    b"x-forwarded-for",
}
# The gateway's server sets its own Date and Server: passing the upstream's would double them.
_NOT_RETURNED = _HOP_BY_HOP | {b"date", b"server"}
# Characters a path or a query may carry unescaped (RFC 3986); anything else the client
# sent raw is percent-encoded before it goes upstream. '%' stays: the client's own escapes
# reach the upstream as they came, so it decodes the path the gateway matched.
_PATH_SAFE = b"/%!$&'()*+,;=:@-._~"
_QUERY_SAFE = _PATH_SAFE + b"?"


class RouteLimits(NamedTuple):
    """A route's limits, built once rather than per request; None: no such limit."""

    per_ip: Policy | None
    per_user: Policy | None
    per_account: Policy | None


RoutePolicies: TypeAlias = dict[str, RouteLimits]


def match_route(method: str, path: str) -> Route | None:
    for route in ROUTES:
        if method in route.methods and route.path.fullmatch(path):
            return route
    return None


Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=16)
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in trusted)


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Iterable[str]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy; then the
    right-most address in X-Forwarded-For that is not itself a trusted proxy."""
    if forwarded_for is not None and len(forwarded_for) > _CACHED_FORWARDED_LENGTH:
        return _client_ip.__wrapped__(peer, forwarded_for, tuple(trusted))
    return _client_ip(peer, forwarded_for, tuple(trusted))


# The same few clients (and proxies) come again and again: parsing their addresses each
# time would cost more than the rest of the check. A long header (a client's to make up)
# is not kept, so the cache stays small.
_CACHED_FORWARDED_LENGTH = 256


@functools.lru_cache(maxsize=4096)
def _client_ip(peer: str | None, forwarded_for: str | None, trusted: tuple[str, ...]) -> str:
    networks = _networks(trusted)

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
    if not networks or not forwarded_for or not is_trusted(current):
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


def route_policies(settings: GatewaySettings) -> RoutePolicies:
    return {
        name: RouteLimits(
            route.policy(route.per_ip),
            route.policy(route.per_user),
            route.policy(route.per_account),
        )
        for name, route in settings.rate_limits.items()
    }


def account_of(body: bytes) -> str | None:
    """The account a login's body names, as its key holds it (lower case).

    None when the body names no account the auth service would check a password for: auth
    parses the body as this does (`json.loads`), and answers 422 without a check to what
    its `Login` model refuses, which is what `keys.valid_username` refuses.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON (nor UTF-8), or nested to exhaustion
        return None
    username = data.get("username") if isinstance(data, dict) else None
    try:
        return keys.valid_username("username", username)
    except keys.InvalidIdentifier:
        return None


@dataclass
class Checks:
    """The Redis work of one request, assembled before anything is sent."""

    ops: list[Command | Script]
    revoked_at: int | None = None
    session_at: int | None = None
    limits: list[tuple[int, Policy, str]] = field(default_factory=list)  # (index, policy, scope)


def plan(
    route_name: str,
    policies: RoutePolicies,
    ip: str,
    claims: AccessClaims | None,
    account: str | None = None,
) -> Checks:
    checks = Checks(ops=[])
    if claims is not None:
        checks.revoked_at = len(checks.ops)
        checks.ops.append(is_revoked_command(claims.jti))
        checks.session_at = len(checks.ops)
        checks.ops.append(touch_script(claims.session_id, TOUCH_THROTTLE))
    per_ip, per_user, per_account = policies[route_name]
    if per_ip is not None:
        checks.limits.append((len(checks.ops), per_ip, "ip"))
        checks.ops.append(hit_script(keys.ratelimit_ip(ip, route_name), per_ip))
    if per_user is not None and claims is not None:
        checks.limits.append((len(checks.ops), per_user, "user"))
        checks.ops.append(hit_script(keys.ratelimit_user(claims.user_id, route_name), per_user))
    if per_account is not None and account is not None:
        checks.limits.append((len(checks.ops), per_account, "account"))
        checks.ops.append(hit_script(keys.ratelimit_account(account, route_name), per_account))
    return checks


def _rate_headers(decision: Decision) -> RawHeaders:
    return [
        (name.encode(), value.encode())
        for name, value in decision.headers().items()
        if name != "Retry-After"
    ]


@dataclass(frozen=True)
class GatewayState:
    """What the gateway builds at start-up (`startup_hook`)."""

    tokens: TokenVerifier
    upstream: Upstream


class Forward:
    """The catch-all endpoint: checks, then the upstream's answer or the refusal."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.upstreams = {name: Origin.parse(url) for name, url in settings.upstreams.items()}
        self.trusted = tuple(settings.trusted_proxies)
        self.policies = route_policies(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self.answer(scope, receive)
        except ClientDisconnect:
            return  # gone before its body arrived: nobody is left to answer
        if isinstance(response, Response):
            await response(scope, receive, send)
            return
        status, headers, body = response
        if status >= 200 and status not in (204, 304):  # the statuses that have a body
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def answer(
        self, scope: Scope, receive: Receive
    ) -> Response | tuple[int, RawHeaders, bytes]:
        runtime: Runtime = scope["app"].state.runtime
        state = runtime.part(GatewayState)
        route = match_route(scope["method"], scope["path"])
        if route is None:
            return json_error(404, "no such route")
        authorization: str | None = None
        forwarded: list[str] = []
        for name, value in scope["headers"]:
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif name == b"x-forwarded-for":
                forwarded.append(value.decode("latin-1"))
        # Several X-Forwarded-For lines are one list, in order (RFC 9110 5.3).
        forwarded_for = ", ".join(forwarded) if forwarded else None
        claims: AccessClaims | None = None
        if not route.public:
            try:
                claims = state.tokens.verify(bearer_token(authorization))
            except InvalidToken as error:
                log.info("access token refused", extra={"reason": error.reason})
                return json_error(401, str(error), {"WWW-Authenticate": "Bearer"})
        peer = scope.get("client")
        ip = client_ip(peer[0] if peer else None, forwarded_for, self.trusted)
        # A route limited per account names it in its body: read before deciding.
        body: bytes | None = None
        account: str | None = None
        if self.policies[route.name].per_account is not None:
            body = await _read_body(receive)
            account = account_of(body)
        checks = plan(route.name, self.policies, ip, claims, account)
        refusal, binding = await _decide(runtime, route, checks)
        if refusal is not None:
            return refusal
        if body is None:
            body = await _read_body(receive)
        reply = await self.proxy(state.upstream, scope, route, ip, body)
        if isinstance(reply, Response):
            return reply
        status, headers, body = reply
        if binding is not None:
            headers += _rate_headers(binding)
        return status, headers, body

    async def proxy(
        self, upstream: Upstream, scope: Scope, route: Route, ip: str, body: bytes
    ) -> Response | tuple[int, RawHeaders, bytes]:
        origin = self.upstreams[route.upstream]
        target = quote_from_bytes(scope.get("raw_path") or scope["path"].encode(), _PATH_SAFE)
        if scope["query_string"]:
            target += "?" + quote_from_bytes(scope["query_string"], _QUERY_SAFE)
        headers = [(k, v) for k, v in scope["headers"] if k not in _HOP_BY_HOP]
        headers.append((b"x-forwarded-for", ip.encode()))
        try:
            reply = await upstream.send(scope["method"], origin, target, headers, body)
        except UpstreamTimeout:
            return json_error(504, "upstream timed out")
        except UpstreamUnreachable as error:
            log.warning(
                "upstream unreachable", extra={"url": origin.url + target, "error": str(error)}
            )
            return json_error(502, "upstream unavailable")
        out = [(k, v) for k, v in reply.headers if k.lower() not in _NOT_RETURNED]
        return reply.status, out, reply.body


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def gateway_router(settings: GatewaySettings) -> APIRouter:
    """The catch-all route, as a router `main.build` includes like any service's."""
    router = APIRouter()
    router.routes.append(
        AsgiRoute(
            "/{path:path}",
            Forward(settings),
            methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
            include_in_schema=False,
        )
    )
    return router


def serve(options: ServeOptions) -> Served:
    """The gateway's routes and start-up hook (`courseredis.services.app.Served`); its
    settings from the environment unless given."""
    settings = options.gateway_settings or GatewaySettings()
    return Served(gateway_router(settings), (startup_hook(settings, options.upstream_transport),))


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
    for index, policy, scope in checks.limits:
        try:
            decision = decision_of(policy, replies[index])
        except RateLimitUnavailable:
            metrics.ratelimit.labels(route.name, scope, "unavailable").inc()
            return unavailable("rate limiter"), None
        except Exception as error:  # a fault, not an outage: refuse rather than stop limiting
            metrics.ratelimit.labels(route.name, scope, "error").inc()
            log.error("rate limit check failed", extra={"route": route.name, "error": str(error)})
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


def startup_hook(
    settings: GatewaySettings, transport: httpx.AsyncBaseTransport | None
) -> Callable[[Runtime], Awaitable[Callable[[], Awaitable[None]]]]:
    """Prepare the token verifier and the upstream client: its own pool over TCP, or httpx
    over the given transport."""

    async def start(runtime: Runtime) -> Callable[[], Awaitable[None]]:
        tokens = TokenVerifier(runtime.settings.verifying_keys(), runtime.settings.jwt_issuer)
        client: Upstream
        if transport is not None:
            client = HttpxUpstream(transport, timeout_s=settings.upstream_timeout_s)
        else:
            client = UpstreamPool(
                timeout_s=settings.upstream_timeout_s,
                max_connections=settings.upstream_max_connections,
                # Below uvicorn's 5 s keep-alive: the gateway drops an idle connection before
                # the upstream can close it under a request being sent (a 502 otherwise).
                keepalive_s=2.0,
            )
        runtime.attach(GatewayState(tokens, client))
        return client.aclose

    return start

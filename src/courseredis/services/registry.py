"""The services of the platform, declared once.

Everything that lists services reads this table: the ACL users (one per service, from the
key patterns it writes and reads), the gateway's upstreams and their settings, the local
stack (which starts them in this order), chaos, benchmarks, infra and the tests. Adding a
service means a record here and the service's own module.

This module imports nothing but the key schema, so `keys`-level code (`acl`, infra) can
read it without pulling in FastAPI.
"""

from __future__ import annotations

from dataclasses import dataclass

from courseredis import keys


@dataclass(frozen=True)
class Upstream:
    """How the gateway reaches a service: the variable that holds its URL, and its default."""

    setting: str  # the environment variable, as the chart renders it: GATEWAY_<NAME>_URL
    default_url: str


@dataclass(frozen=True)
class Route:
    """A route the gateway forwards to a service, under the service's `route_prefix`."""

    methods: frozenset[str]
    # A regular expression of the path after the prefix ("" for the prefix itself); a path
    # parameter matches one segment.
    path: str
    # The rate-limit route: a fixed name keys are built from, never the raw path. Its limits
    # are in `services.settings.DEFAULT_RATE_LIMITS` (a route it does not name gets
    # `UNLISTED_ROUTE_POLICY`).
    name: str
    public: bool = False  # no access token needed (logging in, refreshing)


def _routes(methods: str, *entries: tuple[str, str] | tuple[str, str, bool]) -> tuple[Route, ...]:
    return tuple(
        Route(frozenset(methods.split()), entry[0], entry[1], *entry[2:]) for entry in entries
    )


@dataclass(frozen=True)
class Service:
    name: str
    # The module that serves it: its `serve(options)` gives the routes and start-up hooks
    # (`courseredis.services.app.Served`); `main.build` imports it by this name.
    module: str
    # Drives the service's ACL user: read-write on what it writes, read-only on what it reads.
    writes: tuple[keys.KeyPattern, ...]
    reads: tuple[keys.KeyPattern, ...] = ()
    # Opens the database (DATABASE_URL): only such a service is given the URL.
    uses_database: bool = False
    # Confirms its writes with replicas (`WAIT`, REDIS_REPLICA_ACKS) before it answers, so a
    # failover cannot undo them; its ACL user may run WAIT.
    waits_for_replicas: bool = False
    # The path its router serves (FastAPI syntax); None for the gateway, which serves all.
    route_prefix: str | None = None
    # None: not behind the gateway (the gateway itself).
    upstream: Upstream | None = None
    # What the gateway forwards to it; a request that matches no route of any service is
    # refused by the gateway (404) before any key is built.
    routes: tuple[Route, ...] = ()
    # Holds the private key access tokens are signed with (JWT_PRIVATE_KEY). One service
    # does; every service gets the public keys (JWT_PUBLIC_KEYS).
    signs_tokens: bool = False

    def uses(self, pattern: keys.KeyPattern) -> bool:
        return pattern in self.writes or pattern in self.reads


AUTH = Service(
    name="auth",
    module="courseredis.services.auth",
    writes=(keys.JWT_REVOKED, keys.REFRESH_TOKEN, keys.SESSION),
    uses_database=True,
    waits_for_replicas=True,
    route_prefix="/auth",
    upstream=Upstream("GATEWAY_AUTH_URL", "http://127.0.0.1:8001"),
    routes=(
        *_routes("POST", ("/login", "login", True), ("/refresh", "refresh", True)),
        *_routes("POST", ("/logout", "logout")),
    ),
    signs_tokens=True,
)
COURSES = Service(
    name="courses",
    module="courseredis.services.courses",
    writes=(keys.COURSE_CACHE, keys.IDEMPOTENCY, keys.EVENT_STREAM),
    uses_database=True,
    route_prefix="/courses",
    upstream=Upstream("GATEWAY_COURSES_URL", "http://127.0.0.1:8002"),
    routes=(
        *_routes("GET", ("", "courses.list"), ("/[^/]+", "courses.read")),
        *_routes("PUT DELETE", ("/[^/]+", "courses.write")),
    ),
)
ENROLLMENTS = Service(
    name="enrollments",
    module="courseredis.services.enrollments",
    writes=(keys.ENROLLMENT_LOCK, keys.IDEMPOTENCY, keys.EVENT_STREAM),
    uses_database=True,
    route_prefix="/courses/{course_id}/enrollments",
    upstream=Upstream("GATEWAY_ENROLLMENTS_URL", "http://127.0.0.1:8003"),
    routes=(
        *_routes("POST", ("", "enrollments.create")),
        *_routes("GET", ("", "enrollments.list")),
    ),
)
GATEWAY = Service(
    name="gateway",
    module="courseredis.services.gateway",
    writes=(keys.RATE_LIMIT_IP, keys.RATE_LIMIT_USER, keys.RATE_LIMIT_ACCOUNT, keys.SESSION),
    reads=(keys.JWT_REVOKED,),
)

# In start order: the gateway last, because it needs the rest.
SERVICES: tuple[Service, ...] = (AUTH, COURSES, ENROLLMENTS, GATEWAY)
NAMES: tuple[str, ...] = tuple(s.name for s in SERVICES)
# The services behind the gateway, the ones it forwards to.
UPSTREAMS: tuple[Service, ...] = tuple(s for s in SERVICES if s.upstream is not None)
_BY_NAME = {s.name: s for s in SERVICES}
(SIGNER,) = (s.name for s in SERVICES if s.signs_tokens)  # the one service that signs
# The one service not behind the gateway: the gateway, published by the ingress.
(PUBLIC,) = (s.name for s in SERVICES if s.upstream is None)
# Every rate-limit route name, in the order the services declare them.
ROUTE_NAMES: tuple[str, ...] = tuple(r.name for s in UPSTREAMS for r in s.routes)


class UnknownService(ValueError):
    """A name that is not in the registry."""


def service(name: str) -> Service:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownService(f"unknown service {name!r}; known: {NAMES}") from None


def writers(pattern: keys.KeyPattern) -> tuple[str, ...]:
    """The services that write keys of `pattern`."""
    return tuple(s.name for s in SERVICES if pattern in s.writes)


def readers(pattern: keys.KeyPattern) -> tuple[str, ...]:
    """The services that only read keys of `pattern`."""
    return tuple(s.name for s in SERVICES if pattern in s.reads and pattern not in s.writes)


def default_upstream_urls() -> dict[str, str]:
    """Where the gateway looks for each upstream when no variable says otherwise."""
    return {s.name: s.upstream.default_url for s in UPSTREAMS if s.upstream is not None}

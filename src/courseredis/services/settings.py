"""The services' settings, from the environment (one `BaseSettings` per concern)."""

from __future__ import annotations

import ipaddress
import json
import os
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from courseredis import keys
from courseredis.patterns.ratelimit import Algorithm, Limit, Policy
from courseredis.services import registry
from courseredis.services.db.engine import DEFAULT_DATABASE_URL
from courseredis.services.tokens import SigningKey, VerifyingKeys

# Where a deployed service serves /metrics (METRICS_PORT): the chart's metrics port.
METRICS_PORT = 9090


class ServiceSettings(BaseSettings):
    """What every service reads: the database, the token keys, logging and input limits."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    # JWT_PUBLIC_KEYS: the Ed25519 public keys access tokens may be signed with, PEM, one
    # after the other (two during a rotation: docs/security.md). Every service verifies.
    jwt_public_keys: str = Field(min_length=1)
    # JWT_PRIVATE_KEY: the Ed25519 private key (PEM) tokens are signed with. The auth
    # service's alone: `main.build` refuses to start any other service that is given it.
    jwt_private_key: SecretStr | None = None
    jwt_issuer: str = "course-platform"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_body_bytes: int = Field(default=16 * 1024, ge=256)
    # How long an idle event consumer's pending messages wait before another takes them.
    event_reclaim_idle_ms: int = Field(default=30_000, ge=100)
    # /metrics is served on this port, apart from the service's own (public for the
    # gateway); 0 serves no metrics. The chart exposes it to Prometheus only.
    metrics_port: int = Field(default=METRICS_PORT, ge=0, le=65535)
    # /docs, /redoc and /openapi.json: off unless asked for (the local stack turns them on);
    # a deployed gateway publishes no map of its routes.
    docs_enabled: bool = False

    @field_validator("jwt_public_keys", mode="after")
    @classmethod
    def _public_keys(cls, value: str) -> str:
        VerifyingKeys.from_pem(value)  # InvalidKey (a ValueError) says what is wrong
        return value

    @field_validator("jwt_private_key", mode="after")
    @classmethod
    def _private_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            SigningKey.from_pem(value.get_secret_value())
        return value

    def verifying_keys(self) -> VerifyingKeys:
        return VerifyingKeys.from_pem(self.jwt_public_keys)  # parsed once (cached)

    def signing_key(self) -> SigningKey | None:
        if self.jwt_private_key is None:
            return None
        return SigningKey.from_pem(self.jwt_private_key.get_secret_value())


class LimitSpec(BaseModel):
    limit: int = Field(gt=0)
    window_s: float = Field(gt=0, le=int(keys.RATE_LIMIT_MAX_WINDOW.total_seconds()))


class RoutePolicy(BaseModel):
    """The limits of one route, per client IP, per user and per account (the username a
    login names), decided in the same round trip."""

    per_ip: list[LimitSpec] = Field(default_factory=list)
    per_user: list[LimitSpec] = Field(default_factory=list)
    # Only for a route whose body names an account (login): guesses at one account from
    # many addresses, which no per-IP limit sees.
    per_account: list[LimitSpec] = Field(default_factory=list)
    algorithm: Algorithm = Algorithm.SLIDING_LOG
    on_redis_error: Literal["open", "closed"] = "open"

    def policy(self, specs: list[LimitSpec]) -> Policy | None:
        if not specs:
            return None
        limits = tuple(Limit(s.limit, timedelta(seconds=s.window_s)) for s in specs)
        return Policy(limits, self.algorithm, self.on_redis_error)


# The routes whose request names an account (the username of a login).
ACCOUNT_ROUTES = frozenset({"login"})


def _limits(*pairs: tuple[int, float]) -> list[LimitSpec]:
    return [LimitSpec(limit=n, window_s=w) for n, w in pairs]


# The policy table: route name (`registry.Route.name`) -> limits. Route names are the fixed
# table rate-limit keys are built from; a request that matches no route never reaches a key.
DEFAULT_RATE_LIMITS: dict[str, RoutePolicy] = {
    # Password guessing: refuse (503) rather than admit when the limiter cannot decide.
    # Per account as well as per IP: guesses spread over many addresses (a botnet, or every
    # client behind one proxy) still meet the account's limit. A user needs a few logins a
    # day; the account's owner is locked out for at most the window while it is attacked.
    "login": RoutePolicy(
        per_ip=_limits((10, 60), (100, 3600)),
        per_account=_limits((10, 60), (30, 3600)),
        on_redis_error="closed",
    ),
    "refresh": RoutePolicy(per_ip=_limits((30, 60))),
    "logout": RoutePolicy(per_user=_limits((30, 60))),
    "courses.list": RoutePolicy(per_ip=_limits((300, 60)), per_user=_limits((120, 60))),
    "courses.read": RoutePolicy(per_ip=_limits((600, 60)), per_user=_limits((300, 60))),
    "courses.write": RoutePolicy(per_user=_limits((30, 60))),
    "enrollments.create": RoutePolicy(
        per_user=_limits((10, 1), (1000, 3600)), algorithm=Algorithm.GCRA
    ),
    "enrollments.list": RoutePolicy(per_user=_limits((120, 60))),
}
# A route of the registry the table above does not name (a new service's, say) is limited
# all the same, as a plain read: forgetting to tune it must not leave it unlimited.
UNLISTED_ROUTE_POLICY = RoutePolicy(per_ip=_limits((300, 60)), per_user=_limits((120, 60)))


def default_rate_limits() -> dict[str, RoutePolicy]:
    """Every route of the registry with its default policy."""
    return {
        name: DEFAULT_RATE_LIMITS.get(name, UNLISTED_ROUTE_POLICY) for name in registry.ROUTE_NAMES
    }


class GatewaySettings(BaseSettings):
    """The gateway's upstreams, trusted proxies and rate-limit policy table."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    # Service name -> URL, one per upstream of the registry; each is read from its own
    # variable (GATEWAY_AUTH_URL, ...: `_UpstreamUrls`), a missing one takes its default.
    upstreams: dict[str, str] = Field(default_factory=registry.default_upstream_urls)
    # X-Forwarded-For is believed only when the peer is one of these networks.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # JSON object route -> RoutePolicy; replaces the defaults of the routes it names.
    rate_limits: Annotated[dict[str, RoutePolicy], NoDecode] = Field(
        default_factory=default_rate_limits
    )
    upstream_timeout_s: float = Field(default=10.0, gt=0)
    upstream_max_connections: int = Field(default=200, ge=1)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            _UpstreamUrls(settings_cls),
            env_settings,
            dotenv_settings,
            file_secret_settings,
        )

    @field_validator("upstreams", mode="after")
    @classmethod
    def _every_upstream(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = set(value) - {s.name for s in registry.UPSTREAMS}
        if unknown:
            raise ValueError(f"unknown upstreams {sorted(unknown)}")
        return {**registry.default_upstream_urls(), **value}

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad entry
        return value

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _merge_limits(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value)
        unknown = set(value) - set(registry.ROUTE_NAMES)
        if unknown:
            raise ValueError(
                f"unknown routes {sorted(unknown)}; known: {sorted(registry.ROUTE_NAMES)}"
            )
        for route, policy in value.items():
            spec = policy if isinstance(policy, RoutePolicy) else RoutePolicy.model_validate(policy)
            if spec.per_account and route not in ACCOUNT_ROUTES:
                raise ValueError(
                    f"{route}: per_account limits apply to {sorted(ACCOUNT_ROUTES)} only "
                    "(the routes whose body names an account)"
                )
        return {**default_rate_limits(), **value}


class _UpstreamUrls(PydanticBaseSettingsSource):
    """Each upstream's URL from the variable the registry names for it (GATEWAY_AUTH_URL, ...).

    A source of its own because the variables come from the registry rather than from
    fields: adding a service adds its variable without touching these settings.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the variables itself

    def __call__(self) -> dict[str, Any]:
        found = {
            s.name: os.environ[s.upstream.setting]
            for s in registry.UPSTREAMS
            if s.upstream is not None and s.upstream.setting in os.environ
        }
        return {"upstreams": found} if found else {}

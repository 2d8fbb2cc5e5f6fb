"""The stack config of the Pulumi program, typed and validated, without Pulumi.

`Pulumi.<env>.yaml` holds `course-redis:redis` (the topology, read by every part of the
project through `courseredis.environments`) and the keys below, which only the Kubernetes
deployment needs. `StackSettings.from_config` takes the config with the `course-redis:`
prefix stripped, the shape `load_environment(env).config` returns and the one `__main__`
builds from `pulumi.Config`, so tests and `pulumi up` parse the same thing the same way.
Unknown or missing keys are errors naming the key: a typo in a stack file must not deploy a
default. The models below are the one list of the keys: `__main__` reads what they name.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator

from courseredis.config_model import StackConfigModel, describe
from courseredis.environments import RedisTopology, StackConfigError

AntiAffinity = Literal["required", "preferred"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_IMAGE_REPOSITORY = re.compile(r"^[a-z0-9]+([._/:-][a-z0-9]+)*$")
# A tag, or a digest: anything but `latest`, which would make two deploys of one commit
# run different code.
_IMAGE_TAG = re.compile(r"^(?!latest$)[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_IMAGE_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_QUANTITY = re.compile(r"^[1-9][0-9]*(Mi|Gi|Ti)$")


def _unset_if_empty(value: object) -> object:
    # The stack files spell "not set" as "" (the chart's convention), so the key is
    # always present and a missing one stays an error.
    return None if value == "" else value


class ImageRef(StackConfigModel):
    """The project's image (services, cluster bootstrap and repair), pinned by tag, and by
    digest when `digest` is set (then `repository:tag@digest`: the registry cannot serve
    other bytes under the same tag)."""

    repository: str
    tag: str
    digest: str | None = None

    _digest_unset = field_validator("digest", mode="before")(_unset_if_empty)

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is not None and not _IMAGE_DIGEST.match(value):
            raise ValueError(f"{value!r} is not a digest like sha256:<64 hex digits>")
        return value

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        if not _IMAGE_REPOSITORY.match(value):
            raise ValueError(f"{value!r} is not an image name")
        return value

    @field_validator("tag", mode="before")
    @classmethod
    def _tag(cls, value: object) -> str:
        tag = str(value)  # YAML reads `tag: 1.0` as a float
        if not _IMAGE_TAG.match(tag):
            raise ValueError(f"{tag!r} must be a pinned tag, not latest")
        return tag


class RedisDeployment(StackConfigModel):
    """How the Redis pods are placed and guarded; the topology itself is `RedisTopology`."""

    storage_size: str
    storage_class: str | None  # None: the cluster's default StorageClass
    anti_affinity: AntiAffinity
    pod_disruption_budget: bool
    network_policy: bool
    service_monitor: bool
    # The content digest of the engine's official image (`redis.image`), `sha256:<64 hex>`:
    # with it the pods pull exactly those bytes, whatever the tag is moved to. None ("" in
    # the file): pinned by tag only.
    image_digest: str | None = None

    _storage_class = field_validator("storage_class", mode="before")(_unset_if_empty)
    _image_digest = field_validator("image_digest", mode="before")(_unset_if_empty)

    @field_validator("image_digest")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is not None and not _IMAGE_DIGEST.match(value):
            raise ValueError(f"{value!r} is not a digest like sha256:<64 hex>")
        return value

    @field_validator("storage_size")
    @classmethod
    def _size(cls, value: str) -> str:
        if not _QUANTITY.match(value):
            raise ValueError(f"{value!r} is not like 8Gi")
        return value


class Ingress(StackConfigModel):
    enabled: bool
    host: str
    class_name: str | None
    tls_secret: str | None

    _optional = field_validator("class_name", "tls_secret", mode="before")(_unset_if_empty)

    @model_validator(mode="after")
    def _host_when_enabled(self) -> Self:
        if self.enabled and not _DNS_NAME.match(self.host):
            raise ValueError("host is needed when it is enabled")
        return self


class JwtKeys(StackConfigModel):
    """The Ed25519 key pairs access tokens are signed with, by generation number.

    The program generates one key pair per generation in `published` (pulumi-tls, kept in
    the stack's state) and gives every service their public keys (JWT_PUBLIC_KEYS), and
    the signing service alone the private key of `signing` (JWT_PRIVATE_KEY). A rotation
    is three `pulumi up`s, as docs/security.md describes:
    `published: [1, 2]` (publish the new key), then `signing: 2` (sign with it), then,
    after the access-token lifetime, `published: [2]` (the old pair leaves the state).
    """

    # Not strict: YAML has lists, not tuples; the items are still strict ints.
    published: tuple[int, ...] = Field(strict=False)
    signing: int

    @field_validator("published")
    @classmethod
    def _generations(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        # Two at most: the rotation needs the old and the new key side by side, no more.
        if not 1 <= len(value) <= 2 or len(set(value)) != len(value):
            raise ValueError("one key generation, or two during a rotation, e.g. [1, 2]")
        if any(isinstance(n, bool) or n < 1 for n in value):
            raise ValueError("generations are positive integers")
        return value

    @model_validator(mode="after")
    def _signing_is_published(self) -> Self:
        # Tokens signed with a key the verifiers lack would all be refused (auth refuses
        # to start that way too; better to say so at `pulumi up`).
        if self.signing not in self.published:
            raise ValueError(f"signing ({self.signing}) must be one of published")
        return self


class ServicesDeployment(StackConfigModel):
    replicas: int  # per service; the HPA's minimum when max_replicas is larger
    max_replicas: int
    log_level: LogLevel
    # Not strict: YAML has lists, not tuples; the items are still strict strings.
    trusted_proxies: tuple[str, ...] = Field(strict=False)
    ephemeral_database: bool
    service_monitor: bool
    ingress: Ingress
    jwt_keys: JwtKeys

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # its ValueError says what is wrong
        return value

    @model_validator(mode="after")
    def _replica_range(self) -> Self:
        if not 1 <= self.replicas <= self.max_replicas:
            raise ValueError("needs 1 <= replicas <= maxReplicas")
        return self

    @model_validator(mode="after")
    def _published_safely(self) -> Self:
        ingress = self.ingress
        if not ingress.enabled:
            return self
        if not self.trusted_proxies:
            # Behind an ingress every connection comes from the controller's pods: with no
            # proxy trusted, the gateway sees one client, so each per-IP limit becomes one
            # global bucket and a few bad logins lock every user out.
            raise ValueError(
                "ingress.enabled needs trustedProxies: the ingress controller's pod CIDR(s), "
                "whose X-Forwarded-For the gateway believes; with [] every client would be "
                "the controller's address and share one login limit"
            )
        if ingress.tls_secret is None:
            # Passwords and bearer tokens would cross the network in clear.
            raise ValueError(
                "ingress.enabled needs ingress.tlsSecret: a kubernetes.io/tls Secret for "
                "the host (logins and tokens must not travel in clear)"
            )
        return self

    @property
    def autoscaling(self) -> bool:
        return self.max_replicas > self.replicas


class Tls(StackConfigModel):
    enabled: bool
    secret_name: str | None  # a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt

    _secret_name = field_validator("secret_name", mode="before")(_unset_if_empty)

    @model_validator(mode="after")
    def _secret_when_enabled(self) -> Self:
        if self.enabled and self.secret_name is None:
            raise ValueError("enabled needs secretName (a TLS Secret)")
        return self


class StackSettings(StackConfigModel):
    env: str  # the stack's name, not a key of its config
    namespace: str
    cluster_domain: str
    redis: RedisTopology
    redis_deployment: RedisDeployment
    image: ImageRef
    services: ServicesDeployment
    tls: Tls
    # Read apart: the at-scale switch by `infra.loadtest.LoadtestSettings`, the database URL
    # with `Config.get_secret` (never through here). Allowed here so the file may hold them.
    loadtest: object = Field(default=None, exclude=True)
    database_url: object = Field(default=None, exclude=True, repr=False)

    @classmethod
    def from_config(cls, env: str, raw: Mapping[str, Any]) -> StackSettings:
        """Parse the stack config (keys without the `course-redis:` prefix)."""
        source = f"Pulumi.{env}.yaml"
        if "env" in raw:
            raise StackConfigError(f"{source}: env: unknown key")
        try:
            return cls.model_validate({**raw, "env": env})
        except ValidationError as exc:
            raise StackConfigError(f"{source}: {describe(exc)}") from None

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _DNS_LABEL.match(value):
            raise ValueError(f"{value!r} is not a DNS label")
        return value

    @field_validator("cluster_domain")
    @classmethod
    def _cluster_domain(cls, value: str) -> str:
        if not _DNS_NAME.match(value):
            raise ValueError(f"{value!r} is not a name")
        return value

    @model_validator(mode="after")
    def _tls_needs_standalone(self) -> Self:
        if self.tls.enabled and self.redis.mode == "cluster":
            # The cluster bootstrap Job connects without TLS (courseredis.cluster_bootstrap
            # has no TLS option yet), so a TLS-only cluster could never be formed.
            raise ValueError(
                "tls.enabled needs mode standalone until the cluster bootstrap speaks TLS"
            )
        return self


# How `__main__` reads the keys from `pulumi.Config`: strings with `get`, the rest with
# `get_object`; the stack name and the keys read apart are not among them.
_NOT_READ = {"env", "loadtest", "database_url"}
STRING_KEYS = tuple(
    str(f.alias)
    for name, f in StackSettings.model_fields.items()
    if name not in _NOT_READ and f.annotation is str
)
OBJECT_KEYS = tuple(
    str(f.alias)
    for name, f in StackSettings.model_fields.items()
    if name not in _NOT_READ and f.annotation is not str
)

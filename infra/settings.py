"""The stack config of the Pulumi program, typed and validated, without Pulumi.

`Pulumi.<env>.yaml` holds `course-redis:redis` (the topology, read by every part of the
project through `courseredis.environments`) and the keys below, which only the Kubernetes
deployment needs. `StackSettings.from_config` takes the config with the `course-redis:`
prefix stripped, the shape `load_environment(env).config` returns and the one `__main__`
builds from `pulumi.Config`, so tests and `pulumi up` parse the same thing the same way.
Unknown or missing keys are errors: a typo in a stack file must not deploy a default.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from courseredis.environments import RedisTopology, StackConfigError

AntiAffinity = Literal["required", "preferred"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

# The keys of the stack config the program reads, beside `redis`. Strings are read with
# `Config.get`, objects with `Config.get_object`.
STRING_KEYS = ("namespace", "clusterDomain")
OBJECT_KEYS = ("redis", "image", "redisDeployment", "services", "tls")
SECRET_KEYS = ("databaseUrl",)  # read with `Config.get_secret`, never through here
# Optional keys, parsed elsewhere: `loadtest` (the at-scale Locust switch, infra/loadtest.py).
OPTIONAL_KEYS = ("loadtest",)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_IMAGE_REPOSITORY = re.compile(r"^[a-z0-9]+([._/:-][a-z0-9]+)*$")
# A tag, or a digest: anything but `latest`, which would make two deploys of one commit
# run different code.
_IMAGE_TAG = re.compile(r"^(?!latest$)[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_QUANTITY = re.compile(r"^[1-9][0-9]*(Mi|Gi|Ti)$")
_LOG_LEVELS: dict[str, LogLevel] = {
    "DEBUG": "DEBUG",
    "INFO": "INFO",
    "WARNING": "WARNING",
    "ERROR": "ERROR",
}

T = TypeVar("T")


@dataclass(frozen=True)
class ImageRef:
    """The project's image (services, cluster bootstrap and repair), pinned by tag."""

    repository: str
    tag: str


@dataclass(frozen=True)
class RedisDeployment:
    """How the Redis pods are placed and guarded; the topology itself is `RedisTopology`."""

    storage_size: str
    storage_class: str | None
    anti_affinity: AntiAffinity
    pod_disruption_budget: bool
    network_policy: bool
    service_monitor: bool


@dataclass(frozen=True)
class Ingress:
    enabled: bool
    host: str
    class_name: str | None
    tls_secret: str | None


@dataclass(frozen=True)
class ServicesDeployment:
    replicas: int  # per service; the HPA's minimum when max_replicas is larger
    max_replicas: int
    log_level: LogLevel
    trusted_proxies: tuple[str, ...]
    ephemeral_database: bool
    service_monitor: bool
    ingress: Ingress

    @property
    def autoscaling(self) -> bool:
        return self.max_replicas > self.replicas


@dataclass(frozen=True)
class Tls:
    enabled: bool
    secret_name: str | None  # a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt


@dataclass(frozen=True)
class StackSettings:
    env: str
    namespace: str
    cluster_domain: str
    redis: RedisTopology
    redis_deployment: RedisDeployment
    image: ImageRef
    services: ServicesDeployment
    tls: Tls

    @classmethod
    def from_config(cls, env: str, raw: Mapping[str, Any]) -> StackSettings:
        """Parse the stack config (keys without the `course-redis:` prefix)."""
        source = f"Pulumi.{env}.yaml"
        known = set(STRING_KEYS) | set(OBJECT_KEYS) | set(SECRET_KEYS) | set(OPTIONAL_KEYS)
        unknown = set(raw) - known
        missing = (set(STRING_KEYS) | set(OBJECT_KEYS)) - set(raw)
        if unknown or missing:
            raise StackConfigError(
                f"{source}: stack config keys wrong (missing {sorted(missing)}, "
                f"unknown {sorted(unknown)})"
            )
        namespace = _typed(raw, "namespace", str, source)
        if not _DNS_LABEL.match(namespace):
            raise StackConfigError(f"{source}: namespace {namespace!r} is not a DNS label")
        cluster_domain = _typed(raw, "clusterDomain", str, source)
        if not _DNS_NAME.match(cluster_domain):
            raise StackConfigError(f"{source}: clusterDomain {cluster_domain!r} is not a name")
        topology = RedisTopology.from_config(_section(raw, "redis", source), source=source)
        tls = _tls(_section(raw, "tls", source), source)
        if tls.enabled and topology.mode == "cluster":
            # The cluster bootstrap Job connects without TLS (courseredis.cluster_bootstrap
            # has no TLS option yet), so a TLS-only cluster could never be formed.
            raise StackConfigError(
                f"{source}: tls.enabled needs mode standalone until the cluster bootstrap "
                "speaks TLS"
            )
        return cls(
            env=env,
            namespace=namespace,
            cluster_domain=cluster_domain,
            redis=topology,
            redis_deployment=_redis_deployment(_section(raw, "redisDeployment", source), source),
            image=_image(_section(raw, "image", source), source),
            services=_services(_section(raw, "services", source), source),
            tls=tls,
        )


def _section(raw: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    value = raw[key]
    if not isinstance(value, dict):
        raise StackConfigError(f"{source}: {key} must be a mapping, not {value!r}")
    return value


def _keys(section: Mapping[str, Any], name: str, expected: set[str], source: str) -> None:
    unknown, missing = set(section) - expected, expected - set(section)
    if unknown or missing:
        raise StackConfigError(
            f"{source}: {name} keys wrong (missing {sorted(missing)}, unknown {sorted(unknown)})"
        )


def _typed(section: Mapping[str, Any], key: str, kind: type[T], source: str) -> T:
    value = section[key]
    # bool is an int in Python; a `replicas: true` typo must not read as 1.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise StackConfigError(f"{source}: {key} must be a {kind.__name__}, not {value!r}")
    return value


def _optional(value: str) -> str | None:
    return value or None


def _image(section: Mapping[str, Any], source: str) -> ImageRef:
    _keys(section, "image", {"repository", "tag"}, source)
    repository = _typed(section, "repository", str, source)
    tag = str(section["tag"])  # YAML reads `tag: 1.0` as a float
    if not _IMAGE_REPOSITORY.match(repository):
        raise StackConfigError(f"{source}: image.repository {repository!r} is not an image name")
    if not _IMAGE_TAG.match(tag):
        raise StackConfigError(f"{source}: image.tag {tag!r} must be a pinned tag, not latest")
    return ImageRef(repository=repository, tag=tag)


def _redis_deployment(section: Mapping[str, Any], source: str) -> RedisDeployment:
    expected = {
        "storageSize",
        "storageClass",
        "antiAffinity",
        "podDisruptionBudget",
        "networkPolicy",
        "serviceMonitor",
    }
    _keys(section, "redisDeployment", expected, source)
    size = _typed(section, "storageSize", str, source)
    if not _QUANTITY.match(size):
        raise StackConfigError(f"{source}: redisDeployment.storageSize {size!r} is not like 8Gi")
    anti_affinity = _typed(section, "antiAffinity", str, source)
    if anti_affinity not in ("required", "preferred"):
        raise StackConfigError(
            f"{source}: redisDeployment.antiAffinity is required or preferred, not "
            f"{anti_affinity!r}"
        )
    return RedisDeployment(
        storage_size=size,
        storage_class=_optional(_typed(section, "storageClass", str, source)),
        anti_affinity="required" if anti_affinity == "required" else "preferred",
        pod_disruption_budget=_typed(section, "podDisruptionBudget", bool, source),
        network_policy=_typed(section, "networkPolicy", bool, source),
        service_monitor=_typed(section, "serviceMonitor", bool, source),
    )


def _services(section: Mapping[str, Any], source: str) -> ServicesDeployment:
    expected = {
        "replicas",
        "maxReplicas",
        "logLevel",
        "trustedProxies",
        "ephemeralDatabase",
        "serviceMonitor",
        "ingress",
    }
    _keys(section, "services", expected, source)
    replicas = _typed(section, "replicas", int, source)
    max_replicas = _typed(section, "maxReplicas", int, source)
    if not 1 <= replicas <= max_replicas:
        raise StackConfigError(f"{source}: services needs 1 <= replicas <= maxReplicas")
    level = _typed(section, "logLevel", str, source)
    if level not in _LOG_LEVELS:
        raise StackConfigError(f"{source}: services.logLevel is one of {sorted(_LOG_LEVELS)}")
    proxies = _typed(section, "trustedProxies", list, source)
    for network in proxies:
        try:
            ipaddress.ip_network(network, strict=False)
        except (TypeError, ValueError) as exc:
            raise StackConfigError(f"{source}: services.trustedProxies: {exc}") from exc
    ingress = _section(section, "ingress", source)
    _keys(ingress, "services.ingress", {"enabled", "host", "className", "tlsSecret"}, source)
    enabled = _typed(ingress, "enabled", bool, source)
    host = _typed(ingress, "host", str, source)
    if enabled and not _DNS_NAME.match(host):
        raise StackConfigError(f"{source}: services.ingress.host is needed when it is enabled")
    return ServicesDeployment(
        replicas=replicas,
        max_replicas=max_replicas,
        log_level=_LOG_LEVELS[level],
        trusted_proxies=tuple(str(p) for p in proxies),
        ephemeral_database=_typed(section, "ephemeralDatabase", bool, source),
        service_monitor=_typed(section, "serviceMonitor", bool, source),
        ingress=Ingress(
            enabled=enabled,
            host=host,
            class_name=_optional(_typed(ingress, "className", str, source)),
            tls_secret=_optional(_typed(ingress, "tlsSecret", str, source)),
        ),
    )


def _tls(section: Mapping[str, Any], source: str) -> Tls:
    _keys(section, "tls", {"enabled", "secretName"}, source)
    enabled = _typed(section, "enabled", bool, source)
    secret = _optional(_typed(section, "secretName", str, source))
    if enabled and secret is None:
        raise StackConfigError(f"{source}: tls.enabled needs tls.secretName (a TLS Secret)")
    return Tls(enabled=enabled, secret_name=secret)

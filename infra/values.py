"""From stack settings to chart values, names and endpoints: pure functions, no Pulumi.

The charts' defaults describe a generic deployment; what makes it `dev` or `prod` (the
topology, memory, persistence, placement, the project image, the Secret names) is passed
from here, computed from the stack settings, so the charts and the Pulumi program cannot
disagree about it. Nothing here is secret: Secrets are referred to by name only, and their
content lives in Kubernetes Secrets the program writes from secret outputs.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from typing import Any

from courseredis.environments import RedisTopology
from courseredis.redis_config import (
    APPENDFSYNC,
    DEFAULT_ADMIN_USER,
    MAXMEMORY_POLICY,
    REPLICATION_USER,
)
from courseredis.services import registry
from courseredis.services.db.prepare import SMOKE_USERNAME
from courseredis.services.settings import METRICS_PORT as DEFAULT_METRICS_PORT
from infra.settings import StackSettings

REPO_CHARTS = "charts"
REDIS_CHART = f"{REPO_CHARTS}/redis"
SERVICES_CHART = f"{REPO_CHARTS}/services"

# The Redis release's full name: the StatefulSet `redis`, its pods `redis-0`, ..., the
# headless Service `redis-headless` and the client Service `redis`.
REDIS_NAME = "redis"
REDIS_PORT = 6379
CLUSTER_BUS_PORT = 16379
SERVICE_PORT = 8000
# Where each service serves /metrics (METRICS_PORT), apart from SERVICE_PORT: the services'
# own default, so the chart and a service started by hand agree.
METRICS_PORT = DEFAULT_METRICS_PORT

ADMIN_USER = DEFAULT_ADMIN_USER
EXPORTER_USER = "exporter"
# Replicas authenticate to their master as this account (PSYNC, REPLCONF, PING only), never
# as the admin: its password sits in every node's config, where `CONFIG GET` reaches it.
REPLICATION_ACCOUNT = REPLICATION_USER


@dataclass(frozen=True)
class SecretNames:
    """The Kubernetes Secrets the program writes; charts only ever see these names."""

    admin: str = "redis-admin"  # username, password: operators, bootstrap Job, probes
    exporter: str = "redis-exporter"  # username, password: the metrics sidecar
    replication: str = "redis-replication"  # username, password: replicas to their master
    acl: str = "redis-acl"  # users.acl: the ACL file every Redis node loads
    loadtest: str = "redis-loadtest"  # username, password: the redis_direct load suite
    # private-key.pem: the key access tokens are signed with (the signing service only)
    jwt_private: str = "jwt-signing-key"
    # public-keys.pem: the keys access tokens are verified with (every service)
    jwt_public: str = "jwt-public-keys"
    database: str = "database"  # url: DATABASE_URL of the services that use the database
    # username, password: the smoke suite's student, which the services chart's
    # prepare-database init containers create (they alone read it) and `smokeCommand` names
    smoke: str = "smoke-account"

    def service(self, service: str) -> str:
        """The Secret (username, password) of one service's ACL user."""
        return f"redis-user-{service}"


SECRETS = SecretNames()
ACL_FILE_KEY = "users.acl"
# The smoke suite's student account, in `SECRETS.smoke` with its generated password.
SMOKE_ACCOUNT = SMOKE_USERNAME
JWT_PRIVATE_KEY_FILE = "private-key.pem"
JWT_PUBLIC_KEYS_FILE = "public-keys.pem"

# The labels of the pods allowed to call the services directly (the services chart's
# NetworkPolicies admit them besides the gateway): the Locust pods and in-cluster smoke runs.
TEST_CLIENT_LABELS = {"course-redis/test-client": "true"}
# The services whose /metrics the HTTP load suites read (server-side figures: courses' cache
# counters, enrollments' lock wait): the Locust chart's URLs and the services chart's
# NetworkPolicies, which admit the test clients to these services' metrics port only.
LOAD_METRICS_SERVICES = ("courses", "enrollments")


# --- Redis ----------------------------------------------------------------------------------


def redis_pod_hosts(settings: StackSettings) -> list[str]:
    """Every Redis pod's stable DNS name, in ordinal order (what cluster nodes announce)."""
    count = settings.redis.node_count
    domain = f"{REDIS_NAME}-headless.{settings.namespace}.svc.{settings.cluster_domain}"
    return [f"{REDIS_NAME}-{ordinal}.{domain}" for ordinal in range(count)]


def redis_pod_testinfra_hosts(settings: StackSettings) -> list[str]:
    """Every Redis pod as a testinfra host, its `redis` container reached by kubectl exec."""
    return [
        f"kubectl://{REDIS_NAME}-{ordinal}?namespace={settings.namespace}&container=redis"
        for ordinal in range(settings.redis.node_count)
    ]


def redis_nodes(settings: StackSettings) -> list[str]:
    """`host:port` of every Redis pod: the cluster's seed list and the bootstrap's nodes."""
    return [f"{host}:{REDIS_PORT}" for host in redis_pod_hosts(settings)]


def redis_service_host(settings: StackSettings) -> str:
    return f"{REDIS_NAME}.{settings.namespace}.svc.{settings.cluster_domain}"


def redis_url(settings: StackSettings) -> str:
    """The standalone node's URL, through the client Service (`rediss://` with TLS)."""
    scheme = "rediss" if settings.tls.enabled else "redis"
    return f"{scheme}://{redis_service_host(settings)}:{REDIS_PORT}/0"


def redis_endpoints(settings: StackSettings) -> list[str]:
    """What clients are given: the client Service, or every cluster node."""
    if settings.redis.mode == "cluster":
        return redis_nodes(settings)
    return [f"{redis_service_host(settings)}:{REDIS_PORT}"]


_MEMORY = re.compile(r"^([1-9][0-9]*)(b|kb|mb|gb)$")
_UNIT = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}  # Redis' `mb` is 1024*1024


def maxmemory_bytes(maxmemory: str) -> int:
    match = _MEMORY.match(maxmemory)
    if match is None:
        raise ValueError(f"maxmemory {maxmemory!r} is not like 256mb")
    return int(match.group(1)) * _UNIT[match.group(2)]


def redis_memory(topology: RedisTopology) -> tuple[str, str]:
    """The redis container's memory (request, limit), in Mi, from `maxmemory`.

    `maxmemory` bounds the dataset, not the process: replication and client buffers come on
    top, and an AOF rewrite forks, so copy-on-write can approach another dataset under heavy
    writes. The request leaves half again for buffers; the limit doubles the dataset so
    the kernel does not kill a node in the middle of a rewrite.
    """
    dataset_mi = math.ceil(maxmemory_bytes(topology.maxmemory) / 1024**2)
    return f"{math.ceil(dataset_mi * 1.5)}Mi", f"{dataset_mi * 2}Mi"


def image_values(settings: StackSettings) -> dict[str, str]:
    """The project's image as the charts take it: `digest` "" renders `repository:tag`."""
    image = settings.image
    return {"repository": image.repository, "tag": image.tag, "digest": image.digest or ""}


def redis_chart_values(settings: StackSettings) -> dict[str, Any]:
    """The Redis chart's values for a stack (merged by Helm over `values.yaml`)."""
    topology = settings.redis
    deployment = settings.redis_deployment
    request, limit = redis_memory(topology)
    clustered = topology.mode == "cluster"
    cluster: dict[str, Any] = {
        "nodeTimeoutMs": topology.cluster_node_timeout_ms,
        "busPort": CLUSTER_BUS_PORT,
    }
    if clustered:
        cluster |= {"masters": topology.masters, "replicasPerMaster": topology.replicas_per_master}
    return {
        "fullnameOverride": REDIS_NAME,
        "clusterDomain": settings.cluster_domain,
        "mode": topology.mode,
        # The stack's engine at its pinned version, as that engine's official image.
        "engine": topology.engine,
        "image": {
            "repository": topology.image[0],
            "tag": topology.image[1],
            "digest": deployment.image_digest or "",
        },
        "port": REDIS_PORT,
        "maxmemory": topology.maxmemory,
        "maxmemoryPolicy": MAXMEMORY_POLICY,
        "appendonly": topology.persistence == "aof",
        "appendfsync": APPENDFSYNC,
        "cluster": cluster,
        "bootstrapImage": image_values(settings),
        # A cluster node keeps nodes.conf, its identity, on the volume even without AOF.
        "persistence": {
            "enabled": clustered or topology.persistence == "aof",
            "size": deployment.storage_size,
            "storageClass": deployment.storage_class or "",
        },
        "auth": {
            "aclSecret": {"name": SECRETS.acl, "key": ACL_FILE_KEY},
            "adminSecret": {"name": SECRETS.admin},
            "replicationSecret": {"name": SECRETS.replication},
        },
        "metrics": {
            "secret": {"name": SECRETS.exporter},
            "serviceMonitor": {"enabled": deployment.service_monitor},
        },
        "tls": {
            "enabled": settings.tls.enabled,
            "secretName": settings.tls.secret_name or "",
        },
        "antiAffinity": deployment.anti_affinity,
        "podDisruptionBudget": {"enabled": deployment.pod_disruption_budget, "maxUnavailable": 1},
        "networkPolicy": {"enabled": deployment.network_policy},
        "resources": {
            "redis": {
                "requests": {"cpu": "250m" if clustered else "100m", "memory": request},
                "limits": {"cpu": "1", "memory": limit},
            },
        },
    }


# --- services -------------------------------------------------------------------------------


def service_url(service: str) -> str:
    """How the gateway reaches an upstream: its Service, in the same namespace."""
    return f"http://{service}:{SERVICE_PORT}"


def gateway_service(settings: StackSettings) -> str:
    return f"gateway.{settings.namespace}.svc.{settings.cluster_domain}:{SERVICE_PORT}"


def gateway_url(settings: StackSettings) -> str:
    """The gateway's URL: the Ingress host when published, else the in-cluster Service."""
    ingress = settings.services.ingress
    if ingress.enabled:
        scheme = "https" if ingress.tls_secret else "http"
        return f"{scheme}://{ingress.host}"
    return f"http://{gateway_service(settings)}"


def services_chart_values(settings: StackSettings) -> dict[str, Any]:
    """The services chart's values for a stack (merged by Helm over `values.yaml`).

    The services come from the registry, each with what its record says it needs (the
    database, the signing key, replica acknowledgements): the chart names none of them.
    """
    services = settings.services
    ingress = services.ingress
    per_service = {
        s.name: {
            "replicas": services.replicas,
            "autoscaling": {
                "enabled": services.autoscaling,
                "minReplicas": services.replicas,
                "maxReplicas": services.max_replicas,
            },
            "podDisruptionBudget": {"enabled": services.replicas > 1},
            "redisSecret": SECRETS.service(s.name),
            "usesDatabase": s.uses_database,
            "signsTokens": s.signs_tokens,
            "waitsForReplicas": s.waits_for_replicas,
        }
        for s in registry.SERVICES
    }
    redis: dict[str, Any] = {"mode": settings.redis.mode, "tls": settings.tls.enabled}
    if settings.redis.mode == "cluster":
        redis["clusterNodes"] = ",".join(redis_nodes(settings))
    else:
        redis["url"] = redis_url(settings)
    if settings.tls.enabled:
        redis["caSecret"] = settings.tls.secret_name
    redis["logoutReplicaAcks"] = settings.redis.logout_replica_acks
    return {
        "image": image_values(settings),
        "port": SERVICE_PORT,
        "metricsPort": METRICS_PORT,
        "logLevel": services.log_level,
        "services": per_service,
        "redis": redis,
        "database": {"secretName": SECRETS.database, "key": "url"},
        "smokeAccount": {"secretName": SECRETS.smoke},
        "jwt": {
            "publicKeys": {"secretName": SECRETS.jwt_public, "key": JWT_PUBLIC_KEYS_FILE},
            "privateKey": {"secretName": SECRETS.jwt_private, "key": JWT_PRIVATE_KEY_FILE},
        },
        "gateway": {
            "service": registry.PUBLIC,
            "upstreams": {s.name: service_url(s.name) for s in registry.UPSTREAMS},
            "trustedProxies": list(services.trusted_proxies),
            "ingress": {
                "enabled": ingress.enabled,
                "host": ingress.host,
                "className": ingress.class_name or "",
                "tlsSecret": ingress.tls_secret or "",
            },
        },
        "serviceMonitor": {"enabled": services.service_monitor},
        # The stack's one NetworkPolicy switch (redisDeployment.networkPolicy) covers both.
        "networkPolicy": {
            "enabled": settings.redis_deployment.network_policy,
            "testClientLabels": dict(TEST_CLIENT_LABELS),
            "testClientMetrics": list(LOAD_METRICS_SERVICES),
        },
    }


def service_metrics_url(settings: StackSettings, service: str) -> str:
    """A service's /metrics, through its Service's metrics port."""
    host = f"{service}.{settings.namespace}.svc.{settings.cluster_domain}"
    return f"http://{host}:{METRICS_PORT}/metrics"


def ephemeral_database_url() -> str:
    """A throwaway SQLite file per pod, in the writable /tmp: for a dev stack to start."""
    return "sqlite+aiosqlite:////tmp/courseredis.db"


# --- after the deploy -----------------------------------------------------------------------


def smoke_command(settings: StackSettings) -> str:
    """The post-deploy smoke run for this stack, ready to paste (from where the names resolve).

    SMOKE_REDIS_PASSWORD_SECRET is `<namespace>/<secret>`: the smoke suite reads the admin
    password from that Secret's `password` key, so no password is ever printed; the same
    for SMOKE_STUDENT_SECRET, the smoke student the rollout created (`username`,
    `password`), which drives the flows. SMOKE_HOSTS names every Redis pod for the
    testinfra checks (through kubectl exec).
    """
    env = {
        "SMOKE_GATEWAY_URL": gateway_url(settings),
        "SMOKE_REDIS_NODES": ",".join(redis_endpoints(settings)),
        "SMOKE_REDIS_USERNAME": ADMIN_USER,
        "SMOKE_REDIS_PASSWORD_SECRET": f"{settings.namespace}/{SECRETS.admin}",
        "SMOKE_STUDENT_SECRET": f"{settings.namespace}/{SECRETS.smoke}",
        "SMOKE_HOSTS": ",".join(redis_pod_testinfra_hosts(settings)),
    }
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " make smoke"

"""The at-scale switch: `course-redis:loadtest` in the stack config, and the Locust chart's
values it leads to. Pure functions, no Pulumi (like `infra.values`).

Off unless `enabled: true`; absent means off. When on, the program deploys `charts/locust`
into the stack's namespace: a Locust master and workers running one suite of `loadtests/`
(the files go in a ConfigMap through the chart's values) against the gateway's Service.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from courseredis.config_model import describe
from courseredis.environments import StackConfigError
from infra.kube import REPO_ROOT
from infra.settings import ImageRef, StackSettings
from infra.values import (
    LOAD_METRICS_SERVICES,
    REPO_CHARTS,
    SECRETS,
    TEST_CLIENT_LABELS,
    gateway_service,
    redis_nodes,
    redis_url,
    service_metrics_url,
)

LOCUST_CHART = f"{REPO_CHARTS}/locust"
LOCUST_RELEASE = "locust"
LOADTESTS = REPO_ROOT / "loadtests"
SUITES = ("rate_limiting", "lock_contention", "cache_hit_ratio", "redis_direct", "login_burst")
# What a run imports, as paths under loadtests/: the suites and the modules they share,
# the `loadtests.common` package whole (not the `make load` driver).
LOCUSTFILES = (
    "__init__.py",
    "analysis.py",
    *(f"common/{module.name}" for module in sorted((LOADTESTS / "common").glob("*.py"))),
    "gates.py",
    "target.py",
    *(f"{suite}.py" for suite in SUITES),
)
DEFAULT_CREDENTIALS_SECRET = "loadtest-credentials"
KEYS = {
    "enabled",
    "suite",
    "workers",
    "users",
    "spawnRate",
    "runTime",
    "runId",
    "headless",
    "credentialsSecret",
    "image",
    "env",
}
_RUN_TIME = re.compile(r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$")
_RUN_ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?$")
_ENV = re.compile(r"^(LOAD|LOCUST)_[A-Z0-9_]+$")


@dataclass(frozen=True)
class LoadtestSettings:
    enabled: bool = False
    suite: str = "cache_hit_ratio"
    workers: int = 2
    users: int = 100
    spawn_rate: float = 10.0
    run_time: str = "5m"
    run_id: str = "1"
    headless: bool = True
    credentials_secret: str = DEFAULT_CREDENTIALS_SECRET
    image: ImageRef | None = None  # None: the project's image repository + "-load"
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None, source: str) -> LoadtestSettings:
        """Parse `course-redis:loadtest` (None or absent: off). Unknown keys are errors."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise StackConfigError(f"{source}: loadtest must be a mapping, not {raw!r}")
        unknown = set(raw) - KEYS
        if unknown:
            raise StackConfigError(
                f"{source}: loadtest keys unknown: {sorted(unknown)} (known: {sorted(KEYS)})"
            )
        defaults = cls()

        def typed(key: str, kind: type, default: Any) -> Any:
            value = raw.get(key, default)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise StackConfigError(f"{source}: loadtest.{key} must be {kind.__name__}")
            return value

        suite = typed("suite", str, defaults.suite)
        if suite not in SUITES:
            raise StackConfigError(f"{source}: loadtest.suite is one of {', '.join(SUITES)}")
        workers = typed("workers", int, defaults.workers)
        users = typed("users", int, defaults.users)
        if workers < 1 or users < 1:
            raise StackConfigError(f"{source}: loadtest.workers and users must be at least 1")
        spawn_rate = raw.get("spawnRate", defaults.spawn_rate)
        if (
            isinstance(spawn_rate, bool)
            or not isinstance(spawn_rate, int | float)
            or (spawn_rate <= 0)
        ):
            raise StackConfigError(f"{source}: loadtest.spawnRate must be a positive number")
        run_time = typed("runTime", str, defaults.run_time)
        if len(run_time) < 2 or not _RUN_TIME.match(run_time):
            raise StackConfigError(f"{source}: loadtest.runTime is like 5m, 90s or 1h30m")
        run_id = str(raw.get("runId", defaults.run_id))
        if not _RUN_ID.match(run_id):
            raise StackConfigError(f"{source}: loadtest.runId is a short DNS label, like 2")
        env = typed("env", dict, {})
        for name, value in env.items():
            if not _ENV.match(str(name)) or not isinstance(value, str | int | float):
                raise StackConfigError(
                    f"{source}: loadtest.env holds LOAD_*/LOCUST_* variables, not {name!r}"
                )
        image = raw.get("image")
        ref = None
        if image is not None:
            try:
                ref = ImageRef.model_validate(image)
            except ValidationError as exc:
                within = "loadtest.image"
                raise StackConfigError(f"{source}: {describe(exc, within)}") from None
        return cls(
            enabled=typed("enabled", bool, False),
            suite=suite,
            workers=workers,
            users=users,
            spawn_rate=float(spawn_rate),
            run_time=run_time,
            run_id=run_id,
            headless=typed("headless", bool, True),
            credentials_secret=typed("credentialsSecret", str, defaults.credentials_secret),
            image=ref,
            env={str(k): str(v) for k, v in env.items()},
        )


def read_locustfiles(directory: Path = LOADTESTS) -> dict[str, str]:
    """The files a run needs, path under loadtests/ -> content, for the chart's ConfigMap."""
    return {name: (directory / name).read_text() for name in LOCUSTFILES}


def load_image(settings: StackSettings, loadtest: LoadtestSettings) -> ImageRef:
    """The image with Locust: given, else the project image's repository + `-load`, same tag
    (built by loadtests/Dockerfile from the project's image)."""
    if loadtest.image is not None:
        return loadtest.image
    return ImageRef(repository=f"{settings.image.repository}-load", tag=settings.image.tag)


def locust_chart_values(
    settings: StackSettings, loadtest: LoadtestSettings, locustfiles: Mapping[str, str]
) -> dict[str, Any]:
    """The Locust chart's values for a stack: the gateway and services in its namespace."""
    image = load_image(settings, loadtest)
    redis_direct = loadtest.suite == "redis_direct"
    redis: dict[str, Any] = {
        "mode": settings.redis.mode,
        "url": "" if settings.redis.mode == "cluster" else redis_url(settings),
        "clusterNodes": ",".join(redis_nodes(settings)) if settings.redis.mode == "cluster" else "",
        # The suite's own ACL user (courseredis.acl.loadtest_user): its patterns' commands
        # on the suite's own keys, never the admin. Its password stays in the Secret.
        "secretName": SECRETS.loadtest if redis_direct else "",
    }
    return {
        "nameOverride": LOCUST_RELEASE,
        "image": {
            "repository": image.repository,
            "tag": image.tag,
            "digest": image.digest or "",
            "pullPolicy": "IfNotPresent",
        },
        "suite": loadtest.suite,
        "locustfiles": dict(locustfiles),
        "host": "" if redis_direct else f"http://{gateway_service(settings)}",
        "headless": loadtest.headless,
        "runId": loadtest.run_id,
        "users": loadtest.users,
        "spawnRate": loadtest.spawn_rate,
        "runTime": loadtest.run_time,
        "env": dict(loadtest.env),
        "credentialsSecret": {"name": loadtest.credentials_secret, "key": "credentials.json"},
        # On the services' metrics port, which their NetworkPolicies open to the test
        # clients for these services only (LOAD_METRICS_SERVICES).
        "metricsUrls": {
            name: service_metrics_url(settings, name) for name in LOAD_METRICS_SERVICES
        },
        "redis": redis,
        "workers": {
            "replicas": loadtest.workers,
            "resources": {
                "requests": {"cpu": "500m", "memory": "256Mi"},
                "limits": {"cpu": "1", "memory": "1Gi"},
            },
        },
        # Only a Redis-direct run talks to Redis: only then does it need the label the
        # Redis NetworkPolicy admits. The others call the services (the gateway, and the
        # upstreams' /metrics): the label the services' NetworkPolicies admit.
        "podLabels": {"course-redis/redis-client": "true"}
        if redis_direct
        else dict(TEST_CLIENT_LABELS),
    }


def loadtest_command(settings: StackSettings, loadtest: LoadtestSettings) -> str:
    """How to follow the run: the master Job's log, or the web UI."""
    namespace = settings.namespace
    if loadtest.headless:
        return f"kubectl -n {namespace} logs -f job/{LOCUST_RELEASE}-master-{loadtest.run_id}"
    return f"kubectl -n {namespace} port-forward svc/{LOCUST_RELEASE}-master 8089:8089"

"""The at-scale switch: `course-redis:loadtest` in the stack config, and the Locust chart's
values it leads to. Pure functions, no Pulumi (like `infra.values`).

Off unless `enabled: true`; absent means off. When on, the program deploys `charts/locust`
into the stack's namespace: a Locust master and workers running one suite of `loadtests/`
(the files go in a ConfigMap through the chart's values) against the gateway's Service.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from courseredis.config_model import StackConfigModel, describe
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
_RUN_TIME = re.compile(r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$")
_RUN_ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?$")
_ENV = re.compile(r"^(LOAD|LOCUST)_[A-Z0-9_]+$")


class LoadtestSettings(StackConfigModel):
    """`course-redis:loadtest`: camelCase keys as in the stack file, unknown keys refused."""

    enabled: bool = False
    suite: str = "cache_hit_ratio"
    workers: int = Field(default=2, ge=1)
    users: int = Field(default=100, ge=1)
    spawn_rate: float = Field(default=10.0, gt=0)
    run_time: str = "5m"
    run_id: str = "1"
    headless: bool = True
    credentials_secret: str = DEFAULT_CREDENTIALS_SECRET
    image: ImageRef | None = None  # None: the project's image repository + "-load"
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("suite")
    @classmethod
    def _known_suite(cls, suite: str) -> str:
        if suite not in SUITES:
            raise ValueError(f"one of {', '.join(SUITES)}, not {suite!r}")
        return suite

    @field_validator("spawn_rate", mode="before")
    @classmethod
    def _a_number(cls, value: object) -> object:
        # An int is a rate too (YAML writes 10 for 10.0); a bool is not.
        return float(value) if type(value) is int else value

    @field_validator("run_time")
    @classmethod
    def _a_duration(cls, run_time: str) -> str:
        if len(run_time) < 2 or not _RUN_TIME.match(run_time):
            raise ValueError(f"like 5m, 90s or 1h30m, not {run_time!r}")
        return run_time

    @field_validator("run_id", mode="before")
    @classmethod
    def _a_label(cls, value: object) -> str:
        # `runId: 2` is how people bump it; it is a label all the same.
        text = str(value) if type(value) is int else value
        if not isinstance(text, str) or not _RUN_ID.match(text):
            raise ValueError(f"a short DNS label, like 2, not {value!r}")
        return text

    @field_validator("env", mode="before")
    @classmethod
    def _load_variables(cls, value: object) -> object:
        if not isinstance(value, Mapping):
            return value  # the type check says what is wrong
        for name, item in value.items():
            if not _ENV.match(str(name)) or isinstance(item, bool):
                raise ValueError(f"LOAD_*/LOCUST_* variables only, not {name!r}")
            if not isinstance(item, str | int | float):
                raise ValueError(f"{name} is a string or a number, not {item!r}")
        return {str(name): str(item) for name, item in value.items()}

    @classmethod
    def from_config(cls, raw: object, source: str) -> LoadtestSettings:
        """Parse `course-redis:loadtest` (None or absent: off)."""
        if raw is None:
            return cls()
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise StackConfigError(f"{source}: {describe(exc, 'loadtest')}") from None


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

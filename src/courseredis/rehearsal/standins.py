"""What the rehearsal runs in place of what a stack leaves to its operator: the database.

A stack that declares no database of its own (prod: `ephemeralDatabase: false`) expects the
operator's PostgreSQL, named by the secret `databaseUrl`. The rehearsal runs one PostgreSQL
instead, shared by every service pod as the operator's would be (two enrollments pods
must see one another's enrollments; a user registered through one auth pod must log in
through the other). It is plain Kubernetes objects, which `translate()` runs unchanged as
it runs the program's: a Secret with a random password, a Deployment of the image
`images.STAND_IN_POSTGRES` with a readiness probe, and a headless Service `postgres` in
the stack's namespace; and the URL the program is given as `databaseUrl`.

The objects carry `app.kubernetes.io/managed-by: courseredis-rehearsal` (`is_stand_in`):
they are the rehearsal's, never counted as declared by the program.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from courseredis.environments import load_environment
from courseredis.rehearsal.images import (
    POSTGRES_HOME,
    POSTGRES_MAJOR,
    POSTGRES_UID,
    STAND_IN_POSTGRES,
)
from infra.settings import StackSettings

NAME = "postgres"  # the Secret, the Deployment and the Service
PORT = 5432
USER = "courses"
DATABASE = "courses"
MANAGED_BY = ("app.kubernetes.io/managed-by", "courseredis-rehearsal")
SELECTOR = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "database"}


@dataclass(frozen=True)
class StandIn:
    """Objects to run before the program's, the config they answer, and the summary's note."""

    objects: list[dict[str, Any]]
    config: dict[str, str]  # secret config keys for the program (`deploy(secrets=...)`)
    note: str


def stack_settings(env: str) -> StackSettings:
    """The stack's settings as the program parses them (`Pulumi.<env>.yaml`)."""
    return StackSettings.from_config(env, load_environment(env).config)


def database_for(settings: StackSettings) -> StandIn | None:
    """The stand-in PostgreSQL a stack needs; None when it declares its own database (dev's
    throwaway SQLite per pod, `ephemeralDatabase`), which the rehearsal runs as declared."""
    if settings.services.ephemeral_database:
        return None
    return postgres(settings.namespace, settings.cluster_domain)


def postgres(namespace: str, cluster_domain: str) -> StandIn:
    """A new stand-in PostgreSQL (a new random password each call) in `namespace`."""
    password = secrets.token_hex(24)  # URL-safe as it is; quoted below all the same
    host = f"{NAME}.{namespace}.svc.{cluster_domain}"
    url = f"postgresql+asyncpg://{USER}:{quote(password, safe='')}@{host}:{PORT}/{DATABASE}"

    def metadata() -> dict[str, Any]:  # a dict of its own per object: nothing shared
        return {"name": NAME, "namespace": namespace, "labels": _labels()}

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(),
        "type": "Opaque",
        "stringData": {"password": password},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # never two servers, even for a moment
            "selector": {"matchLabels": dict(SELECTOR)},
            "template": {"metadata": {"labels": _labels()}, "spec": _pod()},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(),
        # Headless: the name lists the ready pod's IP, which is all the rehearsal's DNS can
        # do for any Service (it has no virtual IPs), so nothing here is "not honoured".
        "spec": {
            "clusterIP": "None",
            "selector": dict(SELECTOR),
            "ports": [{"name": NAME, "port": PORT, "targetPort": NAME}],
        },
    }
    note = (
        f"databaseUrl: a stand-in PostgreSQL pod, from Debian's postgresql {POSTGRES_MAJOR}, "
        "shared by the services, as the operator's database would be "
        f"(Secret, Deployment and Service {NAME}: the rehearsal's objects, not the program's)"
    )
    return StandIn([secret, deployment, service], {"databaseUrl": url}, note)


def _labels() -> dict[str, str]:
    return {**SELECTOR, MANAGED_BY[0]: MANAGED_BY[1]}


def _pod() -> dict[str, Any]:
    # The image's entry point needs nothing but its home (an emptyDir: a stand-in keeps no
    # data past its pod) and runs as its own user, so the pod asks for no privilege.
    ready = ["pg_isready", "--host=127.0.0.1", f"--port={PORT}", f"--dbname={DATABASE}"]
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": POSTGRES_UID,
            "runAsGroup": POSTGRES_UID,
            "fsGroup": POSTGRES_UID,
        },
        "containers": [
            {
                "name": NAME,
                "image": STAND_IN_POSTGRES,
                "env": [
                    {"name": "POSTGRES_USER", "value": USER},
                    {"name": "POSTGRES_DB", "value": DATABASE},
                    {
                        "name": "POSTGRES_PASSWORD",
                        "valueFrom": {"secretKeyRef": {"name": NAME, "key": "password"}},
                    },
                ],
                "ports": [{"name": NAME, "containerPort": PORT}],
                # Over TCP: ready once the server listens for the services, not while the
                # entry point's first start (socket only) makes the database.
                "readinessProbe": {
                    "exec": {"command": ready},
                    "periodSeconds": 2,
                    "timeoutSeconds": 5,
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "resources": {"limits": {"memory": "512Mi"}},
                "volumeMounts": [{"name": "home", "mountPath": POSTGRES_HOME}],
            }
        ],
        "volumes": [{"name": "home", "emptyDir": {}}],
    }


def is_stand_in(obj: dict[str, Any]) -> bool:
    """Whether an object is one of the rehearsal's stand-ins, not the program's."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY[0]) == MANAGED_BY[1])

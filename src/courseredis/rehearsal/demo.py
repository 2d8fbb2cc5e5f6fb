"""Demo data in a running rehearsal: the accounts and courses the load suites and the traffic
during the disruptions use, seeded through the services' own pods.

A deployed stack has no demo data (only the smoke account `prepare-database` makes), so the
rehearsal seeds it as an operator would: `python -m courseredis.services.db seed` in a pod of
a service that holds the database, with the pod's own DATABASE_URL. A shared database (prod's
PostgreSQL) is seeded once; dev's throwaway SQLite is one file per pod, so every pod that
uses the database is seeded, each with the same rows in the same order (same ids), which is
what lets a user id from auth's database mean the same user in enrollments'.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from courseredis.config_model import describe
from courseredis.rehearsal.podman import LABEL, Podman
from courseredis.rehearsal.run import RehearsalError
from courseredis.rehearsal.translate import Container, Plan
from courseredis.services.db.seed import DEFAULT_COURSES
from courseredis.stack_file import DemoAccounts

# Enough for the load suites at rehearsal scale: their users log in as distinct students,
# and their course ids are 1..DEFAULT_COURSES (one more course, the smoke's, is harmless).
STUDENTS = 40
COURSES = DEFAULT_COURSES
_PASSWORD_VARIABLE = "COURSEREDIS_SEED_PASSWORD"


@dataclass(frozen=True)
class DatabasePod:
    """A pod whose main container opens the database, and whether that database is its own."""

    pod: str
    container: str
    own_database: bool


def database_pods(plan: Plan, pods: Mapping[str, Any]) -> list[DatabasePod]:
    """The ready pods to seed through: every pod with a database of its own (SQLite), else
    one pod for the shared database. `pods` is the controller's status (`name -> record`)."""
    chosen: list[DatabasePod] = []
    shared_seen = False
    for workload in plan.workloads:
        if workload.kind != "Deployment":
            continue
        for container in workload.template.containers:
            url = _database_url(container, plan)
            if url is None:
                continue
            own = url.startswith("sqlite")
            for name, record in sorted(pods.items()):
                if record.get("workload") != workload.label or not record.get("ready"):
                    continue
                if not own and shared_seen:
                    break
                chosen.append(DatabasePod(name, container.name, own))
                shared_seen = shared_seen or not own
    return chosen


def _database_url(container: Container, plan: Plan) -> str | None:
    for variable in container.env:
        if variable.name != "DATABASE_URL":
            continue
        if variable.secret is not None:
            name, key = variable.secret
            return plan.secrets.get(name, {}).get(key)
        return variable.value
    return None


def container_id(podman: Podman, run_id: str, pod: str, container: str) -> str:
    """The running container `container` of rehearsal pod `pod`.

    The controller names it `crh-<run id>-<pod>-<container>-<4 hex>` (`run.Controller`)."""
    listed = podman.json(["ps", "--filter", f"label={LABEL}={run_id}", "--format", "json"]) or []
    prefix = f"crh-{run_id}-{pod}-{container}-"
    for entry in listed:
        names = entry.get("Names") or []
        if any(str(n).startswith(prefix) for n in names):
            return str(entry["Id"])
    raise RehearsalError(f"pod {pod} has no running container {container}")


def seed(
    podman: Podman,
    run_id: str,
    targets: Sequence[DatabasePod],
    *,
    students: int = STUDENTS,
    courses: int = COURSES,
) -> DemoAccounts:
    """Seed every target with the same demo data and one password; the accounts it made."""
    if not targets:
        raise RehearsalError("no ready pod of a service that uses the database to seed through")
    password = secrets.token_urlsafe(12)
    accounts: DemoAccounts | None = None
    for target in targets:
        done = podman.run(
            [
                "exec",
                "--env",
                _PASSWORD_VARIABLE,
                container_id(podman, run_id, target.pod, target.container),
                "/bin/sh",
                "-c",
                # The password goes through a file in the pod's /tmp, never a command line.
                'umask 077; printf "%s\\n" "$COURSEREDIS_SEED_PASSWORD" > /tmp/.seed-password;'
                " python -m courseredis.services.db seed"
                f" --students {students} --courses {courses}"
                " --password-file /tmp/.seed-password; code=$?;"
                " rm -f /tmp/.seed-password; exit $code",
            ],
            env={_PASSWORD_VARIABLE: password},
            check=False,
            timeout=300,
        )
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise RehearsalError(f"seeding through {target.pod} failed: {reason}")
        try:
            accounts = DemoAccounts.model_validate(json.loads(done.stdout))
        except (ValueError, ValidationError) as exc:
            detail = describe(exc) if isinstance(exc, ValidationError) else str(exc)
            raise RehearsalError(
                f"the seed in {target.pod} printed no accounts: {detail}"
            ) from None
    assert accounts is not None
    return accounts

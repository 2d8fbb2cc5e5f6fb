"""What the rehearsal does once the objects are up: demo data, the load suites, and the
disruptions with traffic flowing, each a `Step` with its figures.

The disruptions (the controller carries them out: `daemon.handle_request`):
- delete one Redis pod, then every Redis pod at once (all come back on new IPs);
- a rolling restart of the Redis StatefulSet;
- delete a gateway pod.

During each, `traffic.Traffic` reads a course through the ready gateway pods and counts the
requests that failed. Around "every Redis pod at once", a live session and a revocation are
held (`traffic.hold`) and checked after: with persistence they must survive; a stack that
declares none (dev) loses them, and the step says so rather than fail.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from courseredis.environments import load_environment
from courseredis.rehearsal import demo, load, traffic
from courseredis.rehearsal.podman import Podman
from courseredis.rehearsal.report import Step
from courseredis.rehearsal.run import RehearsalError
from courseredis.rehearsal.stack_description import container_port
from courseredis.rehearsal.translate import Plan
from courseredis.services import registry
from courseredis.stack_file import DemoAccounts

Request = Callable[[dict[str, Any]], dict[str, Any]]  # a request to the controller, answered
COURSE_ID = 1  # the first course: prepare-database's smoke course, else the seed's first


def pods(state_dir: Path) -> dict[str, Any]:
    status: dict[str, Any] = json.loads((state_dir / "status.json").read_text())
    found: dict[str, Any] = status.get("pods", {})
    return found


def gateway_port(plan: Plan) -> int:
    """The gateway container's `http` port, as the chart declares it."""
    port = container_port(plan.workload("Deployment", registry.PUBLIC), "http")
    if port is not None:
        return port
    raise RehearsalError(f"Deployment {registry.PUBLIC} declares no http port")


def gateways(state_dir: Path, port: int) -> traffic.Gateways:
    """The ready gateway pods' URLs, read afresh each call (pods come and go)."""
    workload = f"Deployment/{registry.PUBLIC}"

    def now() -> list[str]:
        try:
            current = pods(state_dir)
        except (OSError, ValueError):  # the controller is rewriting it
            return []
        return [
            f"http://{p['ip']}:{port}"
            for _, p in sorted(current.items())
            if p["workload"] == workload and p["ready"]
        ]

    return now


def seed_step(
    podman: Podman, run_id: str, plan: Plan, state_dir: Path
) -> tuple[Step, DemoAccounts | None]:
    started = time.monotonic()
    try:
        targets = demo.database_pods(plan, pods(state_dir))
        accounts = demo.seed(podman, run_id, targets)
    except RehearsalError as exc:
        return Step("demo data", False, {"error": str(exc)}), None
    figures = {
        "seconds": round(time.monotonic() - started, 1),
        "pods": len(targets),
        "students": len(accounts.students),
        "courses": demo.COURSES,
    }
    return Step("demo data", True, figures), accounts


def load_step(
    env: str, url: str | None, accounts: DemoAccounts, state_dir: Path, reports: Path
) -> Step:
    if url is None:
        return Step("load suites", False, {"error": "no ready gateway pod"})
    figures = load.run_suites(env, url, accounts, state_dir, reports)
    return Step("load suites", figures["exit_code"] == 0, figures)


def disruptions(
    env: str,
    state_dir: Path,
    plan: Plan,
    request: Request,
    accounts: DemoAccounts | None,
) -> list[Step]:
    current = pods(state_dir)
    redis = sorted(n for n, p in current.items() if p["workload"] == "StatefulSet/redis")
    gateway = sorted(
        n for n, p in current.items() if p["workload"] == f"Deployment/{registry.PUBLIC}"
    )
    urls = gateways(state_dir, gateway_port(plan))
    persistent = load_environment(env).redis.persistence != "none"
    cases: list[tuple[str, dict[str, Any]]] = []
    if redis:
        cases.append(("delete one Redis pod", {"action": "delete", "pods": redis[:1]}))
        cases.append(("delete every Redis pod", {"action": "delete", "pods": redis}))
        cases.append(
            ("rolling restart of Redis", {"action": "rollout", "workload": "StatefulSet/redis"})
        )
    if gateway:
        cases.append(("delete a gateway pod", {"action": "delete", "pods": gateway[:1]}))
    students = list(accounts.students) if accounts else []
    steps: list[Step] = []
    for name, document in cases:
        held = None
        every_redis_pod = document.get("pods") == redis and len(redis) > 0
        try:
            if every_redis_pod and len(students) >= 3:
                held = traffic.hold(urls, students[-2], students[-3])
            if students:
                with traffic.Traffic(urls, students[-1], COURSE_ID) as flow:
                    result = request(document)
                tally = flow.tally.figures()
            else:
                result, tally = request(document), {"requests": 0, "note": "no demo accounts"}
        except (traffic.TrafficError, httpx.HTTPError) as exc:
            steps.append(Step(name, False, {"error": f"{type(exc).__name__}: {exc}"}))
            continue
        figures: dict[str, Any] = {k: v for k, v in result.items() if k != "ok"}
        figures.update(tally)
        passed = bool(result.get("ok")) and bool(figures.get("all_new_ips", True))
        if held is not None:
            kept = traffic.check_held(urls, held, COURSE_ID)
            figures.update(kept)
            figures["persistence"] = persistent
            if persistent:
                passed = passed and kept["session_kept"] and kept["revocation_kept"]
            else:
                figures["note"] = "persistence none: sessions and revocations are lost by design"
        steps.append(Step(name, passed, figures))
    return steps

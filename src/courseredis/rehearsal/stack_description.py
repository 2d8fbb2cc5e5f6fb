"""`.local/stack.json` for a running rehearsal: what `make up` records, from the controller's
own state, so `make smoke`, `make load` and `make audit` run against the rehearsal unchanged.

The controller (`courseredis.rehearsal.daemon`) rewrites it whenever what it says changes
(it looks every second, with status.json): pods deleted in a disruption come back on new
IPs, and a tool started afterwards must find them. A tool reads the file once, at its start,
as it does for the local stack; one that runs across a disruption keeps what it read.

What it says:
- `redis`: the ready Redis pods' `IP:port` (the host reaches the rehearsal's network: it
  is the bridge's first address), the admin, the service users and the load-test user from
  the declared Secrets, and `address_map`: each Redis pod's DNS name -> its IP. The cluster
  announces those names (`cluster-preferred-endpoint-type hostname`), which the host cannot
  resolve; the clients apply the map (`RedisSettings.address_map`) instead of a resolver.
  `data_dir` is the run's state directory and `pids` is empty: nothing in it is a process
  of `courseredis.local`'s to stop.
- `services` and `metrics`: each service's first ready pod, on its `http` and `metrics`
  ports.
- `demo`: the accounts the command line seeded (`DEMO_FILE` in the state directory), else
  the smoke account of the declared Secret as the only student.
- `rehearsal`: which run it describes. `courseredis.local` leaves such a file alone, and
  the rehearsal writes only where there is no file or its own (`publish`): a local stack's
  file is never replaced. The run's own copy (`<state dir>/stack.json`) is always written,
  and the rehearsal's host steps read that one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from courseredis.environments import Mode
from courseredis.local.processes import LocalStackError
from courseredis.local.state import locked, read_state, remove_state, write_state
from courseredis.rehearsal.translate import Plan, Workload
from courseredis.services import registry
from courseredis.stack_file import (
    Account,
    DemoAccounts,
    RedisRecord,
    RehearsalRecord,
    StackFile,
)
from infra.values import SECRETS

DEMO_FILE = "demo.json"  # the seeded accounts, written by the command line (mode 0600)
OWN_COPY = "stack.json"  # in the state directory: the run's description, whatever .local holds
REDIS_CONTAINER = "redis"  # the Redis chart's container and its port's name


def redis_workload(plan: Plan) -> Workload | None:
    """The StatefulSet whose container `redis` declares a `redis` port."""
    for workload in plan.workloads:
        if workload.kind != "StatefulSet":
            continue
        for container in workload.template.containers:
            if container.name == REDIS_CONTAINER and REDIS_CONTAINER in container.ports:
                return workload
    return None


def _ordinal(name: str) -> tuple[int, str]:
    match = re.search(r"-(\d+)$", name)
    return (int(match.group(1)) if match else 0, name)


def container_port(workload: Workload, port: str) -> int | None:
    """The number of the port named `port` on any of the workload's containers."""
    for container in workload.template.containers:
        if port in container.ports:
            return container.ports[port]
    return None


def _account(secrets: Mapping[str, Mapping[str, str]], name: str) -> Account | None:
    data = secrets.get(name) or {}
    if "username" not in data or "password" not in data:
        return None
    return Account(username=data["username"], password=data["password"])


def describe(
    plan: Plan,
    pods: Mapping[str, Mapping[str, Any]],
    *,
    env: str,
    mode: Mode,
    run_id: str,
    state_dir: Path,
    started_at: str,
    demo: DemoAccounts | None,
) -> StackFile:
    """The stack.json of the rehearsal whose pods (status.json's `pods`) are `pods`."""
    redis = redis_workload(plan)
    redis_port = container_port(redis, REDIS_CONTAINER) if redis else None
    nodes: list[str] = []
    address_map: dict[str, str] = {}
    if redis is not None and redis_port is not None:
        for name in sorted(pods, key=_ordinal):
            pod = pods[name]
            if pod.get("workload") != redis.label or not pod.get("ip"):
                continue
            fqdn = plan.pod_fqdn(name, redis)
            if fqdn:
                address_map[fqdn] = str(pod["ip"])
            if pod.get("ready"):
                nodes.append(f"{pod['ip']}:{redis_port}")
    admin = _account(plan.secrets, SECRETS.admin)
    users = {
        s.name: account
        for s in registry.SERVICES
        if (account := _account(plan.secrets, SECRETS.service(s.name))) is not None
    }
    services: dict[str, str] = {}
    metrics: dict[str, str] = {}
    for service in registry.SERVICES:
        try:
            workload = plan.workload("Deployment", service.name)
        except KeyError:  # not deployed by this program: not described
            continue
        ready = sorted(
            (n for n, p in pods.items() if p.get("workload") == workload.label and p.get("ready")),
            key=_ordinal,
        )
        if not ready:
            continue
        ip = pods[ready[0]]["ip"]
        for into, port_name in ((services, "http"), (metrics, "metrics")):
            port = container_port(workload, port_name)
            if port is not None:
                into[service.name] = f"http://{ip}:{port}"
    smoke = _account(plan.secrets, SECRETS.smoke)
    if demo is None and smoke is not None:
        demo = DemoAccounts(students=(smoke,))
    return StackFile(
        env=env,
        redis=RedisRecord(
            mode=mode,
            nodes=nodes,
            username=admin.username if admin else None,
            password=admin.password if admin else None,
            users=users,
            loadtest=_account(plan.secrets, SECRETS.loadtest),
            data_dir=state_dir,
            pids=[],
            address_map=address_map,
        ),
        started_at=started_at,
        services=services,
        metrics=metrics,
        demo=demo,
        rehearsal=RehearsalRecord(env=env, run_id=run_id, state_dir=state_dir),
    )


def read_demo(state_dir: Path) -> DemoAccounts | None:
    try:
        return DemoAccounts.model_validate_json((state_dir / DEMO_FILE).read_text())
    except (OSError, ValueError):
        return None


def _is_run(document: StackFile, run_id: str) -> bool:
    return document.rehearsal is not None and document.rehearsal.run_id == run_id


def publish(root: Path, document: StackFile) -> bool:
    """Write `document` as ROOT's stack.json unless the file there is another's (a local
    stack, or another run's); whether it was written. Under the local stack's lock, so
    `make up` and the controller never interleave."""
    assert document.rehearsal is not None
    with locked(root):
        try:
            current = read_state(root)
        except LocalStackError:
            return False  # a broken file is its owner's to fix (`courseredis.local` says so)
        if current.redis is not None and not _is_run(current, document.rehearsal.run_id):
            return False
        write_state(root, document)
    return True


def forget(root: Path, run_id: str) -> bool:
    """Remove ROOT's stack.json if it still describes run `run_id`; whether it did."""
    with locked(root):
        try:
            current = read_state(root)
        except LocalStackError:
            return False
        if not _is_run(current, run_id):
            return False
        remove_state(root)
    return True

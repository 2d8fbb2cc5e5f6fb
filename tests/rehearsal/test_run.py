"""The controller's bookkeeping without podman: which names resolve to which pods, when."""

from __future__ import annotations

from pathlib import Path

import pytest

from courseredis.rehearsal.objects import declared_objects, deploy, random_password
from courseredis.rehearsal.podman import Podman
from courseredis.rehearsal.run import ContainerState, Controller, PodState
from courseredis.rehearsal.translate import Plan, translate


@pytest.fixture(scope="module")
def plan() -> Plan:
    secrets = {"databaseUrl": "sqlite+aiosqlite:////tmp/x.db"}
    return translate(declared_objects(deploy("prod", secrets, passwords=random_password)).objects)


def pod(plan: Plan, kind: str, name: str, index: int, ip: str, phase: str, ready: bool) -> PodState:
    workload = plan.workload(kind, name)
    state = PodState(
        name=workload.pod_name(index, "abcde"),
        workload=workload,
        index=index,
        uid="u",
        ip=ip,
        phase=phase,
        networked=True,
    )
    state.containers = [ContainerState(spec=c, ready=ready) for c in workload.template.containers]
    return state


def test_services_list_ready_pods_and_headless_names_exist_from_the_pods_ip(
    plan: Plan, tmp_path: Path
):
    controller = Controller(plan, Podman(tmp_path), tmp_path)
    starting = pod(plan, "StatefulSet", "redis", 0, "10.9.0.2", "Pending", False)  # in init
    ready = pod(plan, "StatefulSet", "redis", 1, "10.9.0.3", "Running", True)
    gateway = pod(plan, "Deployment", "gateway", 0, "10.9.0.4", "Running", False)
    controller.pods = {p.name: p for p in (starting, ready, gateway)}
    records = controller.dns_records()
    domain = "course-redis-prod.svc.cluster.local"
    # The headless Service publishes not-ready addresses: a pod in its init containers
    # already has its name (cluster_repair resolves its peers there).
    assert records[f"redis-0.redis-headless.{domain}"] == ["10.9.0.2"]
    assert records[f"redis-headless.{domain}"] == ["10.9.0.2", "10.9.0.3"]
    # A ClusterIP Service lists ready pods only.
    assert records[f"redis.{domain}"] == ["10.9.0.3"]
    assert records[f"gateway.{domain}"] == []


def test_a_pod_without_its_ip_yet_resolves_nowhere(plan: Plan, tmp_path: Path):
    controller = Controller(plan, Podman(tmp_path), tmp_path)
    fresh = pod(plan, "StatefulSet", "redis", 2, "10.9.0.5", "Pending", False)
    fresh.networked = False
    controller.pods = {fresh.name: fresh}
    records = controller.dns_records()
    assert "redis-2.redis-headless.course-redis-prod.svc.cluster.local" not in records


def test_a_statefulset_pod_is_made_again_only_once_its_predecessor_is_gone(
    plan: Plan, tmp_path: Path
):
    """Same name for a StatefulSet: podman refuses a second pod of that name, as Kubernetes
    waits for the old one to be deleted."""
    controller = Controller(plan, Podman(tmp_path), tmp_path)
    created: list[tuple[str, int]] = []
    controller._create_pod = lambda workload, index: created.append((workload.label, index))  # type: ignore[method-assign]
    redis = plan.workload("StatefulSet", "redis")
    pods = [
        pod(plan, "StatefulSet", "redis", i, f"10.9.0.{i + 2}", "Running", True)
        for i in range(redis.replicas)
    ]
    pods[0].phase = "Terminating"
    controller.pods = {p.name: p for p in pods}
    controller._reconcile()
    assert ("StatefulSet/redis", 0) not in created
    del controller.pods[pods[0].name]  # gone
    controller._reconcile()
    assert ("StatefulSet/redis", 0) in created

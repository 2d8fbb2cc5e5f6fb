"""The rehearsal's stack.json, without podman: what it says of the pods and the declared
Secrets, that the project's tools read it as they read the local stack's, and that it
never replaces a local stack's file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from courseredis.local.state import read_state, write_state
from courseredis.rehearsal import stack_description
from courseredis.rehearsal.objects import declared_objects, deploy, random_password
from courseredis.rehearsal.translate import Plan, translate
from courseredis.services import registry
from courseredis.stack_file import (
    Account,
    DemoAccounts,
    RedisRecord,
    StackFile,
    parse_stack_file,
    stack_file_path,
)
from infra.values import SECRETS
from loadtests.target import accounts, gateway_url, redis_settings, service_metrics_urls
from smoke.target import resolve

SHARED = "postgresql+asyncpg://courses:pw@postgres:5432/courses"


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    found = {}
    for env in ("dev", "prod"):
        secrets = {"databaseUrl": SHARED} if env == "prod" else None
        found[env] = translate(
            declared_objects(deploy(env, secrets, passwords=random_password)).objects
        )
    return found


def pods(plan: Plan, *, not_ready: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every workload's pods as status.json lists them, each on its own IP."""
    found: dict[str, Any] = {}
    for n, workload in enumerate(plan.workloads):
        for i in range(max(workload.replicas, 1)):
            name = workload.pod_name(i, "abcde")
            found[name] = {
                "workload": workload.label,
                "ip": f"10.230.{n}.{i + 10}",
                "ready": name not in not_ready,
                "phase": "Running",
            }
    return found


def describe(plan: Plan, env: str, status: dict[str, Any], **kwargs: Any) -> StackFile:
    options: dict[str, Any] = {
        "env": env,
        "mode": "cluster" if env == "prod" else "standalone",
        "run_id": "a1b2c3",
        "state_dir": Path("/state/prod-a1b2c3"),
        "started_at": "2026-01-01T00:00:00+00:00",
        "demo": None,
        **kwargs,
    }
    return stack_description.describe(plan, status, **options)


def test_the_nodes_are_the_ready_redis_pods_at_their_ips_in_ordinal_order(plans):
    status = pods(plans["prod"], not_ready=("redis-4",))
    document = describe(plans["prod"], "prod", status)
    assert document.redis is not None
    ips = {name: p["ip"] for name, p in status.items() if p["workload"] == "StatefulSet/redis"}
    assert document.redis.nodes == [f"{ips[f'redis-{i}']}:6379" for i in range(6) if i != 4]
    assert document.redis.mode == "cluster"


def test_every_redis_pod_name_the_cluster_announces_maps_to_its_ip(plans):
    """Not-ready pods too: a node the cluster still names is reachable as soon as it is up."""
    plan = plans["prod"]
    status = pods(plan, not_ready=("redis-4",))
    document = describe(plan, "prod", status)
    assert document.redis is not None
    redis = plan.workload("StatefulSet", "redis")
    assert document.redis.address_map == {
        plan.pod_fqdn(f"redis-{i}", redis): status[f"redis-{i}"]["ip"] for i in range(6)
    }
    assert all(".svc." in name for name in document.redis.address_map)


def test_the_accounts_are_the_declared_secrets(plans):
    plan = plans["prod"]
    document = describe(plan, "prod", pods(plan))
    assert document.redis is not None
    admin = plan.secrets[SECRETS.admin]
    assert (document.redis.username, document.redis.password) == (
        admin["username"],
        admin["password"],
    )
    assert set(document.redis.users) == {s.name for s in registry.SERVICES}
    for service, account in document.redis.users.items():
        assert account.password == plan.secrets[SECRETS.service(service)]["password"]
    assert document.redis.loadtest is not None
    assert document.redis.loadtest.password == plan.secrets[SECRETS.loadtest]["password"]


def test_nothing_in_it_is_a_process_for_the_local_stack_to_stop(plans):
    document = describe(plans["dev"], "dev", pods(plans["dev"]))
    assert document.redis is not None and document.redis.pids == []
    assert document.rehearsal is not None and document.rehearsal.run_id == "a1b2c3"


def test_each_service_is_its_first_ready_pod_on_its_http_and_metrics_ports(plans):
    plan = plans["prod"]
    status = pods(plan)
    document = describe(plan, "prod", status)
    assert document.services is not None and document.metrics is not None
    assert set(document.services) == {s.name for s in registry.SERVICES}
    gateway = plan.workload("Deployment", registry.PUBLIC)
    first = sorted(n for n, p in status.items() if p["workload"] == gateway.label)[0]
    ports = gateway.template.containers[0].ports
    assert document.services[registry.PUBLIC] == f"http://{status[first]['ip']}:{ports['http']}"
    assert document.metrics[registry.PUBLIC] == f"http://{status[first]['ip']}:{ports['metrics']}"


def test_a_service_without_a_ready_pod_is_left_out(plans):
    plan = plans["dev"]
    gateway = plan.workload("Deployment", registry.PUBLIC)
    status = pods(plan)
    for pod in status.values():
        if pod["workload"] == gateway.label:
            pod["ready"] = False
    assert registry.PUBLIC not in (describe(plan, "dev", status).services or {})


def test_the_seeded_accounts_are_the_demo_else_the_smoke_account(plans):
    plan = plans["dev"]
    smoke = plan.secrets[SECRETS.smoke]
    before = describe(plan, "dev", pods(plan))
    assert before.demo == DemoAccounts(
        students=(Account(username=smoke["username"], password=smoke["password"]),)
    )
    seeded = DemoAccounts(students=(Account(username="student1", password="pw"),))
    assert describe(plan, "dev", pods(plan), demo=seeded).demo == seeded


def test_the_seeded_accounts_are_read_from_the_state_directory(tmp_path):
    assert stack_description.read_demo(tmp_path) is None
    seeded = DemoAccounts(students=(Account(username="student1", password="pw"),))
    (tmp_path / stack_description.DEMO_FILE).write_text(seeded.model_dump_json())
    assert stack_description.read_demo(tmp_path) == seeded


# --- read by the tools as the local stack's ---------------------------------------------


def test_it_is_a_valid_stack_json(plans):
    document = describe(plans["prod"], "prod", pods(plans["prod"]))
    assert parse_stack_file(document.to_json(), "stack.json") == document


def test_the_load_suites_find_the_gateway_the_metrics_the_accounts_and_the_map(plans):
    document = describe(plans["prod"], "prod", pods(plans["prod"]))
    assert document.redis is not None
    assert gateway_url(document) == (document.services or {})[registry.PUBLIC]
    assert service_metrics_urls(None, document, "auth") == [(document.metrics or {})["auth"]]
    assert accounts(None, document).students
    settings = redis_settings(document)
    assert settings.is_cluster and settings.address_map == document.redis.address_map
    assert settings.username == document.redis.loadtest.username  # type: ignore[union-attr]


def test_the_smoke_takes_its_map_and_names_no_host_of_this_machine(plans, tmp_path):
    """The pods are not this machine's processes: no `local://` host checks."""
    document = describe(plans["prod"], "prod", pods(plans["prod"]))
    write_state(tmp_path, document)
    target = resolve(lambda dest: None, cwd=tmp_path, environ={})
    assert document.redis is not None
    assert target.nodes == document.redis.nodes
    assert target.address_map == document.redis.address_map
    assert target.hosts == [] and not target.local
    assert target.student is not None


# --- whose file it is ------------------------------------------------------------------


def test_it_is_written_where_there_is_no_file_and_rewritten_while_its_own(plans, tmp_path):
    plan = plans["dev"]
    first = describe(plan, "dev", pods(plan))
    assert stack_description.publish(tmp_path, first)
    moved = describe(plan, "dev", {n: {**p, "ip": "10.231.0.9"} for n, p in pods(plan).items()})
    assert stack_description.publish(tmp_path, moved)
    assert read_state(tmp_path) == moved


def test_a_local_stacks_file_is_never_replaced(plans, tmp_path):
    local = StackFile(
        env="dev",
        redis=RedisRecord(
            mode="standalone",
            nodes=["127.0.0.1:7000"],
            username="admin",
            password="pw",
            data_dir=tmp_path / ".local" / "dev",
            pids=[4242],
        ),
    )
    write_state(tmp_path, local)
    assert not stack_description.publish(
        tmp_path, describe(plans["dev"], "dev", pods(plans["dev"]))
    )
    assert read_state(tmp_path) == local
    assert not stack_description.forget(tmp_path, "a1b2c3")
    assert read_state(tmp_path) == local


def test_another_runs_file_is_neither_replaced_nor_removed(plans, tmp_path):
    plan = plans["dev"]
    other = describe(plan, "dev", pods(plan), run_id="ffffff")
    write_state(tmp_path, other)
    assert not stack_description.publish(tmp_path, describe(plan, "dev", pods(plan)))
    assert not stack_description.forget(tmp_path, "a1b2c3")
    assert read_state(tmp_path) == other


def test_the_end_of_the_run_removes_its_file(plans, tmp_path):
    stack_description.publish(tmp_path, describe(plans["dev"], "dev", pods(plans["dev"])))
    assert stack_description.forget(tmp_path, "a1b2c3")
    assert not stack_file_path(tmp_path).exists()

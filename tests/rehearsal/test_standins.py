"""The stand-in PostgreSQL, without podman: its manifests, its name, its URL, its secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from courseredis.rehearsal import standins
from courseredis.rehearsal.images import POSTGRES_MAJOR, POSTGRES_UID, STAND_IN_POSTGRES
from courseredis.rehearsal.objects import declared_objects, deploy, random_password
from courseredis.rehearsal.podman import Podman
from courseredis.rehearsal.run import ContainerState, Controller, PodState
from courseredis.rehearsal.standins import (
    StandIn,
    database_for,
    is_stand_in,
    postgres,
    stack_settings,
)
from courseredis.rehearsal.translate import Plan, Workload, translate


@pytest.fixture(scope="module")
def prod_stand_in() -> StandIn:
    stand_in = database_for(stack_settings("prod"))
    assert stand_in is not None
    return stand_in


@pytest.fixture(scope="module")
def program_objects(prod_stand_in: StandIn) -> list[dict[str, Any]]:
    deployment = deploy("prod", secrets=prod_stand_in.config, passwords=random_password)
    return declared_objects(deployment).objects


@pytest.fixture(scope="module")
def plan(prod_stand_in: StandIn, program_objects: list[dict[str, Any]]) -> Plan:
    # What `cli.declared` hands the rehearsal: the stand-in first, then the program's.
    return translate([*prod_stand_in.objects, *program_objects])


def secret_password(stand_in: StandIn) -> str:
    (secret,) = [o for o in stand_in.objects if o["kind"] == "Secret"]
    password: str = secret["stringData"]["password"]
    return password


def test_a_stack_that_declares_no_database_gets_the_stand_in_and_dev_keeps_its_own():
    assert database_for(stack_settings("prod")) is not None  # databaseUrl is the operator's
    assert database_for(stack_settings("dev")) is None  # ephemeralDatabase: SQLite per pod


def test_the_manifests_translate_unchanged_with_nothing_left_unhonoured(prod_stand_in: StandIn):
    plan = translate(prod_stand_in.objects)
    assert plan.unhonoured == []  # nothing of the rehearsal's own is reported as not honoured
    workload = plan.workload("Deployment", "postgres")
    assert workload.replicas == 1
    (container,) = workload.template.containers
    assert container.image == STAND_IN_POSTGRES and plan.images == [STAND_IN_POSTGRES]
    assert container.readiness is not None and container.readiness.kind == "exec"
    assert "--host=127.0.0.1" in container.readiness.command  # ready once it listens on TCP
    assert (container.user, container.run_as_non_root) == (POSTGRES_UID, True)
    assert container.read_only_root and container.cap_drop == ("ALL",)
    assert workload.template.fs_group == POSTGRES_UID  # its emptyDir is writable to it
    assert plan.secrets["postgres"] == {"password": secret_password(prod_stand_in)}
    (service,) = plan.services
    assert (service.name, service.namespace) == ("postgres", "course-redis-prod")


def test_the_services_are_given_the_stand_ins_url_and_it_starts_first(
    prod_stand_in: StandIn, plan: Plan
):
    assert plan.workloads[0].label == "Deployment/postgres"
    assert plan.secrets["database"]["url"] == prod_stand_in.config["databaseUrl"]


def pod(workload: Workload, ip: str, ready: bool) -> PodState:
    state = PodState(
        name=workload.pod_name(0, "abcde"),
        workload=workload,
        index=0,
        uid="u",
        ip=ip,
        phase="Running",
        networked=True,
    )
    state.containers = [ContainerState(spec=c, ready=ready) for c in workload.template.containers]
    return state


def test_its_service_name_resolves_to_the_ready_stand_in_only(plan: Plan, tmp_path: Path):
    controller = Controller(plan, Podman(tmp_path), tmp_path)
    database = plan.workload("Deployment", "postgres")
    name = f"postgres.{plan.namespace}.svc.{plan.cluster_domain}"
    assert make_url(plan.secrets["database"]["url"]).host == name
    starting = pod(database, "10.9.0.2", ready=False)
    controller.pods = {starting.name: starting}
    assert controller.dns_records()[name] == []  # not before it accepts connections
    ready = pod(database, "10.9.0.3", ready=True)
    auth = pod(plan.workload("Deployment", "auth"), "10.9.0.4", ready=True)
    controller.pods = {p.name: p for p in (ready, auth)}
    records = controller.dns_records()
    assert records[name] == ["10.9.0.3"]
    # No Service of the program lists it, and its own lists nothing of the program's.
    assert [n for n, ips in records.items() if "10.9.0.3" in ips] == [name]


def test_the_url_names_the_stacks_namespace_and_cluster_domain():
    settings = stack_settings("prod").model_copy(
        update={"namespace": "elsewhere", "cluster_domain": "corp.internal"}
    )
    stand_in = database_for(settings)
    assert stand_in is not None
    url = make_url(stand_in.config["databaseUrl"])
    assert url.drivername == "postgresql+asyncpg"
    assert (url.host, url.port, url.database) == (
        "postgres.elsewhere.svc.corp.internal",
        5432,
        "courses",
    )
    assert url.username == standins.USER
    assert {o["metadata"]["namespace"] for o in stand_in.objects} == {"elsewhere"}


def test_the_password_is_random_per_call_and_never_in_the_note():
    first, second = postgres("ns", "cluster.local"), postgres("ns", "cluster.local")
    assert secret_password(first) != secret_password(second)
    for stand_in in (first, second):
        password = secret_password(stand_in)
        assert len(password) >= 32
        assert make_url(stand_in.config["databaseUrl"]).password == password
        assert password not in stand_in.note


def test_the_note_says_what_stands_in_for_the_operators_database(prod_stand_in: StandIn):
    assert prod_stand_in.note.startswith("databaseUrl: a stand-in PostgreSQL pod")
    assert f"Debian's postgresql {POSTGRES_MAJOR}" in prod_stand_in.note
    assert "shared by the services, as the operator's database would be" in prod_stand_in.note


def test_the_stand_in_objects_are_the_rehearsals_not_the_programs(
    prod_stand_in: StandIn, program_objects: list[dict[str, Any]]
):
    assert all(is_stand_in(o) for o in prod_stand_in.objects)
    assert not any(is_stand_in(o) for o in program_objects)
    # Nor does the program declare anything under the stand-in's name.
    assert all(o["metadata"]["name"] != standins.NAME for o in program_objects)

"""The objects `pulumi up` would apply: the program under mocks, its charts rendered by Helm."""

from __future__ import annotations

from typing import Any

import pytest

from courseredis.rehearsal.objects import (
    CHART_TYPE,
    DeclaredObjects,
    Deployment,
    api_of,
    declared_objects,
    deploy,
    random_password,
)

DATABASE_URL = "postgresql+asyncpg://courses:pw@db:5432/courses"


def rehearsal_deploy(env: str) -> Deployment:
    secrets = {"databaseUrl": DATABASE_URL} if env == "prod" else None
    return deploy(env, secrets=secrets, passwords=random_password)


@pytest.fixture(scope="module", params=["dev", "prod"])
def declared(request: pytest.FixtureRequest) -> tuple[Deployment, DeclaredObjects]:
    deployment = rehearsal_deploy(request.param)
    return deployment, declared_objects(deployment)


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def test_type_tokens_name_api_versions_and_kinds():
    assert api_of("kubernetes:core/v1:Secret") == ("v1", "Secret")
    assert api_of("kubernetes:apps/v1:StatefulSet") == ("apps/v1", "StatefulSet")
    assert api_of("kubernetes:networking.k8s.io/v1:NetworkPolicy") == (
        "networking.k8s.io/v1",
        "NetworkPolicy",
    )
    assert api_of(CHART_TYPE) is None
    assert api_of("random:index/randomPassword:RandomPassword") is None
    assert api_of("course-redis:index:Redis") is None


def test_the_program_objects_and_every_chart_object_are_declared(declared):
    deployment, result = declared
    namespace = f"course-redis-{deployment.env}"
    objects = result.objects
    named(objects, "Namespace", namespace)
    statefulset = named(objects, "StatefulSet", "redis")
    assert statefulset["metadata"]["namespace"] == namespace
    assert {"gateway", "auth", "courses", "enrollments"} <= {
        o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"
    }
    # Every namespaced object lands in the stack's namespace, as Chart v4 places them.
    assert all(
        o["metadata"].get("namespace") == namespace for o in objects if o["kind"] != "Namespace"
    )
    if deployment.env == "prod":
        named(objects, "Job", "redis-bootstrap")
        assert statefulset["spec"]["replicas"] == 6
    assert result.skipped == []  # the charts have no Helm hooks


def test_secrets_reach_the_cluster_with_real_generated_passwords(declared):
    deployment, result = declared
    admin = named(result.objects, "Secret", "redis-admin")
    password = admin["stringData"]["password"]
    assert isinstance(password, str) and len(password) == 40 and password.isalnum()
    assert password == deployment.mocks.generated["redis-admin-password"]
    # Really random: not the tests' recognisable value, and not the same on a second run.
    assert not password.startswith("Gen")
    again = rehearsal_deploy(deployment.env).mocks.generated["redis-admin-password"]
    assert again != password
    acl = named(result.objects, "Secret", "redis-acl")["stringData"]
    assert password in next(iter(acl.values()))  # the ACL file holds the same password

"""Objects -> podman, without podman: the plan, the names, the arguments, the refusals."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from courseredis.rehearsal.objects import declared_objects, deploy, random_password
from courseredis.rehearsal.translate import (
    Plan,
    PodFacts,
    TranslationError,
    command_line,
    create_args,
    expand,
    quantity_bytes,
    resolve_env,
    translate,
)

DATABASE_URL = "postgresql+asyncpg://courses:pw@db:5432/courses"


@pytest.fixture(scope="module")
def objects() -> dict[str, list[dict[str, Any]]]:
    found = {}
    for env in ("dev", "prod"):
        secrets = {"databaseUrl": DATABASE_URL} if env == "prod" else None
        found[env] = declared_objects(deploy(env, secrets, passwords=random_password)).objects
    return found


@pytest.fixture(scope="module")
def prod(objects) -> Plan:
    return translate(objects["prod"])


def facts(name: str = "redis-0", ip: str = "10.1.2.3") -> PodFacts:
    return PodFacts(name=name, namespace="course-redis-prod", ip=ip, uid="u1", labels={})


def test_prod_runs_six_redis_pods_in_parallel_with_their_claims_and_a_bootstrap_job(prod: Plan):
    redis = prod.workload("StatefulSet", "redis")
    assert (redis.replicas, redis.ordered, redis.claims) == (6, False, ("data",))
    assert [redis.pod_name(i) for i in (0, 5)] == ["redis-0", "redis-5"]
    assert [c.name for c in redis.template.init_containers] == ["repair-nodes-conf"]
    assert redis.template.volumes["tmp"].kind == "memory"  # emptyDir medium: Memory
    assert redis.template.volumes["data"].kind == "claim"
    job = prod.workload("Job", "redis-bootstrap")
    assert job.template.restart_policy == "Never" and job.backoff_limit >= 1
    # The HPA's floor: two replicas of each service, as the autoscaler would keep.
    assert prod.workload("Deployment", "gateway").replicas == 2


def test_dns_names_are_the_clusters(prod: Plan):
    redis = prod.workload("StatefulSet", "redis")
    assert prod.pod_fqdn("redis-3", redis) == (
        "redis-3.redis-headless.course-redis-prod.svc.cluster.local"
    )
    assert prod.search == (
        "course-redis-prod.svc.cluster.local",
        "svc.cluster.local",
        "cluster.local",
    )
    headless = next(s for s in prod.services if s.name == "redis-headless")
    assert headless.headless and headless.publish_not_ready
    assert headless.selects(redis.template.labels)
    gateway = next(s for s in prod.services if s.name == "gateway")
    assert not gateway.headless and not gateway.selects(redis.template.labels)


def test_every_object_it_cannot_honour_is_named_by_kind_and_name(objects, prod: Plan):
    named = {(u.kind, u.name) for u in prod.unhonoured}
    for obj in objects["prod"]:
        if obj["kind"] in ("NetworkPolicy", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
            assert (obj["kind"], obj["metadata"]["name"]) in named
    assert any("affinity" in u.what for u in prod.unhonoured if u.name == "redis")
    assert any("topology spread" in u.what for u in prod.unhonoured if u.name == "redis")


def test_env_comes_from_secrets_and_the_pods_own_fields(prod: Plan):
    redis = prod.workload("StatefulSet", "redis")
    container = redis.template.containers[0]
    env = resolve_env(container, prod, facts())
    assert env["POD_NAME"] == "redis-0" and env["POD_IP"] == "10.1.2.3"
    assert env["POD_NAMESPACE"] == "course-redis-prod"
    assert env["REDIS_PASSWORD"] == prod.secrets["redis-admin"]["password"]
    # $(POD_IP) in the repair container's args is expanded, as the kubelet does.
    repair = redis.template.init_containers[0]
    _, tail = command_line(repair, resolve_env(repair, prod, facts()))
    assert "10.1.2.3" in tail and "$(POD_IP)" not in tail


def test_command_replaces_the_entrypoint_and_args_the_cmd(prod: Plan):
    redis = prod.workload("StatefulSet", "redis").template.containers[0]
    options, tail = command_line(redis, {})
    assert options == ["--entrypoint", json.dumps(["/bin/sh", "/etc/redis/start.sh"])]
    assert tail == [redis.image]
    gateway = prod.workload("Deployment", "gateway").template.containers[0]
    options, tail = command_line(gateway, {})
    assert options == [] and tail[1:3] == ["courseredis-service", "gateway"]


def test_security_context_becomes_podman_options(prod: Plan):
    redis = prod.workload("StatefulSet", "redis")
    args = create_args(redis.template.containers[0], redis.template, "pod", "c", ["A"], [], {})
    assert args[args.index("--env") + 1] == "A"  # the name only: values never on a command line
    assert args[args.index("--user") + 1] == "999:999"
    assert args[args.index("--group-add") + 1] == "999"  # fsGroup
    assert "--read-only" in args and "no-new-privileges" in args
    assert args[args.index("--cap-drop") + 1] == "all"
    assert args[args.index("--stop-timeout") + 1] == "30"  # terminationGracePeriodSeconds


def test_expansion_follows_the_kubelet():
    assert expand("$(A)-$(B)-$$(A)", {"A": "1"}) == "1-$(B)-$(A)"
    assert quantity_bytes("256Mi") == 256 * 1024**2 and quantity_bytes("1G") == 10**9


def _broken(objects, mutate) -> list[dict[str, Any]]:
    changed: list[dict[str, Any]] = copy.deepcopy(objects["dev"])
    mutate(changed)
    return changed


def _gateway(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "gateway")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda objs: objs.remove(
                next(o for o in objs if o["metadata"]["name"] == "jwt-signing-key")
            ),
            "Deployment/auth: container auth: env JWT_PRIVATE_KEY: Secret jwt-signing-key is not "
            "declared",
        ),
        (
            lambda objs: _gateway(objs)["spec"]["template"]["spec"]["volumes"].append(
                {"name": "host", "hostPath": {"path": "/"}}
            ),
            "Deployment/gateway: volume host: a volume of a kind",
        ),
        (
            lambda objs: _gateway(objs)["spec"]["template"]["spec"]["containers"][0].update(
                image="registry.example.com/x"
            ),
            "image registry.example.com/x has no tag",
        ),
        (
            lambda objs: _gateway(objs)["spec"]["template"]["spec"]["containers"][0][
                "volumeMounts"
            ].append({"name": "nowhere", "mountPath": "/x"}),
            "Deployment/gateway: container gateway: volumeMount nowhere names no volume",
        ),
        (
            lambda objs: _gateway(objs)["spec"]["template"]["spec"]["containers"][0][
                "readinessProbe"
            ]["httpGet"].update(port="nope"),
            "readinessProbe: port 'nope' is not a port the container declares",
        ),
    ],
)
def test_an_unstartable_manifest_is_refused_naming_the_object_and_why(objects, mutate, message):
    with pytest.raises(TranslationError) as refused:
        translate(_broken(objects, mutate))
    assert message in str(refused.value)


def test_a_digest_pinned_image_runs_the_local_build_and_says_so(objects):
    def pin(objs: list[dict[str, Any]]) -> None:
        container = _gateway(objs)["spec"]["template"]["spec"]["containers"][0]
        container["image"] += "@sha256:" + "a" * 64

    plan = translate(_broken(objects, pin))
    gateway = plan.workload("Deployment", "gateway").template.containers[0]
    assert "@" not in gateway.image
    assert any("digest" in u.what for u in plan.unhonoured if u.name == "gateway")


def test_an_unknown_kind_is_reported_not_dropped(objects):
    extra = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    plan = translate([*objects["dev"], extra])
    assert any((u.kind, u.name) == ("Widget", "w") for u in plan.unhonoured)

"""The services chart, rendered by real Helm with the values each stack passes."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from courseredis.services import registry
from infra import values as infra_values
from infra.settings import StackSettings
from tests.charts.helm import (
    defaults,
    env_of,
    find,
    lint,
    only,
    render,
    stack_settings,
    validate_schema,
)
from tests.charts.policy import (
    Pod,
    admitted,
    check_containers,
    pod_of,
    selects,
    validate_objects,
)

# What the services read (courseredis.services.settings and connection): the contract.
COMMON_ENV = {
    "REDIS_USERNAME",
    "REDIS_PASSWORD",
    "REDIS_TLS",
    "DATABASE_URL",
    "JWT_SECRET",
    "LOG_LEVEL",
}
GATEWAY_ENV = {
    "GATEWAY_AUTH_URL",
    "GATEWAY_COURSES_URL",
    "GATEWAY_ENROLLMENTS_URL",
    "GATEWAY_TRUSTED_PROXIES",
}


def rendered(settings: StackSettings, **changes: Any) -> list[dict[str, Any]]:
    values = infra_values.services_chart_values(settings)
    for path, value in changes.items():
        node = values
        *parents, leaf = path.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return render("services", values, namespace=settings.namespace)


def container_of(objects: list[dict[str, Any]], service: str) -> dict[str, Any]:
    pod = only(objects, "Deployment", service)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert isinstance(container, dict)
    return container


def test_lint_is_clean(settings: StackSettings):
    report = lint("services", infra_values.services_chart_values(settings), settings.namespace)
    assert report["errors"] == [] and report["messages"] == [], report


def test_every_object_is_valid_and_every_container_hardened(settings: StackSettings):
    objects = rendered(settings)
    validate_objects(objects)
    check_containers(objects)


def test_one_deployment_and_service_per_service_of_the_key_schema(settings: StackSettings):
    objects = rendered(settings)
    assert sorted(o["metadata"]["name"] for o in find(objects, "Deployment")) == sorted(
        registry.NAMES
    )
    for service in registry.NAMES:
        port = only(objects, "Service", service)["spec"]["ports"][0]
        assert port["port"] == infra_values.SERVICE_PORT
        container = container_of(objects, service)
        assert container["args"] == [
            "courseredis-service", service, "--host", "0.0.0.0", "--port", "8000",
        ]  # fmt: skip
        assert container["image"] == f"{settings.image.repository}:{settings.image.tag}"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_environment_is_the_services_contract(settings: StackSettings):
    objects = rendered(settings)
    for service in registry.NAMES:
        env = env_of(container_of(objects, service))
        redis_address = "REDIS_CLUSTER_NODES" if settings.redis.mode == "cluster" else "REDIS_URL"
        expected = COMMON_ENV | {redis_address} | (GATEWAY_ENV if service == "gateway" else set())
        if service == "auth":
            expected |= {"REDIS_REPLICA_ACKS"}
        assert set(env) == expected, service
        assert env["REDIS_USERNAME"] == service  # the ACL user is named after the service
        assert env["REDIS_PASSWORD"]["secretKeyRef"] == {
            "name": infra_values.SECRETS.service(service),
            "key": "password",
        }
        assert env["JWT_SECRET"]["secretKeyRef"]["name"] == infra_values.SECRETS.jwt
        assert env["DATABASE_URL"]["secretKeyRef"]["name"] == infra_values.SECRETS.database
        assert env["LOG_LEVEL"] == settings.services.log_level
        if settings.redis.mode == "cluster":
            assert env["REDIS_CLUSTER_NODES"] == ",".join(infra_values.redis_nodes(settings))
        else:
            assert env["REDIS_URL"] == infra_values.redis_url(settings)
    gateway = env_of(container_of(objects, "gateway"))
    for upstream in (s.name for s in registry.UPSTREAMS):
        url = gateway[f"GATEWAY_{upstream.upper()}_URL"]
        assert url == f"http://{upstream}:8000"
        only(objects, "Service", upstream)  # the URL names a Service that exists


def test_logouts_wait_for_a_replica_where_the_environment_has_replicas():
    for env, acks in (("dev", "0"), ("prod", "1")):
        settings = stack_settings(env)
        assert settings.redis.logout_replica_acks == int(acks)
        auth = env_of(container_of(rendered(settings), "auth"))
        assert auth["REDIS_REPLICA_ACKS"] == acks, env


def test_pods_carry_the_labels_the_redis_network_policy_admits(settings: StackSettings):
    redis_objects = render("redis", infra_values.redis_chart_values(settings), settings.namespace)
    policy = only(redis_objects, "NetworkPolicy", "redis")["spec"]
    clients = policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    for deployment in find(rendered(settings), "Deployment"):
        metadata = deployment["spec"]["template"]["metadata"]
        assert clients.items() <= metadata["labels"].items()
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "course-redis"
        assert metadata["annotations"]["prometheus.io/port"] == "8000"
        assert metadata["annotations"]["prometheus.io/path"] == "/metrics"


def test_dev_runs_one_replica_each_without_autoscaling():
    objects = rendered(stack_settings("dev"))
    assert all(d["spec"]["replicas"] == 1 for d in find(objects, "Deployment"))
    assert find(objects, "HorizontalPodAutoscaler") == []
    assert find(objects, "PodDisruptionBudget") == []


def test_prod_autoscales_and_budgets_every_service():
    settings = stack_settings("prod")
    objects = rendered(settings)
    for service in registry.NAMES:
        assert "replicas" not in only(objects, "Deployment", service)["spec"]  # the HPA's
        hpa = only(objects, "HorizontalPodAutoscaler", service)
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
        assert hpa["spec"]["scaleTargetRef"]["name"] == service
        assert only(objects, "PodDisruptionBudget", service)["spec"]["maxUnavailable"] == 1


def test_ingress_and_service_monitor_are_switches(settings: StackSettings):
    assert find(rendered(settings), "Ingress") == []
    assert find(rendered(settings), "ServiceMonitor") == []
    objects = rendered(
        settings,
        gateway__ingress={
            "enabled": True,
            "host": "courses.example.com",
            "className": "nginx",
            "tlsSecret": "gateway-tls",
            "annotations": {},
        },
        serviceMonitor__enabled=True,
    )
    validate_objects(objects)
    ingress = only(objects, "Ingress", "gateway")["spec"]
    backend = ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "gateway", "port": {"name": "http"}}
    assert ingress["tls"] == [{"hosts": ["courses.example.com"], "secretName": "gateway-tls"}]
    assert len(find(objects, "ServiceMonitor")) == len(registry.NAMES)


def test_redis_tls_mounts_the_ca_for_every_service():
    settings = stack_settings("dev")
    objects = rendered(settings, redis__tls=True, redis__caSecret="redis-tls")
    validate_objects(objects)
    for service in registry.NAMES:
        env = env_of(container_of(objects, service))
        assert (env["REDIS_TLS"], env["REDIS_TLS_CA_FILE"]) == ("true", "/etc/redis-tls/ca.crt")


def test_chart_defaults_follow_the_key_schema_and_the_ports():
    values = defaults("services")
    assert set(values["services"]) == set(registry.NAMES)
    assert values["port"] == infra_values.SERVICE_PORT
    upstreams = values["gateway"]["upstreams"]
    assert upstreams == {s.name: infra_values.service_url(s.name) for s in registry.UPSTREAMS}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("image__tag", "latest"),
        ("logLevel", "verbose"),
        ("redis__mode", "sentinel"),
        ("unknownKey", 1),
        ("services__search", {}),
    ],
)
def test_the_schema_refuses_what_would_break_the_design(path: str, value: Any):
    values = infra_values.services_chart_values(stack_settings("prod"))
    node = values
    *parents, leaf = path.split("__")
    for key in parents:
        node = node[key]
    node[leaf] = value
    with pytest.raises(helm_python.HelmError):
        validate_schema("services", values)
        render("services", values)


def test_a_missing_image_fails_with_the_reason():
    values = infra_values.services_chart_values(stack_settings("dev"))
    values["image"] = {"repository": "", "tag": ""}
    with pytest.raises(helm_python.HelmError, match=r"image\.repository is required"):
        render("services", values)


# --- who may call whom (issue 13: every pod could call every service) ----------------------


def _pods(objects: list[dict[str, Any]], namespace: str) -> dict[str, Pod]:
    return {name: pod_of(only(objects, "Deployment", name), namespace) for name in registry.NAMES}


def test_only_the_gateway_and_labelled_test_clients_reach_the_upstreams(settings: StackSettings):
    objects = rendered(settings)
    namespace = settings.namespace
    pods = _pods(objects, namespace)
    port = infra_values.SERVICE_PORT
    tester = Pod(infra_values.TEST_CLIENT_LABELS, namespace)
    prometheus = Pod({}, "monitoring")
    for upstream in ("auth", "courses", "enrollments"):
        target = pods[upstream]
        assert admitted(objects, pods["gateway"], target, port), upstream
        assert admitted(objects, tester, target, port), upstream
        assert admitted(objects, prometheus, target, port), upstream
        # Not another service, not a Redis client, not a pod without the label, nor a
        # labelled pod of another namespace, nor the ingress controller.
        for other in ("auth", "courses", "enrollments"):
            if other != upstream:
                assert not admitted(objects, pods[other], target, port), (other, upstream)
        for stranger in (
            Pod({}, namespace),
            Pod({"course-redis/redis-client": "true"}, namespace),
            Pod(infra_values.TEST_CLIENT_LABELS, "elsewhere"),
            Pod({}, "ingress-nginx"),
        ):
            assert not admitted(objects, stranger, target, port), (stranger, upstream)


def test_the_gateway_admits_the_ingress_controller_and_test_clients(settings: StackSettings):
    objects = rendered(settings)
    namespace = settings.namespace
    gateway = _pods(objects, namespace)["gateway"]
    port = infra_values.SERVICE_PORT
    assert admitted(objects, Pod({"app": "controller"}, "ingress-nginx"), gateway, port)
    assert admitted(objects, Pod(infra_values.TEST_CLIENT_LABELS, namespace), gateway, port)
    assert admitted(objects, Pod({}, "monitoring"), gateway, port)
    assert not admitted(objects, Pod({}, namespace), gateway, port)
    assert not admitted(objects, Pod({}, "team-a"), gateway, port)
    # The controller's namespace is a value.
    moved = rendered(
        settings,
        networkPolicy__ingressController={
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}},
            "podSelector": {},
        },
    )
    assert admitted(moved, Pod({}, "traefik"), gateway, port)
    assert not admitted(moved, Pod({}, "ingress-nginx"), gateway, port)


def test_every_service_pod_is_selected_by_a_policy(settings: StackSettings):
    objects = rendered(settings)
    policies = find(objects, "NetworkPolicy")
    for name, pod in _pods(objects, settings.namespace).items():
        assert any(selects(p["spec"]["podSelector"], pod.labels) for p in policies), name


def test_the_load_pods_carry_the_test_client_label_and_get_through(settings: StackSettings):
    from infra.loadtest import LoadtestSettings, locust_chart_values, read_locustfiles
    from tests.charts.test_locust_chart import render_locust

    services = rendered(settings)
    locust = render_locust(
        locust_chart_values(settings, LoadtestSettings(enabled=True), read_locustfiles()),
        settings.namespace,
    )
    pods = _pods(services, settings.namespace)
    for workload in find(locust, "Job"):
        load_pod = pod_of(workload, settings.namespace)
        # The gateway, and the courses and enrollments /metrics the suites read.
        for target in ("gateway", "courses", "enrollments"):
            assert admitted(services, load_pod, pods[target], infra_values.SERVICE_PORT)


def test_the_test_client_label_has_one_source():
    assert defaults("services")["networkPolicy"]["testClientLabels"] == (
        infra_values.TEST_CLIENT_LABELS
    )
    assert infra_values.services_chart_values(stack_settings("prod"))["networkPolicy"][
        "testClientLabels"
    ] == (infra_values.TEST_CLIENT_LABELS)

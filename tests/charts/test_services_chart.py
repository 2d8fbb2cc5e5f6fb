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
    "JWT_PUBLIC_KEYS",
    "LOG_LEVEL",
    "METRICS_PORT",
}
GATEWAY_ENV = {
    "GATEWAY_AUTH_URL",
    "GATEWAY_COURSES_URL",
    "GATEWAY_ENROLLMENTS_URL",
    "GATEWAY_TRUSTED_PROXIES",
}
# Issue 13 (finding 9): each service gets the secrets it uses and no other. Written out
# rather than derived from the registry, so a change of who holds what shows up here: the
# variable -> the Secret it comes from, per service.
SECRET_MATRIX = {
    "gateway": {
        "REDIS_PASSWORD": "redis-user-gateway",
        "JWT_PUBLIC_KEYS": "jwt-public-keys",
    },
    "auth": {
        "REDIS_PASSWORD": "redis-user-auth",
        "JWT_PUBLIC_KEYS": "jwt-public-keys",
        "JWT_PRIVATE_KEY": "jwt-signing-key",
        "DATABASE_URL": "database",
    },
    "courses": {
        "REDIS_PASSWORD": "redis-user-courses",
        "JWT_PUBLIC_KEYS": "jwt-public-keys",
        "DATABASE_URL": "database",
    },
    "enrollments": {
        "REDIS_PASSWORD": "redis-user-enrollments",
        "JWT_PUBLIC_KEYS": "jwt-public-keys",
        "DATABASE_URL": "database",
    },
}
# Issue 14: the init container that prepares the database of each service that opens one,
# and the only container that reads the smoke account's Secret (its password included).
PREPARE = "prepare-database"
INIT_SECRET_MATRIX = {
    service: {
        "DATABASE_URL": "database",
        "SMOKE_ACCOUNT_USERNAME": "smoke-account",
        "SMOKE_ACCOUNT_PASSWORD": "smoke-account",
    }
    for service in ("auth", "courses", "enrollments")
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


def init_containers_of(objects: list[dict[str, Any]], service: str) -> list[dict[str, Any]]:
    pod = only(objects, "Deployment", service)["spec"]["template"]["spec"]
    found: list[dict[str, Any]] = pod.get("initContainers", [])
    return found


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
        expected |= set(SECRET_MATRIX[service])
        if service == "auth":
            expected |= {"REDIS_REPLICA_ACKS"}
        assert set(env) == expected, service
        assert env["REDIS_USERNAME"] == service  # the ACL user is named after the service
        assert env["LOG_LEVEL"] == settings.services.log_level
        assert env["METRICS_PORT"] == str(infra_values.METRICS_PORT)
        if settings.redis.mode == "cluster":
            assert env["REDIS_CLUSTER_NODES"] == ",".join(infra_values.redis_nodes(settings))
        else:
            assert env["REDIS_URL"] == infra_values.redis_url(settings)
    gateway = env_of(container_of(objects, "gateway"))
    for upstream in (s.name for s in registry.UPSTREAMS):
        url = gateway[f"GATEWAY_{upstream.upper()}_URL"]
        assert url == f"http://{upstream}:8000"
        only(objects, "Service", upstream)  # the URL names a Service that exists


def _secret_refs(container: dict[str, Any]) -> dict[str, str]:
    """Every Secret a container is given, variable -> Secret; and it takes none otherwise."""
    assert "envFrom" not in container, container["name"]
    refs = {}
    for entry in container.get("env", []):
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            refs[entry["name"]] = ref["name"]
    return refs


def test_each_service_gets_only_the_secrets_it_uses(settings: StackSettings):
    """Issue 13 (finding 9): the gateway received DATABASE_URL and never used it, and every
    service the HS256 key that could forge tokens. The whole matrix, on the rendered pods."""
    objects = rendered(settings)
    assert set(SECRET_MATRIX) == set(registry.NAMES)
    for service in registry.NAMES:
        container = container_of(objects, service)
        assert _secret_refs(container) == SECRET_MATRIX[service], service
        env = env_of(container)
        assert "JWT_SECRET" not in env, service
        # The keys within those Secrets are the ones the program writes.
        assert env["JWT_PUBLIC_KEYS"]["secretKeyRef"]["key"] == infra_values.JWT_PUBLIC_KEYS_FILE
        if "JWT_PRIVATE_KEY" in env:
            assert env["JWT_PRIVATE_KEY"]["secretKeyRef"]["key"] == (
                infra_values.JWT_PRIVATE_KEY_FILE
            )
        # No Secret reaches the pod as a volume either (the Redis CA, with TLS, is no secret).
        pod = only(objects, "Deployment", service)["spec"]["template"]["spec"]
        assert not [v for v in pod.get("volumes", []) if "secret" in v], service
    # The registry agrees with the matrix: whoever signs holds the key, whoever opens the
    # database gets its URL.
    for record in registry.SERVICES:
        assert ("JWT_PRIVATE_KEY" in SECRET_MATRIX[record.name]) is record.signs_tokens
        assert ("DATABASE_URL" in SECRET_MATRIX[record.name]) is record.uses_database


def test_only_the_prepare_database_containers_read_the_smoke_account(settings: StackSettings):
    """Issue 14: the smoke student's password goes to the init containers that create the
    account, and to no service: the whole matrix of init containers, on the rendered pods."""
    objects = rendered(settings)
    readers = []
    for service in registry.NAMES:
        inits = {c["name"]: _secret_refs(c) for c in init_containers_of(objects, service)}
        assert inits == (
            {PREPARE: INIT_SECRET_MATRIX[service]} if service in INIT_SECRET_MATRIX else {}
        ), service
        for container in [*init_containers_of(objects, service), container_of(objects, service)]:
            if "smoke-account" in _secret_refs(container).values():
                readers.append((service, container["name"]))
    assert readers == [(s, PREPARE) for s in registry.NAMES if s in INIT_SECRET_MATRIX]
    for record in registry.SERVICES:
        assert (record.name in INIT_SECRET_MATRIX) is record.uses_database


def test_each_database_is_prepared_before_its_service_starts(settings: StackSettings):
    """Issue 14 (1): nothing migrated the deployed database. Each pod of a service that opens
    it first runs `prepare` in the same image, as the same hardened user, with the same
    DATABASE_URL, on the same /tmp (dev's SQLite file is there)."""
    objects = rendered(settings)
    for service in registry.NAMES:
        inits = init_containers_of(objects, service)
        if service not in INIT_SECRET_MATRIX:
            assert inits == [], service  # the gateway opens no database
            continue
        main = container_of(objects, service)
        (prepare,) = inits
        assert prepare["name"] == PREPARE
        assert prepare["args"] == ["python", "-m", "courseredis.services.db", "prepare"]
        assert prepare["image"] == main["image"]
        assert prepare["imagePullPolicy"] == main["imagePullPolicy"]
        assert prepare["securityContext"] == main["securityContext"]
        env, main_env = env_of(prepare), env_of(main)
        assert env["DATABASE_URL"] == main_env["DATABASE_URL"]
        assert env["SMOKE_ACCOUNT_USERNAME"]["secretKeyRef"] == {
            "name": "smoke-account",
            "key": "username",
        }
        assert env["SMOKE_ACCOUNT_PASSWORD"]["secretKeyRef"] == {
            "name": "smoke-account",
            "key": "password",
        }
        assert set(env) == set(INIT_SECRET_MATRIX[service])  # nothing of Redis, no JWT key
        assert prepare["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
        assert {"name": "tmp", "mountPath": "/tmp"} in main["volumeMounts"]
        assert prepare["resources"] == defaults("services")["prepareDatabase"]["resources"]


def test_without_a_smoke_account_the_database_is_only_migrated(settings: StackSettings):
    """The chart on its own, as its defaults have it: `smokeAccount.secretName` ""."""
    assert defaults("services")["smokeAccount"] == {"secretName": ""}
    objects = rendered(settings, smokeAccount__secretName="")
    validate_objects(objects)
    check_containers(objects)
    for service in INIT_SECRET_MATRIX:
        (prepare,) = init_containers_of(objects, service)
        assert _secret_refs(prepare) == {"DATABASE_URL": "database"}, service


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
        assert metadata["annotations"]["prometheus.io/port"] == str(infra_values.METRICS_PORT)
        assert metadata["annotations"]["prometheus.io/path"] == "/metrics"


def test_metrics_are_served_on_their_own_port(settings: StackSettings):
    """Issue 13 (finding 7): /metrics moved to METRICS_PORT; the pods, the Services, the
    scrape annotations and the ServiceMonitors must point there, not at `http`."""
    objects = rendered(settings, serviceMonitor__enabled=True)
    metrics_port = infra_values.METRICS_PORT
    assert metrics_port != infra_values.SERVICE_PORT
    for service in registry.NAMES:
        container = container_of(objects, service)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": infra_values.SERVICE_PORT, "metrics": metrics_port}
        assert env_of(container)["METRICS_PORT"] == str(metrics_port)
        service_ports = {p["name"]: p for p in only(objects, "Service", service)["spec"]["ports"]}
        assert service_ports["metrics"]["port"] == metrics_port
        assert service_ports["metrics"]["targetPort"] == "metrics"
        (endpoint,) = only(objects, "ServiceMonitor", service)["spec"]["endpoints"]
        assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")


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
    # Only the gateway's `http` port is published: never its metrics, nor another service.
    backends = [p["backend"]["service"] for r in ingress["rules"] for p in r["http"]["paths"]]
    assert backends == [{"name": "gateway", "port": {"name": "http"}}]
    assert ingress["tls"] == [{"hosts": ["courses.example.com"], "secretName": "gateway-tls"}]
    assert len(find(objects, "ServiceMonitor")) == len(registry.NAMES)


def test_redis_tls_mounts_the_ca_for_every_service():
    settings = stack_settings("dev")
    objects = rendered(settings, redis__tls=True, redis__caSecret="redis-tls")
    validate_objects(objects)
    for service in registry.NAMES:
        env = env_of(container_of(objects, service))
        assert (env["REDIS_TLS"], env["REDIS_TLS_CA_FILE"]) == ("true", "/etc/redis-tls/ca.crt")


def test_chart_defaults_name_no_service_and_grant_nothing():
    """The chart serves whatever services it is given (the program passes the registry's);
    its defaults name none, and a service's defaults hold no secret it did not ask for."""
    values = defaults("services")
    assert values["services"] == {} and values["gateway"]["upstreams"] == {}
    service_defaults = values["serviceDefaults"]
    assert service_defaults["usesDatabase"] is False
    assert service_defaults["signsTokens"] is False
    assert service_defaults["waitsForReplicas"] is False
    assert values["port"] == infra_values.SERVICE_PORT
    assert values["metricsPort"] == infra_values.METRICS_PORT
    assert values["gateway"]["service"] == registry.PUBLIC


def test_the_program_passes_every_service_of_the_registry(settings: StackSettings):
    """A service the registry has and the chart does not run (or the reverse) fails here."""
    values = infra_values.services_chart_values(settings)
    assert list(values["services"]) == list(registry.NAMES)
    assert values["gateway"]["upstreams"] == {
        s.name: infra_values.service_url(s.name) for s in registry.UPSTREAMS
    }
    objects = rendered(settings)
    for kind in ("Deployment", "Service", "NetworkPolicy"):
        assert sorted(o["metadata"]["name"] for o in find(objects, kind)) == sorted(registry.NAMES)


def test_a_new_service_needs_no_chart_edit(settings: StackSettings):
    """Issue 12 (3): adding a service touches the registry and its module. The chart takes
    any name: a `billing` upstream gets its Deployment, Service, policy (the gateway and test
    clients only) and its URL in the gateway, from values alone."""
    values = infra_values.services_chart_values(settings)
    values["services"]["billing"] = {"redisSecret": "redis-user-billing", "usesDatabase": True}
    values["gateway"]["upstreams"]["billing"] = "http://billing:8000"
    validate_schema("services", values)
    objects = render("services", values, namespace=settings.namespace)
    validate_objects(objects)
    container = container_of(objects, "billing")
    assert container["args"][:2] == ["courseredis-service", "billing"]
    assert _secret_refs(container) == {
        "REDIS_PASSWORD": "redis-user-billing",
        "JWT_PUBLIC_KEYS": "jwt-public-keys",
        "DATABASE_URL": "database",
    }
    # The rest comes from serviceDefaults.
    default_resources = defaults("services")["serviceDefaults"]["resources"]
    assert container["resources"] == default_resources
    assert env_of(container_of(objects, "gateway"))["GATEWAY_BILLING_URL"] == "http://billing:8000"
    pods = {
        n: pod_of(only(objects, "Deployment", n), settings.namespace)
        for n in ("gateway", "billing")
    }
    port = infra_values.SERVICE_PORT
    assert admitted(objects, pods["gateway"], pods["billing"], port)
    assert not admitted(objects, Pod({}, settings.namespace), pods["billing"], port)


def test_the_chart_refuses_a_second_signer():
    values = infra_values.services_chart_values(stack_settings("dev"))
    values["services"]["courses"]["signsTokens"] = True
    with pytest.raises(helm_python.HelmError, match="only one service signs tokens"):
        render("services", values)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("image__tag", "latest"),
        ("logLevel", "verbose"),
        ("redis__mode", "sentinel"),
        ("unknownKey", 1),
        ("services__search", {}),  # a service without its Redis user's Secret
        ("services__auth__jwtSecret", "x"),  # an unknown key of a service
        ("services__Bad_Name", {"redisSecret": "x"}),  # not a DNS label
        ("gateway__upstreams__courses", "courses:8000"),  # not a URL
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
    metrics = infra_values.METRICS_PORT
    tester = Pod(infra_values.TEST_CLIENT_LABELS, namespace)
    prometheus = Pod({}, "monitoring")
    for upstream in ("auth", "courses", "enrollments"):
        target = pods[upstream]
        assert admitted(objects, pods["gateway"], target, port), upstream
        assert admitted(objects, tester, target, port), upstream
        # Prometheus scrapes the metrics port, and only that; the gateway has no business
        # there; test clients read courses' and enrollments' figures (the load suites).
        assert admitted(objects, prometheus, target, metrics), upstream
        assert not admitted(objects, prometheus, target, port), upstream
        assert not admitted(objects, pods["gateway"], target, metrics), upstream
        scraped_by_load = upstream in infra_values.LOAD_METRICS_SERVICES
        assert admitted(objects, tester, target, metrics) is scraped_by_load, upstream
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
            for any_port in (port, metrics):
                assert not admitted(objects, stranger, target, any_port), (stranger, upstream)


def test_the_gateway_admits_the_ingress_controller_and_test_clients(settings: StackSettings):
    objects = rendered(settings)
    namespace = settings.namespace
    gateway = _pods(objects, namespace)["gateway"]
    port = infra_values.SERVICE_PORT
    metrics = infra_values.METRICS_PORT
    controller = Pod({"app": "controller"}, "ingress-nginx")
    assert admitted(objects, controller, gateway, port)
    assert admitted(objects, Pod(infra_values.TEST_CLIENT_LABELS, namespace), gateway, port)
    assert admitted(objects, Pod({}, "monitoring"), gateway, metrics)
    # The public side never reaches the metrics; Prometheus never the API.
    assert not admitted(objects, controller, gateway, metrics)
    assert not admitted(objects, Pod({}, "monitoring"), gateway, port)
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
        assert admitted(services, load_pod, pods["gateway"], infra_values.SERVICE_PORT)
        # The courses and enrollments /metrics the suites read, at the URLs they are given.
        env = env_of(workload["spec"]["template"]["spec"]["containers"][0])
        for target in ("courses", "enrollments"):
            url = env[f"LOAD_{target.upper()}_METRICS_URL"]
            assert url == (
                f"http://{target}.{settings.namespace}.svc.{settings.cluster_domain}:"
                f"{infra_values.METRICS_PORT}/metrics"
            )
            assert admitted(services, load_pod, pods[target], infra_values.METRICS_PORT)


def test_the_test_client_label_has_one_source():
    assert defaults("services")["networkPolicy"]["testClientLabels"] == (
        infra_values.TEST_CLIENT_LABELS
    )
    assert infra_values.services_chart_values(stack_settings("prod"))["networkPolicy"][
        "testClientLabels"
    ] == (infra_values.TEST_CLIENT_LABELS)

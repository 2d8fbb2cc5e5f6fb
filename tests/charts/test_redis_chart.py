"""The Redis chart, rendered by real Helm with the values each stack passes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python
import pytest

from courseredis.engines import IMAGE_VARIANT, PINNED, Engine
from courseredis.redis_config import (
    APPENDFSYNC,
    BUSY_REPLY_THRESHOLD_MS,
    MAXMEMORY_POLICY,
    render_redis_conf,
)
from infra import values as infra_values
from infra.settings import StackSettings
from tests.charts.helm import defaults, env_of, find, lint, notes, only, render, validate_schema
from tests.charts.policy import Pod, admitted, check_containers, pod_of, validate_objects

REDIS_SELECTOR = {
    "app.kubernetes.io/name": "redis",
    "app.kubernetes.io/instance": "redis",
    "app.kubernetes.io/component": "server",
}


def rendered(settings: StackSettings, **overrides: Any) -> list[dict[str, Any]]:
    values = infra_values.redis_chart_values(settings)
    _merge(values, overrides)
    return render("redis", values, namespace=settings.namespace)


def _merge(into: dict[str, Any], overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def parse_conf(text: str) -> dict[str, str]:
    lines = [line.strip() for line in text.splitlines()]
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}


def test_lint_is_clean(settings: StackSettings):
    report = lint("redis", infra_values.redis_chart_values(settings), settings.namespace)
    assert report["errors"] == [] and report["messages"] == [], report


def test_every_object_is_valid_and_every_container_hardened(settings: StackSettings):
    objects = rendered(settings)
    validate_objects(objects)
    check_containers(objects)


def test_the_topology_is_the_stack_files(settings: StackSettings):
    objects = rendered(settings)
    statefulset = only(objects, "StatefulSet", "redis")
    assert statefulset["spec"]["replicas"] == settings.redis.node_count
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    jobs = find(objects, "Job")
    if settings.redis.mode == "standalone":
        assert jobs == []
        assert "initContainers" not in statefulset["spec"]["template"]["spec"]
        return
    args = jobs[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    options = dict(zip(args[::2], args[1::2], strict=True))
    # The Job dials exactly the nodes the services are given, and forms the stack's shape.
    assert options["--nodes"].split(",") == infra_values.redis_nodes(settings)
    assert int(options["--masters"]) == settings.redis.masters
    assert int(options["--replicas-per-master"]) == settings.redis.replicas_per_master


def test_redis_conf_is_what_the_package_renders(settings: StackSettings):
    """One source of truth: the chart's redis.conf (plus what start.sh adds per pod) equals
    courseredis.redis_config.render_redis_conf for the stack's topology."""
    objects = rendered(settings)
    config = only(objects, "ConfigMap", "redis-config")["data"]
    chart = parse_conf(config["redis.conf"])
    clustered = settings.redis.mode == "cluster"
    host = infra_values.redis_pod_hosts(settings)[0]
    package = parse_conf(
        render_redis_conf(
            settings.redis,
            port=infra_values.REDIS_PORT,
            cluster_port=infra_values.CLUSTER_BUS_PORT if clustered else None,
            bind=chart["bind"],
            data_dir=Path("/data"),
            acl_file=Path("/etc/redis/acl/users.acl"),
            announce_hostname=host if clustered else None,
            announce_ip="10.0.0.7" if clustered else None,
            pidfile=None,
            logfile=None,
            daemonize=False,
            replication_user=infra_values.REPLICATION_ACCOUNT if clustered else None,
            replication_password="pw" if clustered else None,
        )
    )
    assert chart.pop("include") == "/tmp/redis/runtime.conf"
    runtime = {"cluster-announce-hostname", "cluster-announce-ip", "masteruser", "masterauth"}
    assert {k: v for k, v in package.items() if k not in runtime} == chart
    script = config["start.sh"]
    for key in runtime & set(package):
        assert f'echo "{key} ' in script, key
    if clustered:
        assert "$POD_NAME.redis-headless.$POD_NAMESPACE.svc.cluster.local" in script
    assert chart["maxmemory-policy"] == MAXMEMORY_POLICY
    assert (chart.get("appendonly"), chart.get("appendfsync")) == (
        ("yes", APPENDFSYNC) if settings.redis.persistence == "aof" else ("no", None)
    )


def test_chart_defaults_restate_the_package_constants():
    values = defaults("redis")
    assert values["maxmemoryPolicy"] == MAXMEMORY_POLICY
    assert values["appendfsync"] == APPENDFSYNC
    assert values["busyReplyThresholdMs"] == BUSY_REPLY_THRESHOLD_MS
    assert values["port"] == infra_values.REDIS_PORT
    assert values["cluster"]["busPort"] == infra_values.CLUSTER_BUS_PORT
    # The pinned maintained release of the default engine (docs/engines.md).
    assert (values["engine"], values["image"]["repository"]) == ("redis", "redis")
    assert values["image"]["tag"] == f"{PINNED['redis']}-{IMAGE_VARIANT}"


@pytest.mark.parametrize("engine", ["redis", "valkey"])
def test_the_stack_engine_is_its_official_image_and_binaries(engine: Engine):
    settings = _prod()
    topology = settings.redis.model_copy(update={"engine": engine, "version": PINNED[engine]})
    digest = "sha256:" + "3" * 64
    deployment = settings.redis_deployment.model_copy(update={"image_digest": digest})
    settings = settings.model_copy(update={"redis": topology, "redis_deployment": deployment})
    objects = rendered(settings)
    statefulset = only(objects, "StatefulSet")
    containers = statefulset["spec"]["template"]["spec"]["containers"]
    (redis,) = [c for c in containers if c["name"] == "redis"]
    repository = {"redis": "redis", "valkey": "valkey/valkey"}[engine]
    assert redis["image"] == f"{repository}:{PINNED[engine]}-{IMAGE_VARIANT}@{digest}"
    config = only(objects, "ConfigMap")["data"]
    assert f"exec {engine}-server /etc/redis/redis.conf" in config["start.sh"]
    probe = " ".join(redis["readinessProbe"]["exec"]["command"])
    assert f"{engine}-cli -h 127.0.0.1" in probe
    other = {"redis": "valkey", "valkey": "redis"}[engine]
    assert f"{other}-server" not in config["start.sh"] and f"{other}-cli" not in probe


def test_cluster_nodes_announce_hostnames_keep_nodes_conf_and_repair_it():
    settings = _prod()
    objects = rendered(settings)
    config = parse_conf(only(objects, "ConfigMap", "redis-config")["data"]["redis.conf"])
    assert config["cluster-preferred-endpoint-type"] == "hostname"
    assert config["cluster-config-file"] == "nodes.conf" and config["dir"] == "/data"
    spec = only(objects, "StatefulSet", "redis")["spec"]
    assert [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]] == ["data"]
    pod = spec["template"]["spec"]
    repair = pod["initContainers"][0]
    assert repair["command"] + repair["args"] == [
        "python", "-m", "courseredis.cluster_repair",
        "--nodes-conf", "/data/nodes.conf", "--my-ip", "$(POD_IP)",
    ]  # fmt: skip
    assert repair["image"] == f"{settings.image.repository}:{settings.image.tag}"
    assert {"name": "data", "mountPath": "/data"} in repair["volumeMounts"]
    headless = only(objects, "Service", "redis-headless")["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True


def test_bootstrap_is_a_plain_job_with_the_admin_credentials():
    objects = rendered(_prod())
    job = only(objects, "Job", "redis-bootstrap")
    assert not any(k.startswith("helm.sh/hook") for k in job["metadata"].get("annotations", {}))
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "courseredis.cluster_bootstrap"]
    env = env_of(container)
    assert env["REDIS_USERNAME"]["secretKeyRef"] == {"name": "redis-admin", "key": "username"}
    assert env["REDIS_PASSWORD"]["secretKeyRef"] == {"name": "redis-admin", "key": "password"}


def test_prod_spreads_pods_and_budgets_disruptions():
    objects = rendered(_prod())
    pod = only(objects, "StatefulSet", "redis")["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == REDIS_SELECTOR
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    pdb = only(objects, "PodDisruptionBudget", "redis")["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": REDIS_SELECTOR}}


def test_dev_prefers_spread_and_has_no_budget():
    objects = rendered(_dev())
    pod = only(objects, "StatefulSet", "redis")["spec"]["template"]["spec"]
    assert "preferredDuringSchedulingIgnoredDuringExecution" in pod["affinity"]["podAntiAffinity"]
    assert find(objects, "PodDisruptionBudget") == []


def test_network_policy_admits_clients_and_keeps_the_bus_to_redis():
    settings = _prod()
    objects = rendered(settings)
    policy = only(objects, "NetworkPolicy", "redis")["spec"]
    assert policy["podSelector"]["matchLabels"] == REDIS_SELECTOR
    by_port: dict[int, list[dict[str, Any]]] = {}
    for rule in policy["ingress"]:
        for port in rule["ports"]:
            by_port.setdefault(port["port"], []).extend(rule["from"])
    clients = {"course-redis/redis-client": "true"}
    assert {"podSelector": {"matchLabels": clients}} in by_port[6379]
    assert by_port[16379] == [{"podSelector": {"matchLabels": REDIS_SELECTOR}}]
    # The bootstrap Job carries the client label; the Redis pods are selected by theirs.
    job_labels = only(objects, "Job")["spec"]["template"]["metadata"]["labels"]
    assert clients.items() <= job_labels.items()
    assert job_labels["app.kubernetes.io/component"] == "bootstrap"


def test_only_the_monitoring_namespace_scrapes_the_exporter(settings: StackSettings):
    """Issue 13: the metrics port admitted every namespace. Pods knock on it."""
    objects = rendered(settings)
    redis_pod = pod_of(only(objects, "StatefulSet", "redis"), settings.namespace)
    port = defaults("redis")["metrics"]["port"]
    prometheus = Pod({"app.kubernetes.io/name": "prometheus"}, "monitoring")
    assert admitted(objects, prometheus, redis_pod, port)
    for stranger in (
        Pod({"app.kubernetes.io/name": "prometheus"}, "team-a"),  # a look-alike elsewhere
        Pod({}, settings.namespace),  # any pod of the platform's own namespace
        Pod({"course-redis/redis-client": "true"}, settings.namespace),  # a Redis client
    ):
        assert not admitted(objects, stranger, redis_pod, port), stranger
    # ... and the Redis port stays closed to the monitoring namespace.
    assert not admitted(objects, prometheus, redis_pod, infra_values.REDIS_PORT)
    # Prometheus pods only, when the chart is told which they are.
    narrowed = rendered(
        settings,
        networkPolicy={"metrics": {"podSelector": {"matchLabels": {"app": "prometheus"}}}},
    )
    assert admitted(narrowed, Pod({"app": "prometheus"}, "monitoring"), redis_pod, port)
    assert not admitted(narrowed, Pod({"app": "grafana"}, "monitoring"), redis_pod, port)


def test_an_empty_metrics_namespace_selector_is_refused():
    values = infra_values.redis_chart_values(_dev())
    # Helm merges maps, so {} keeps the default; null deletes the default's key.
    values["networkPolicy"] = {"metrics": {"namespaceSelector": {"matchLabels": None}}}
    with pytest.raises(helm_python.HelmError, match="namespaceSelector"):
        render("redis", values)


def test_clients_and_peers_reach_redis_and_nobody_reaches_the_bootstrap():
    settings = _prod()
    objects = rendered(settings)
    redis_pod = pod_of(only(objects, "StatefulSet", "redis"), settings.namespace)
    bootstrap = pod_of(only(objects, "Job", "redis-bootstrap"), settings.namespace)
    client = Pod({"course-redis/redis-client": "true"}, settings.namespace)
    assert admitted(objects, client, redis_pod, infra_values.REDIS_PORT)
    assert not admitted(objects, client, redis_pod, infra_values.CLUSTER_BUS_PORT)
    assert admitted(objects, redis_pod, redis_pod, infra_values.CLUSTER_BUS_PORT)
    assert not admitted(objects, Pod({}, settings.namespace), redis_pod, infra_values.REDIS_PORT)
    for source in (client, redis_pod, Pod({}, "monitoring")):
        assert not admitted(objects, source, bootstrap, 8080)


def test_replicas_authenticate_as_replication_not_admin():
    objects = rendered(_prod())
    script = only(objects, "ConfigMap", "redis-config")["data"]["start.sh"]
    assert 'echo "masteruser $REDIS_REPLICATION_USERNAME"' in script
    assert 'echo "masterauth $REDIS_REPLICATION_PASSWORD"' in script
    pod = only(objects, "StatefulSet", "redis")["spec"]["template"]["spec"]
    env = env_of(next(c for c in pod["containers"] if c["name"] == "redis"))
    secret = infra_values.SECRETS.replication
    assert env["REDIS_REPLICATION_USERNAME"]["secretKeyRef"] == {"name": secret, "key": "username"}
    assert env["REDIS_REPLICATION_PASSWORD"]["secretKeyRef"] == {"name": secret, "key": "password"}
    exporter = env_of(next(c for c in pod["containers"] if c["name"] == "metrics"))
    assert exporter["REDIS_EXPORTER_CONFIG_COMMAND"] == "-"


def test_the_acl_file_comes_from_its_secret_and_default_is_off_by_it():
    objects = rendered(_prod())
    pod = only(objects, "StatefulSet", "redis")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "acl")
    assert volume["secret"]["secretName"] == infra_values.SECRETS.acl
    assert volume["secret"]["items"] == [{"key": "users.acl", "path": "users.acl"}]


def test_exporter_sidecar_uses_its_own_account_and_service_monitor_is_a_switch():
    settings = _prod()
    objects = rendered(settings)
    pod = only(objects, "StatefulSet", "redis")["spec"]["template"]["spec"]
    exporter = next(c for c in pod["containers"] if c["name"] == "metrics")
    assert exporter["image"].startswith("oliver006/redis_exporter:v")
    env = env_of(exporter)
    assert env["REDIS_USER"]["secretKeyRef"]["name"] == infra_values.SECRETS.exporter
    assert find(objects, "ServiceMonitor") == []
    with_monitor = rendered(settings, metrics={"serviceMonitor": {"enabled": True}})
    validate_objects(with_monitor)
    monitor = only(with_monitor, "ServiceMonitor", "redis")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_standalone_tls_renders_valid_objects_and_cluster_tls_is_refused():
    dev = _dev()
    objects = rendered(dev, tls={"enabled": True, "secretName": "redis-tls"})
    validate_objects(objects)
    check_containers(objects)
    config = parse_conf(only(objects, "ConfigMap", "redis-config")["data"]["redis.conf"])
    assert (config["port"], config["tls-port"]) == ("0", "6379")
    with pytest.raises(helm_python.HelmError, match="TLS"):
        rendered(_prod(), tls={"enabled": True, "secretName": "redis-tls"})


@pytest.mark.parametrize(
    "change",
    [
        {"maxmemoryPolicy": "allkeys-lru"},
        {"image": {"tag": "latest"}},
        {"mode": "sentinel"},
        {"unknownKey": 1},
        # null deletes a key in Helm's merge: a container without a memory limit.
        {"resources": {"redis": {"limits": {"memory": None}}}},
        {"cluster": {"masters": 2}},
    ],
)
def test_the_schema_refuses_what_would_break_the_design(change: dict[str, Any]):
    values = copy.deepcopy(infra_values.redis_chart_values(_prod()))
    _merge(values, change)
    with pytest.raises(helm_python.HelmError):
        validate_schema("redis", values)
        render("redis", values)


def test_missing_secret_names_fail_with_the_reason():
    values = infra_values.redis_chart_values(_dev())
    values["auth"]["aclSecret"]["name"] = ""
    with pytest.raises(helm_python.HelmError, match=r"aclSecret\.name is required"):
        render("redis", values)


def test_notes_tell_how_to_follow_the_bootstrap():
    settings = _prod()
    text = notes("redis", infra_values.redis_chart_values(settings), settings.namespace)
    assert "logs -f job/redis-bootstrap" in text
    assert ",".join(infra_values.redis_nodes(settings)) in text


def _dev() -> StackSettings:
    from tests.charts.helm import stack_settings

    return stack_settings("dev")


def _prod() -> StackSettings:
    from tests.charts.helm import stack_settings

    return stack_settings("prod")


def test_images_can_be_pinned_by_digest():
    redis_digest, exporter_digest = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    objects = rendered(
        _prod(), image={"digest": redis_digest}, metrics={"image": {"digest": exporter_digest}}
    )
    pod = only(objects, "StatefulSet", "redis")["spec"]["template"]["spec"]
    images = {c["name"]: c["image"] for c in pod["containers"]}
    assert images["redis"].endswith(f":{PINNED['redis']}-{IMAGE_VARIANT}@{redis_digest}")
    assert images["metrics"].endswith(f":v1.62.0@{exporter_digest}")
    validate_objects(objects)
    check_containers(objects)
    values = infra_values.redis_chart_values(_prod())
    values["image"]["digest"] = "sha256:short"
    with pytest.raises(helm_python.HelmError, match="digest"):
        render("redis", values)

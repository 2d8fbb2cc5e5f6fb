"""The Locust chart, rendered by real Helm with the values the Pulumi switch passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from infra import values as infra_values
from infra.loadtest import (
    LOCUST_RELEASE,
    LOCUSTFILES,
    SUITES,
    LoadtestSettings,
    locust_chart_values,
    read_locustfiles,
)
from infra.settings import StackSettings
from tests.charts.helm import (
    CHARTS,
    containers,
    defaults,
    env_of,
    find,
    lint,
    only,
    render,
    stack_settings,
)
from tests.charts.policy import check_containers, validate_objects

CHART = "locust"


def render_locust(values: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    """`helm template` of the Locust chart under the release name the program uses."""
    with helm_python.Chart.load(CHARTS / CHART) as loaded:
        manifests = loaded.render(values, name=LOCUST_RELEASE, namespace=namespace, is_install=True)
    objects: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if not path.endswith("NOTES.txt"):
            objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def chart_values(settings: StackSettings, **changes: Any) -> dict[str, Any]:
    loadtest = LoadtestSettings(enabled=True).model_copy(update=changes)
    return locust_chart_values(settings, loadtest, read_locustfiles())


def test_only_the_workers_reach_the_master():
    """A pod without a NetworkPolicy admits anyone: the Locust pods admit their workers."""
    from tests.charts.policy import Pod, admitted, pod_of

    settings = stack_settings("prod")
    objects = render_locust(chart_values(settings), settings.namespace)
    master, worker = master_and_workers(objects)
    master_pod = pod_of(master, settings.namespace)
    worker_pod = pod_of(worker, settings.namespace)
    assert admitted(objects, worker_pod, master_pod, 5557)
    assert not admitted(objects, Pod({}, settings.namespace), master_pod, 5557)
    assert not admitted(objects, master_pod, worker_pod, 5557)


def master_and_workers(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    workloads = [o for o in objects if o["kind"] in ("Job", "Deployment")]
    master = next(o for o in workloads if "master" in o["metadata"]["name"])
    worker = next(o for o in workloads if "worker" in o["metadata"]["name"])
    return master, worker


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (found,) = workload["spec"]["template"]["spec"]["containers"]
    assert isinstance(found, dict)
    return found


def mounted_files(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The files a pod sees under /locust/loadtests: path -> content, through the volume's
    items (ConfigMap keys cannot hold "/", so subpackage files are stored under other keys)."""
    data = only(objects, "ConfigMap", f"{LOCUST_RELEASE}-files")["data"]
    master, _ = master_and_workers(objects)
    volumes = {v["name"]: v for v in master["spec"]["template"]["spec"]["volumes"]}
    items = volumes["locustfiles"]["configMap"]["items"]
    assert {item["key"] for item in items} == set(data)  # nothing stored goes unmounted
    return {item["path"]: data[item["key"]] for item in items}


def test_lint_is_clean(settings: StackSettings):
    report = lint(CHART, chart_values(settings), settings.namespace)
    assert report["errors"] == [] and report["messages"] == [], report


@pytest.mark.parametrize(
    ("suite", "headless"), [*((suite, True) for suite in SUITES), ("cache_hit_ratio", False)]
)
def test_every_object_is_valid_and_every_container_hardened(
    settings: StackSettings, suite: str, headless: bool
):
    objects = render_locust(
        chart_values(settings, suite=suite, headless=headless), settings.namespace
    )
    validate_objects(objects)
    check_containers(objects)
    kinds = sorted(o["kind"] for o in objects)
    workload = "Job" if headless else "Deployment"
    assert kinds == sorted(["ConfigMap", "NetworkPolicy", "Service", workload, workload])


def test_the_configmap_holds_the_repository_locustfiles(settings: StackSettings):
    objects = render_locust(chart_values(settings), settings.namespace)
    files = mounted_files(objects)
    assert set(files) == set(LOCUSTFILES)
    for name in LOCUSTFILES:
        assert files[name] == (Path("loadtests") / name).read_text(), name
    # Every volume a pod mounts comes from what the chart declares.
    master, _ = master_and_workers(objects)
    volumes = {v["name"]: v for v in master["spec"]["template"]["spec"]["volumes"]}
    assert volumes["locustfiles"]["configMap"]["name"] == f"{LOCUST_RELEASE}-files"


def test_the_configmap_files_run_as_the_loadtests_package_outside_the_repository(
    settings: StackSettings, tmp_path: Path
):
    """Written out as the pod mounts them (/locust/loadtests, cwd /locust), every suite
    loads from them, Locust and all: nothing a suite imports is missing from the ConfigMap."""
    objects = render_locust(chart_values(settings), settings.namespace)
    package = tmp_path / "loadtests"
    package.mkdir()
    for name, content in mounted_files(objects).items():
        (package / name).parent.mkdir(exist_ok=True)
        (package / name).write_text(content)
    # One process per suite would cost a Locust import each; one process imports them all
    # (each registers its listeners, harmless here) and says where they came from.
    script = (
        "import importlib, sys\n"
        f"for suite in {list(SUITES)!r}:\n"
        "    module = importlib.import_module('loadtests.' + suite)\n"
        "    print(suite, module.__file__, len(module.SUITE.all_options()))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    lines = loaded.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(SUITES)
    assert all(line.split()[1].startswith(str(package)) for line in lines), lines


def test_master_runs_the_suite_headless_and_workers_follow_it(settings: StackSettings):
    values = chart_values(settings, suite="rate_limiting", workers=3, users=50, run_time="2m")
    objects = render_locust(values, settings.namespace)
    master, worker = master_and_workers(objects)
    assert (master["kind"], worker["kind"]) == ("Job", "Job")
    assert master["metadata"]["name"] == f"{LOCUST_RELEASE}-master-1"
    assert master["spec"]["backoffLimit"] == 0
    assert master["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    args = container(master)["args"]
    assert args[:4] == ["-f", "loadtests/rate_limiting.py", "--master", "--master-bind-port=5557"]
    gateway = f"http://{infra_values.gateway_service(settings)}"
    for expected in (
        "--headless",
        "--expect-workers=3",
        "--users=50",
        "--run-time=2m",
        f"--host={gateway}",
        "--summary-dir=/reports/rate_limiting",
    ):
        assert expected in args
    service = only(objects, "Service", f"{LOCUST_RELEASE}-master")
    assert {p["port"] for p in service["spec"]["ports"]} == {5557, 8089}
    assert service["spec"]["selector"].items() <= (
        master["spec"]["template"]["metadata"]["labels"].items()
    )
    assert (worker["spec"]["completions"], worker["spec"]["parallelism"]) == (3, 3)
    assert container(worker)["args"] == [
        "-f", "loadtests/rate_limiting.py", "--worker",
        f"--master-host={LOCUST_RELEASE}-master", "--master-port=5557",
    ]  # fmt: skip
    for workload in (master, worker):
        pod = workload["spec"]["template"]["spec"]
        assert container(workload)["workingDir"] == "/locust"
        mounts = {m["mountPath"] for m in container(workload)["volumeMounts"]}
        assert {"/locust/loadtests", "/tmp", "/etc/loadtest"} <= mounts
        secret = next(v for v in pod["volumes"] if v["name"] == "credentials")["secret"]
        assert secret["secretName"] == "loadtest-credentials"
        env = env_of(container(workload))
        assert env["LOAD_CREDENTIALS_FILE"] == "/etc/loadtest/credentials.json"
        # The services serve /metrics on their metrics port only (issue 13, finding 7).
        assert env["LOAD_COURSES_METRICS_URL"].endswith(f":{infra_values.METRICS_PORT}/metrics")
        assert env["LOAD_ENROLLMENTS_METRICS_URL"].endswith(f":{infra_values.METRICS_PORT}/metrics")
        assert not any(k.startswith("REDIS_") for k in env)  # HTTP suites never touch Redis


def test_redis_direct_reaches_redis_as_its_own_user_through_the_network_policy(
    settings: StackSettings,
):
    objects = render_locust(chart_values(settings, suite="redis_direct"), settings.namespace)
    redis_objects = render("redis", infra_values.redis_chart_values(settings), settings.namespace)
    admitted = only(redis_objects, "NetworkPolicy", "redis")["spec"]["ingress"][0]["from"][0]
    labels = admitted["podSelector"]["matchLabels"]
    for workload in master_and_workers(objects):
        assert labels.items() <= workload["spec"]["template"]["metadata"]["labels"].items()
        env = env_of(container(workload))
        # Its own limited ACL user, not the admin (issue 13, finding 9).
        for variable, key in (("REDIS_USERNAME", "username"), ("REDIS_PASSWORD", "password")):
            assert env[variable]["secretKeyRef"] == {
                "name": infra_values.SECRETS.loadtest, "key": key,
            }  # fmt: skip
        address = "REDIS_CLUSTER_NODES" if settings.redis.mode == "cluster" else "REDIS_URL"
        assert env[address]
        assert "LOAD_CREDENTIALS_FILE" not in env
    master, _ = master_and_workers(objects)
    assert not any(a.startswith("--host") for a in container(master)["args"])


def test_the_web_ui_mode_runs_deployments_and_a_new_run_id_new_jobs(settings: StackSettings):
    ui = render_locust(chart_values(settings, headless=False), settings.namespace)
    master, worker = master_and_workers(ui)
    assert (master["kind"], worker["kind"]) == ("Deployment", "Deployment")
    assert "--headless" not in container(master)["args"]
    assert container(master)["readinessProbe"]["tcpSocket"]["port"] == "web"
    again = render_locust(chart_values(settings, run_id="2"), settings.namespace)
    assert {o["metadata"]["name"] for o in find(again, "Job")} == {
        f"{LOCUST_RELEASE}-master-2", f"{LOCUST_RELEASE}-worker-2",
    }  # fmt: skip


def test_gate_thresholds_reach_master_and_workers_as_environment(settings: StackSettings):
    values = chart_values(settings, env={"LOAD_MIN_HIT_RATIO": "0.9", "LOAD_MAX_P95_MS": "250"})
    for workload in master_and_workers(render_locust(values, settings.namespace)):
        env = env_of(container(workload))
        assert (env["LOAD_MIN_HIT_RATIO"], env["LOAD_MAX_P95_MS"]) == ("0.9", "250")


def test_notes_say_how_to_follow_the_run(settings: StackSettings):
    with helm_python.Chart.load(CHARTS / CHART) as loaded:
        manifests = loaded.render(
            chart_values(settings), name=LOCUST_RELEASE, namespace=settings.namespace
        )
    notes = next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))
    assert f"kubectl -n {settings.namespace} logs -f job/{LOCUST_RELEASE}-master-1" in notes


def test_chart_defaults_are_documented_and_complete():
    values = defaults(CHART)
    assert values["suite"] in SUITES and values["headless"] is True
    assert values["locustfiles"] == {} and values["image"]["tag"] == ""
    text = (CHARTS / CHART / "values.yaml").read_text()
    for key in values:
        assert f"\n{key}:" in text or text.startswith(f"{key}:"), key


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda v: v["image"].update(tag="latest"), "tag"),
        (lambda v: v.update(suite="soak"), "suite"),
        (lambda v: v.update(unknownKey=1), "unknownKey"),
        (lambda v: v.update(runTime="five minutes"), "runTime"),
        (lambda v: v["env"].update(PATH="/tmp"), "PATH"),
        (lambda v: v.update(host=""), "host is required"),
        (lambda v: v["credentialsSecret"].update(name=""), "credentialsSecret.name is required"),
        (lambda v: v.update(locustfiles={}), "locustfiles has no"),
    ],
)
def test_values_that_cannot_work_are_refused(change: Any, message: str):
    values = chart_values(stack_settings("dev"))
    change(values)
    with pytest.raises(Exception, match=message):
        render_locust(values, "course-redis-dev")


def test_every_container_of_the_chart_pins_the_load_image(settings: StackSettings):
    objects = render_locust(chart_values(settings), settings.namespace)
    expected = f"{settings.image.repository}-load:{settings.image.tag}"
    for workload in master_and_workers(objects):
        for item in containers(workload["spec"]["template"]["spec"]):
            assert item["image"] == expected

"""The kubectl stand-in answers exactly the smoke suite's three calls, from the rehearsal's
state, and nothing else; its client reaches the controller through the requests directory.

No podman: the cluster is a fake (or the daemon's view of a controller with a fake podman),
and the controller's side of the requests directory is a thread answering with `answer`.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from testinfra.backend.kubectl import KubectlBackend  # type: ignore[import-untyped]

from courseredis.rehearsal import kubectl
from courseredis.rehearsal.daemon import ControllerCluster, handle_request
from courseredis.rehearsal.kubectl import Answer, Call, Unsupported, answer, parse
from courseredis.rehearsal.run import ContainerState, Controller, PodState
from courseredis.rehearsal.translate import translate
from smoke.hosts import HostSpec, machine_of
from smoke.target import read_k8s_secret

NS = "course-redis-prod"
SCRIPT = Path(kubectl.__file__)


def argv_of_testinfra(**options: str) -> list[str]:
    """The argv testinfra's kubectl backend gives kubectl (its shell line, split)."""
    seen: list[str] = []

    backend = KubectlBackend("redis-0", **options)

    def run_local(command: str, *args: str) -> None:
        seen.append(backend.quote(command, *args))  # what it hands the shell

    backend.run_local = run_local
    backend.run("cat /etc/redis.conf")
    return shlex.split(seen[0])[1:]


# --- the three calls -------------------------------------------------------------------------


def test_a_secret_as_target_py_reads_it():
    argv = ["get", "secret", "redis-admin", "--namespace", NS, "--output", "json"]
    assert parse(argv) == Call("secret", "redis-admin", NS)


def test_a_pods_node_with_and_without_a_namespace():
    argv = ["get", "pod", "redis-0", "--output", "jsonpath={.spec.nodeName}"]
    assert parse([*argv, "--namespace", NS]) == Call("node", "redis-0", NS)
    # Without one, kubectl uses its context's namespace: here there is no context.
    assert parse(argv) == Call("node", "redis-0", "default")


def test_testinfras_exec_with_namespace_and_container():
    argv = argv_of_testinfra(namespace=NS, container="redis")
    assert argv[:5] == ["-n", NS, "-c", "redis", "exec"]
    call = parse(argv)
    assert (call.verb, call.name, call.namespace, call.container) == (
        "exec",
        "redis-0",
        NS,
        "redis",
    )
    assert call.command == ("/bin/sh", "-c", "cat /etc/redis.conf")


def test_flags_in_their_equals_spelling():
    argv = ["get", "secret", "s", f"--namespace={NS}", "-o", "json"]
    assert parse(argv) == Call("secret", "s", NS)


@pytest.mark.parametrize(
    "argv",
    [
        ["delete", "pod", "redis-0", "--namespace", NS],
        ["get", "secret", "redis-admin", "--namespace", NS, "--output", "yaml"],
        ["get", "secret", "redis-admin", "--namespace", NS],
        ["get", "pods", "--namespace", NS],
        ["get", "pod", "redis-0", "--output", "json"],
        ["exec", "redis-0", "cat", "/etc/redis.conf"],
        ["--kubeconfig=/root/.kube/config", "get", "secret", "s", "-o", "json"],
        ["-n"],
        [],
    ],
)
def test_anything_else_is_refused_by_name(argv):
    with pytest.raises(Unsupported):
        parse(argv)
    result = answer(argv, FakeCluster())
    assert result.code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("kubectl (rehearsal stand-in): unsupported: ")


# --- the answers ------------------------------------------------------------------------------


class FakeCluster:
    def __init__(self) -> None:
        self.secrets = {(NS, "redis-admin"): {"password": "s3cret\nline", "username": "admin"}}
        self.pods = {(NS, "redis-0"): ["redis", "exporter"], (NS, "redis-9"): []}
        self.ran: list[tuple[str, str, str, tuple[str, ...]]] = []

    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.secrets.get((namespace, name))

    def containers(self, namespace: str, pod: str) -> list[str] | None:
        return self.pods.get((namespace, pod))

    def exec(self, namespace: str, pod: str, container: str, command: Sequence[str]) -> Answer:
        self.ran.append((namespace, pod, container, tuple(command)))
        return Answer(3, "out\n", "err\n")


def test_a_secret_is_the_declared_data_base64_encoded_as_the_api_gives_it():
    result = answer(["get", "secret", "redis-admin", "-n", NS, "-o", "json"], FakeCluster())
    assert result.code == 0
    document = json.loads(result.stdout)
    assert document["kind"] == "Secret"
    assert document["metadata"] == {"name": "redis-admin", "namespace": NS}
    assert base64.b64decode(document["data"]["password"]).decode() == "s3cret\nline"


def test_an_undeclared_secret_or_another_namespace_is_not_found_in_kubectls_words():
    for argv in (
        ["get", "secret", "nope", "-n", NS, "-o", "json"],
        ["get", "secret", "redis-admin", "-n", "elsewhere", "-o", "json"],
    ):
        result = answer(argv, FakeCluster())
        assert (result.code, result.stdout) == (1, "")
        assert result.stderr.startswith("Error from server (NotFound): secrets ")


def test_every_pod_is_its_own_node():
    cluster = FakeCluster()
    nodes = [
        answer(["get", "pod", pod, "-o", "jsonpath={.spec.nodeName}", "-n", NS], cluster)
        for pod in ("redis-0", "redis-9")
    ]
    assert [(n.code, n.stdout) for n in nodes] == [
        (0, "rehearsal-node-redis-0"),
        (0, "rehearsal-node-redis-9"),
    ]
    missing = answer(["get", "pod", "redis-5", "-o", "jsonpath={.spec.nodeName}"], cluster)
    assert missing.code == 1
    assert missing.stderr == 'Error from server (NotFound): pods "redis-5" not found\n'


def test_exec_runs_in_the_named_container_and_passes_its_code_and_output_through():
    cluster = FakeCluster()
    result = answer(argv_of_testinfra(namespace=NS, container="exporter"), cluster)
    assert result == Answer(3, "out\n", "err\n")
    assert cluster.ran == [(NS, "redis-0", "exporter", ("/bin/sh", "-c", "cat /etc/redis.conf"))]


def test_exec_without_a_container_takes_the_first_as_kubectl_does():
    cluster = FakeCluster()
    answer(["exec", "redis-0", "-n", NS, "--", "true"], cluster)
    assert cluster.ran == [(NS, "redis-0", "redis", ("true",))]


def test_exec_into_a_missing_container_or_a_pod_not_running():
    cluster = FakeCluster()
    for argv in (
        ["exec", "redis-0", "-n", NS, "-c", "sidecar", "--", "true"],
        ["exec", "redis-9", "-n", NS, "--", "true"],
    ):
        result = answer(argv, cluster)
        assert result.code == 1
        assert "container not found" in result.stderr
    assert cluster.ran == []


# --- the daemon's view of a controller ---------------------------------------------------------


class FakePodman:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def run(self, args: Sequence[str], **options: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(args))
        return subprocess.CompletedProcess(list(args), 0, "PONG\n", "")


def controller(tmp_path: Path) -> tuple[Controller, FakePodman]:
    template = {
        "metadata": {"labels": {"app": "redis"}},
        "spec": {"containers": [{"name": "redis", "image": "redis:8.10.2-trixie"}]},
    }
    secret_data = {"password": base64.b64encode(b"pw").decode()}
    plan = translate(
        [
            {"kind": "Namespace", "metadata": {"name": NS}},
            {
                "kind": "Secret",
                "metadata": {"name": "redis-admin", "namespace": NS},
                "data": secret_data,
            },
            {
                "kind": "StatefulSet",
                "metadata": {"name": "redis", "namespace": NS},
                "spec": {"replicas": 1, "serviceName": "redis-headless", "template": template},
            },
        ]
    )
    podman = FakePodman()
    made = Controller(plan, podman, tmp_path, run_id="test")  # type: ignore[arg-type]
    workload = plan.workload("StatefulSet", "redis")
    pod = PodState("redis-0", workload, 0, "uid", phase="Running")
    pod.containers.append(ContainerState(spec=workload.template.containers[0], id="c0ffee"))
    made.pods["redis-0"] = pod
    return made, podman


def test_the_controller_answers_from_the_declared_secrets_and_its_pods(tmp_path):
    made, podman = controller(tmp_path)
    cluster = ControllerCluster(made)
    assert cluster.secret(NS, "redis-admin") == {"password": "pw"}
    assert cluster.secret("default", "redis-admin") is None
    assert cluster.containers(NS, "redis-0") == ["redis"]
    assert cluster.containers("default", "redis-0") is None
    result = handle_request(made, {"action": "kubectl", "argv": argv_of_testinfra(namespace=NS)})
    assert result == {"code": 0, "stdout": "PONG\n", "stderr": ""}
    assert podman.calls == [["exec", "c0ffee", "/bin/sh", "-c", "cat /etc/redis.conf"]]


def test_a_pod_not_yet_running_has_no_container_to_exec_into(tmp_path):
    made, podman = controller(tmp_path)
    made.pods["redis-0"].phase = "Pending"
    assert ControllerCluster(made).containers(NS, "redis-0") == []
    result = handle_request(
        made, {"action": "kubectl", "argv": ["exec", "redis-0", "-n", NS, "--", "true"]}
    )
    assert result["code"] == 1
    assert podman.calls == []


# --- the requests directory and the client ----------------------------------------------------


@pytest.fixture
def requests_dir(tmp_path: Path) -> Iterator[Path]:
    """A controller's side of the directory: every request answered by `answer` on the fake."""
    directory = tmp_path / "requests"
    directory.mkdir()
    stop = threading.Event()
    seen: set[str] = set()

    def serve() -> None:
        while not stop.is_set():
            for path in sorted(directory.glob("*.json")):
                if not kubectl.is_request(path) or path.name in seen:
                    continue
                seen.add(path.name)
                request = json.loads(path.read_text())
                result = answer(request["argv"], FakeCluster())
                done = {
                    "ok": True,
                    "code": result.code,
                    "stdout": result.stdout,
                    "stderr": result.stderr,
                }
                kubectl.answer_path(path).write_text(json.dumps(done))
            stop.wait(0.01)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield directory
    stop.set()
    thread.join()


def test_concurrent_requests_never_share_a_name(tmp_path):
    with ThreadPoolExecutor(16) as pool:
        paths = list(pool.map(lambda n: kubectl.submit(tmp_path, {"n": n}), range(200)))
    assert len({p.name for p in paths}) == 200
    assert sorted(json.loads(p.read_text())["n"] for p in paths) == list(range(200))
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in paths)


def test_an_answer_is_read_once_and_both_files_go(requests_dir):
    request = kubectl.submit(requests_dir, {"action": "kubectl", "argv": ["version"]})
    result = kubectl.wait_answer(request, timeout=10)
    assert result is not None and result["code"] == 1
    assert list(requests_dir.iterdir()) == []


def test_no_answer_in_time_is_none_and_the_request_is_withdrawn(tmp_path):
    request = kubectl.submit(tmp_path, {"action": "kubectl", "argv": []})
    assert kubectl.wait_answer(request, timeout=0.2) is None
    assert list(tmp_path.iterdir()) == []


def installed(tmp_path: Path, requests: Path) -> dict[str, str]:
    """kubectl.py installed as `kubectl` on PATH, as the smoke container has it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "kubectl"
    script.write_text(SCRIPT.read_text().replace("/usr/bin/env python3", sys.executable, 1))
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", kubectl.REQUESTS_ENV: str(requests)}


def test_the_smoke_suites_own_calls_get_their_answers(tmp_path, requests_dir, monkeypatch):
    for name, value in installed(tmp_path, requests_dir).items():
        monkeypatch.setenv(name, value)
    secret = read_k8s_secret("kubectl", f"{NS}/redis-admin", "password")
    assert secret == {"password": "s3cret\nline"}
    host = HostSpec.parse(f"kubectl://redis-0?namespace={NS}&container=redis")
    assert machine_of(host, "kubectl") == "rehearsal-node-redis-0"


def test_the_client_prints_the_answer_and_exits_with_its_code(tmp_path, requests_dir):
    environ = {**os.environ, **installed(tmp_path, requests_dir)}
    argv = ["kubectl", "-n", NS, "-c", "redis", "exec", "redis-0", "--", "/bin/sh", "-c", "x"]
    done = subprocess.run(argv, capture_output=True, text=True, env=environ, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    refused = subprocess.run(
        ["kubectl", "delete", "pod", "redis-0"], capture_output=True, text=True, env=environ
    )
    assert refused.returncode == 1
    assert refused.stderr == "kubectl (rehearsal stand-in): unsupported: delete pod redis-0\n"

"""The rehearsal's controller as a process of its own, so a kept rehearsal (`KEEP=1`) lives on
after `make rehearse` returns, and `make down` can end it.

`python -m courseredis.rehearsal.daemon --state-dir DIR` reads `DIR/objects.json` (written
by the command line, mode 0600: it holds the generated passwords), runs the Controller,
and rewrites `DIR/status.json` every second. Once everything is up, requests arrive as
`DIR/requests/<name>.json` (written by `courseredis.rehearsal.kubectl.submit`) and are
answered in `<name>.done.json`, each in a thread of its own:
`{"action": "delete", "pods": [...]}` and `{"action": "rollout", "workload": "StatefulSet/redis"}`
(the disruptions, one at a time), `{"action": "address"}` (an IP on the rehearsal's network
for a container of the command line's, never a pod's) and `{"action": "kubectl", "argv": [...]}`
(the smoke container's kubectl stand-in). Once ready, it keeps the rehearsal's description
current (`stack_description`): `DIR/stack.json`, and ROOT's `.local/stack.json` unless a local
stack holds it. SIGTERM (or SIGINT) removes that file (if still the run's) and everything it
created.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from courseredis.environments import load_environment
from courseredis.rehearsal import kubectl, stack_description
from courseredis.rehearsal.podman import Podman
from courseredis.rehearsal.run import Controller, RehearsalError
from courseredis.rehearsal.translate import Plan, translate

UP_TIMEOUT = 420.0
# A kubectl call waits for its answer: new requests are looked for this often.
REQUEST_POLL = 0.05
STATUS_EVERY = 1.0
EXEC_TIMEOUT = 120.0


def write_json(path: Path, document: Any) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=1)
    os.replace(temporary, path)


class ControllerCluster:
    """The kubectl stand-in's view of the rehearsal: the declared Secrets (one namespace, as
    the program declares) and the controller's pods."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        if namespace != self.controller.plan.namespace:
            return None
        return self.controller.plan.secrets.get(name)

    def _container_ids(self, namespace: str, pod: str) -> dict[str, str] | None:
        with self.controller.lock:
            state = self.controller.pods.get(pod)
        if state is None or state.workload.namespace != namespace:
            return None
        running = state.phase == "Running"
        return {c.spec.name: c.id for c in state.containers if running and c.id}

    def containers(self, namespace: str, pod: str) -> list[str] | None:
        ids = self._container_ids(namespace, pod)
        return None if ids is None else list(ids)

    def exec(
        self, namespace: str, pod: str, container: str, command: Sequence[str]
    ) -> kubectl.Answer:
        container_id = (self._container_ids(namespace, pod) or {}).get(container)
        if container_id is None:  # gone since `containers` was asked
            return kubectl.Answer(1, stderr=f"error: container {container} of {pod} is gone\n")
        done = self.controller.podman.run(
            ["exec", container_id, *command],
            check=False,
            input_bytes=b"",  # no stdin, and bytes decoded with replacement: output is any
            timeout=EXEC_TIMEOUT,
        )
        return kubectl.Answer(done.returncode, done.stdout, done.stderr)


class Description:
    """The rehearsal's stack.json, rewritten when what it says changes (new IPs after a
    disruption, the seeded accounts): tools read it when they start, so it must be current
    then. Retried every tick while a local stack holds ROOT's file."""

    def __init__(self, plan: Plan, meta: Mapping[str, Any], state_dir: Path) -> None:
        self.plan = plan
        self.env = str(meta["env"])
        self.mode = load_environment(self.env).redis.mode
        self.run_id = str(meta["run_id"])
        self.root = Path(meta["root"]) if meta.get("root") else None
        self.state_dir = state_dir
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        self.written: dict[str, Any] | None = None
        self.published = False

    def refresh(self, pods: Mapping[str, Mapping[str, Any]]) -> None:
        document = stack_description.describe(
            self.plan,
            pods,
            env=self.env,
            mode=self.mode,
            run_id=self.run_id,
            state_dir=self.state_dir,
            started_at=self.started_at,
            demo=stack_description.read_demo(self.state_dir),
        )
        text = document.to_json()
        if text != self.written:
            write_json(self.state_dir / stack_description.OWN_COPY, text)
            self.written, self.published = text, False
        if not self.published and self.root is not None:
            self.published = stack_description.publish(self.root, document)

    def forget(self) -> None:
        if self.root is not None:
            stack_description.forget(self.root, self.run_id)


def handle_request(controller: Controller, request: dict[str, Any]) -> dict[str, Any]:
    action = request.get("action")
    started = time.monotonic()
    if action == "kubectl":
        result = kubectl.answer(request["argv"], ControllerCluster(controller))
        return {"code": result.code, "stdout": result.stdout, "stderr": result.stderr}
    if action == "address":
        # The controller hands out every address on its network, so a container of the
        # command line's never takes one a pod will be given.
        return {"ip": controller._allocate_ip()}
    if action == "delete":
        pods_now = controller.status()["pods"]
        before = {name: pods_now.get(name, {}).get("ip") for name in request["pods"]}
        before_workloads = {
            name: pods_now.get(name, {}).get("workload") for name in request["pods"]
        }
        threads = [
            threading.Thread(target=controller.delete_pod, args=(name,)) for name in request["pods"]
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        deleted = time.monotonic() - started
        controller.wait_ready(float(request.get("timeout", UP_TIMEOUT)))
        workloads = {str(before_workloads[n] or "") for n in request["pods"]}
        now = controller.status()["pods"]
        after = {n: p["ip"] for n, p in now.items() if p["workload"] in workloads}
        return {
            "deleted_seconds": round(deleted, 2),
            "ready_seconds": round(time.monotonic() - started, 2),
            "old_ips": before,
            "new_ips": after,
            "all_new_ips": not (set(before.values()) & set(after.values())),
        }
    if action == "rollout":
        kind, name = request["workload"].split("/", 1)
        workload = controller.plan.workload(kind, name)
        order = sorted(
            (p for p in controller.status()["pods"] if controller.pods[p].workload is workload),
            key=lambda n: -controller.pods[n].index,
        )
        steps = []
        # A StatefulSet's RollingUpdate: highest ordinal first, each back and ready before
        # the next goes.
        for pod_name in order:
            step_started = time.monotonic()
            controller.delete_pod(pod_name)
            controller.wait_ready(float(request.get("timeout", UP_TIMEOUT)))
            steps.append({"pod": pod_name, "seconds": round(time.monotonic() - step_started, 2)})
        return {"steps": steps, "seconds": round(time.monotonic() - started, 2)}
    raise RehearsalError(f"unknown request {action!r}")


def answer(controller: Controller, request_path: Path, disruptions: threading.Lock) -> None:
    """Answer one request in `<name>.done.json`. The disruptions run one at a time, as
    they always did; kubectl calls (many, from the smoke suite's threads) do not wait."""
    try:
        request = json.loads(request_path.read_text())
    except (OSError, ValueError):
        return  # given up and removed by its sender, or not a request
    try:
        if request.get("action") in ("delete", "rollout"):
            with disruptions:
                result = {"ok": True, **handle_request(controller, request)}
        else:
            result = {"ok": True, **handle_request(controller, request)}
    except Exception as exc:
        result = {"ok": False, "error": str(exc)}
    write_json(kubectl.answer_path(request_path), result)


def serve(state_dir: Path) -> int:
    objects = json.loads((state_dir / "objects.json").read_text())
    meta = json.loads((state_dir / "meta.json").read_text())
    plan = translate(objects["objects"], objects.get("cluster_domain", "cluster.local"))
    podman = Podman(state_dir.parent)
    log_lines: list[str] = []

    def log(line: str) -> None:
        log_lines.append(line)
        print(line, flush=True)

    # The command line chose the subnet: it told the program the host's address on it.
    subnet = ipaddress.IPv4Network(meta["subnet"]) if meta.get("subnet") else None
    controller = Controller(plan, podman, state_dir, run_id=meta["run_id"], log=log, subnet=subnet)
    stopping = threading.Event()
    description = Description(plan, meta, state_dir)

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    status: dict[str, Any] = {"state": "starting", "pid": os.getpid()}
    write_json(state_dir / "status.json", status)
    requests = state_dir / "requests"
    requests.mkdir(exist_ok=True)
    code = 0
    try:
        started = time.monotonic()
        controller.up()
        ready_error = ""
        ready = threading.Event()

        def wait() -> None:
            nonlocal ready_error
            try:
                controller.wait_ready(float(meta.get("timeout", UP_TIMEOUT)))
            except RehearsalError as exc:
                ready_error = str(exc)
            ready.set()

        threading.Thread(target=wait, daemon=True).start()
        dispatched: set[str] = set()  # request names are unique: each is answered once
        disruptions = threading.Lock()
        next_status = 0.0
        state = "starting"
        while not stopping.is_set():
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + STATUS_EVERY
                if ready.is_set():
                    state = "failed" if ready_error else "ready"
                status = {
                    "state": state,
                    "pid": os.getpid(),
                    "error": ready_error,
                    "up_seconds": round(time.monotonic() - started, 1),
                    **controller.status(),
                    "search": list(plan.search),
                    "events": controller.events[-200:],
                }
                write_json(state_dir / "status.json", status)
                if state == "ready":
                    try:
                        description.refresh(status["pods"])
                    except Exception as exc:  # the controller outlives a bad description
                        log(f"rehearsal: stack.json not written: {exc}")
            if state == "ready":
                for request_path in sorted(requests.glob("*.json")):
                    if not kubectl.is_request(request_path) or request_path.name in dispatched:
                        continue
                    dispatched.add(request_path.name)
                    threading.Thread(
                        target=answer,
                        args=(controller, request_path, disruptions),
                        daemon=True,
                    ).start()
            stopping.wait(REQUEST_POLL)
    except Exception as exc:
        code = 1
        status = {"state": "failed", "pid": os.getpid(), "error": str(exc)}
        traceback.print_exc()
        write_json(state_dir / "status.json", status)
    finally:
        try:
            description.forget()  # first: no tool should start against a stack going down
        except Exception as exc:
            log(f"rehearsal: stack.json not removed: {exc}")
        try:
            controller.down()
            write_json(state_dir / "status.json", {**status, "state": "down"})
        except Exception as exc:
            code = 1
            write_json(state_dir / "status.json", {**status, "state": "down", "error": str(exc)})
    return code


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m courseredis.rehearsal.daemon")
    parser.add_argument("--state-dir", type=Path, required=True)
    options = parser.parse_args(argv)
    sys.exit(serve(options.state_dir))


if __name__ == "__main__":
    main()

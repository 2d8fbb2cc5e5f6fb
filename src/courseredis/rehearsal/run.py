"""Running a `Plan` under podman as Kubernetes would: the rehearsal's kubelet and controllers.

`Controller.up()` creates the rehearsal's network and DNS server, then a reconcile loop
(one thread) keeps every workload at its replicas: it creates the missing pods (in order
for an OrderedReady StatefulSet), runs each pod's start-up in a thread of its own (infra
container for the IP, volumes, init containers one by one, a failed one restarted in the
pod with the kubelet's back-off, then the containers), probes
readiness and liveness, restarts what exits or fails liveness (with the kubelet's back-off),
retries failed Job pods up to `backoffLimit`, and keeps the DNS records to the ready pods.
`delete_pod` runs the preStop hooks within the grace period, then removes the pod; its
controller makes a new one (new name for a Deployment, the same for a StatefulSet), on a
new IP. `down()` removes every pod, container, volume and network it created, by id.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from courseredis.rehearsal.dns import write_records
from courseredis.rehearsal.podman import LABEL, Podman, PodmanError
from courseredis.rehearsal.translate import (
    Container,
    Handler,
    Plan,
    PodFacts,
    Probe,
    Workload,
    command_line,
    create_args,
    resolve_env,
)

# The DNS server is one stdlib-only file, mounted into a Python base image.
DNS_SCRIPT = Path(__file__).with_name("dns.py")
BACKOFF_START = 10.0
REPEATED_FAILURES = 3
BACKOFF_CAP = 300.0
TICK = 1.0


class RehearsalError(RuntimeError):
    """The rehearsal could not bring the objects up; the message names them and why."""


@dataclass
class ContainerState:
    spec: Container
    id: str = ""
    ready: bool = False
    live_failures: int = 0
    ready_failures: int = 0
    ready_successes: int = 0
    started_at: float = 0.0
    next_probe: dict[str, float] = field(default_factory=dict)
    restarts: int = 0
    last_problem: str = ""
    backoff_until: float = 0.0
    exit_code: int | None = None


@dataclass
class PodState:
    name: str
    workload: Workload
    index: int
    uid: str
    pod_id: str = ""
    ip: str = ""
    phase: str = "Pending"  # Pending, Running, Succeeded, Failed, Terminating
    problem: str = ""
    containers: list[ContainerState] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)  # podman volume names to remove with it
    counted: bool = False  # a failed Job pod already counted against backoffLimit
    # The pod has its IP (sandbox up): from then on a Service that publishes not-ready
    # addresses lists it, init containers still running, as the endpoints controller does.
    networked: bool = False
    created: float = field(default_factory=time.monotonic)

    @property
    def ready(self) -> bool:
        return (
            self.phase == "Running"
            and bool(self.containers)
            and all(c.ready for c in self.containers)
        )


@dataclass
class JobState:
    failures: int = 0
    succeeded: bool = False
    failed: bool = False
    next_attempt: float = 0.0


class Controller:
    def __init__(
        self,
        plan: Plan,
        podman: Podman,
        state_dir: Path,
        run_id: str | None = None,
        log: Callable[[str], None] = print,
        dns_image: str = "python:3.11.11-slim-bookworm",
        subnet: ipaddress.IPv4Network | None = None,
    ) -> None:
        self.plan = plan
        self.dns_image = dns_image  # any image with python3: the server is stdlib only
        self.podman = podman
        self.state_dir = state_dir
        self.run_id = run_id or secrets.token_hex(3)
        self.prefix = f"crh-{self.run_id}"
        self.log = log
        self.labels = {LABEL: self.run_id}
        self.lock = threading.RLock()
        self.pods: dict[str, PodState] = {}
        self.jobs: dict[str, JobState] = {
            w.name: JobState() for w in plan.workloads if w.kind == "Job"
        }
        self.network = f"{self.prefix}-net"
        self.network_id = ""
        self.subnet = subnet  # None: the first free one, at `up`
        self.dns_ip = ""
        self.dns_id = ""
        self.claims: set[str] = set()
        self._next_ip = 10
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.events: list[dict[str, Any]] = []
        self.records_dir = state_dir / "dns"
        self.egress_closed = False
        # (workload, reason) -> how often a pod of it failed to start for that reason.
        self.start_failures: dict[tuple[str, str], int] = {}

    # --- lifecycle -------------------------------------------------------------------------

    def up(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.records_dir.mkdir(parents=True, exist_ok=True)
        write_records(self.records_dir / "records.json", {})
        self.subnet = self.subnet or free_subnet(self.podman)
        self.network_id = self.podman.run(
            [
                "network",
                "create",
                # Not --internal: the host (probes, smoke, load) must reach the pods, and an
                # internal network has no address on the host. Egress is closed below.
                "--disable-dns",  # the rehearsal's own DNS answers instead
                "--subnet",
                str(self.subnet),
                "--label",
                f"{LABEL}={self.run_id}",
                self.network,
            ]
        ).stdout.strip()
        self._close_egress()
        self.dns_ip = self._allocate_ip()
        self.dns_id = self.podman.run(
            [
                "run",
                "--detach",
                "--name",
                f"{self.prefix}-dns",
                "--label",
                f"{LABEL}={self.run_id}",
                "--network",
                self.network,
                "--ip",
                self.dns_ip,
                "--user",
                "0:0",  # port 53
                "--read-only",
                "-v",
                f"{self.records_dir}:/records:ro",
                "-v",
                f"{DNS_SCRIPT}:/rehearsal/dns.py:ro",
                "--entrypoint",
                '["python3", "/rehearsal/dns.py"]',
                self.dns_image,
                "--records",
                "/records/records.json",
            ]
        ).stdout.strip()
        time.sleep(0.5)
        state = self.podman.json(["inspect", self.dns_id, "--format", "json"])
        if not state or not state[0]["State"]["Running"]:
            logs = self.podman.run(["logs", self.dns_id], check=False)
            raise RehearsalError(f"the rehearsal's DNS server did not start: {logs.stderr}")
        self._thread = threading.Thread(target=self._loop, name="rehearsal-controller", daemon=True)
        self._thread.start()

    def _egress_rule(self) -> list[str]:
        subnet = str(self.subnet)
        return ["FORWARD", "-s", subnet, "!", "-d", subnet, "-j", "REJECT"]

    def _close_egress(self) -> None:
        """Pods reach each other and the host, nothing beyond: forwarded traffic from the
        rehearsal's subnet to any other address is rejected (removed again by `down`)."""
        done = subprocess.run(
            ["iptables", "-I", *self._egress_rule()], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RehearsalError(f"cannot close the network's egress: {done.stderr.strip()}")
        self.egress_closed = True

    def _open_egress(self) -> None:
        if self.egress_closed:
            subprocess.run(["iptables", "-D", *self._egress_rule()], capture_output=True)
            self.egress_closed = False

    def stop_loop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def down(self) -> None:
        """Remove everything this run created, by id; never fails half-way silently."""
        self.stop_loop()
        problems: list[str] = []
        with self.lock:
            pods = list(self.pods.values())
        threads = [threading.Thread(target=self._remove_pod, args=(p,)) for p in pods]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.dns_id:
            self.podman.run(["rm", "--force", "--time", "0", self.dns_id], check=False)
        problems += sweep(self.podman, self.run_id)
        if self.network_id:
            done = self.podman.run(["network", "rm", "--force", self.network_id], check=False)
            if done.returncode != 0 and "no such network" not in done.stderr:
                problems.append(done.stderr.strip())
        self._open_egress()
        shutil.rmtree(self.state_dir / "pods", ignore_errors=True)
        if problems:
            raise RehearsalError("cleanup left something behind: " + "; ".join(problems))

    # --- addresses -------------------------------------------------------------------------

    def _allocate_ip(self) -> str:
        """Never the same address twice in a run: a pod that comes back has a new IP."""
        assert self.subnet is not None
        with self.lock:
            address = self.subnet.network_address + self._next_ip
            self._next_ip += 1
        return str(address)

    # --- the reconcile loop ----------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._reconcile()
                self._probe_all()
                self._publish_dns()
            except Exception as exc:  # the loop must outlive one bad tick
                self._event("controller", f"tick failed: {exc}")
            self._stop.wait(TICK)

    def _reconcile(self) -> None:
        now = time.monotonic()
        for workload in self.plan.workloads:
            with self.lock:
                mine = [p for p in self.pods.values() if p.workload is workload]
            if workload.kind == "Job":
                self._reconcile_job(workload, mine, now)
                continue
            live = [p for p in mine if p.phase != "Terminating"]
            if workload.kind == "StatefulSet":
                # A terminating pod still holds its name: as the StatefulSet controller
                # does, its successor is made once it is gone (podman refuses the name).
                present = {p.index for p in mine}
                for index in range(workload.replicas):
                    if index in present:
                        continue
                    if workload.ordered and not all(
                        any(p.index == i and p.ready for p in live) for i in range(index)
                    ):
                        break
                    self._create_pod(workload, index)
                    if workload.ordered:
                        break
            else:
                for _ in range(workload.replicas - len(live)):
                    self._create_pod(workload, 0)

    def _reconcile_job(self, workload: Workload, mine: list[PodState], now: float) -> None:
        job = self.jobs[workload.name]
        if job.succeeded or job.failed:
            return
        for pod in mine:
            if pod.phase == "Succeeded":
                job.succeeded = True
                self._event(workload.label, f"complete ({pod.name})")
                return
        running = [p for p in mine if p.phase in ("Pending", "Running")]
        failed = [p for p in mine if p.phase == "Failed" and not p.counted]
        for pod in failed:
            pod.counted = True
            job.failures += 1
            job.next_attempt = now + min(BACKOFF_START * 2 ** (job.failures - 1), BACKOFF_CAP)
            self._event(workload.label, f"pod {pod.name} failed: {pod.problem}")
        if job.failures > workload.backoff_limit:
            job.failed = True
            self._event(workload.label, f"failed: backoffLimit {workload.backoff_limit} reached")
            return
        if not running and now >= job.next_attempt:
            self._create_pod(workload, job.failures)

    def _create_pod(self, workload: Workload, index: int) -> None:
        suffix = "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        name = workload.pod_name(index, suffix)
        pod = PodState(name=name, workload=workload, index=index, uid=str(uuid.uuid4()))
        with self.lock:
            self.pods[name] = pod
        self._event(f"Pod/{name}", f"created for {workload.label}")
        threading.Thread(
            target=self._start_pod, args=(pod,), name=f"start-{name}", daemon=True
        ).start()

    # --- one pod ---------------------------------------------------------------------------

    def _start_pod(self, pod: PodState) -> None:
        try:
            self._start_pod_steps(pod)
        except Exception as exc:
            if pod.phase == "Terminating":
                return  # deleted while starting: whatever failed since is the deletion's
            pod.problem = str(exc)
            self._event(f"Pod/{pod.name}", f"start failed: {exc}")
            key = (pod.workload.label, str(exc))
            with self.lock:
                self.start_failures[key] = self.start_failures.get(key, 0) + 1
            if pod.workload.kind == "Job":
                pod.phase = "Failed"
            else:
                # The kubelet would retry: remove it and let the controller make it again.
                time.sleep(min(BACKOFF_START, 5))
                self._remove_pod(pod)

    def _start_pod_steps(self, pod: PodState) -> None:
        template = pod.workload.template
        pod.ip = self._allocate_ip()
        pod_args = [
            "pod",
            "create",
            "--name",
            f"{self.prefix}-{pod.name}",
            "--hostname",
            pod.name,
            "--network",
            self.network,
            "--ip",
            pod.ip,
            "--dns",
            self.dns_ip,
            "--dns-option",
            "ndots:5",
            "--label",
            f"{LABEL}={self.run_id}",
            "--label",
            f"{LABEL}.pod={pod.name}",
        ]
        for domain in self.plan.search:
            pod_args += ["--dns-search", domain]
        fqdn = self.plan.pod_fqdn(pod.name, pod.workload)
        if fqdn:
            pod_args += ["--add-host", f"{fqdn}:{pod.ip}"]
        pod.pod_id = self.podman.run(pod_args).stdout.strip()
        self.podman.run(["pod", "start", pod.pod_id])
        pod.networked = True
        self._publish_dns()  # peers resolve it during its init containers, as in Kubernetes
        facts = PodFacts(pod.name, pod.workload.namespace, pod.ip, pod.uid, template.labels)
        mounts = self._volumes(pod)
        pod_dir = self.state_dir / "pods" / pod.name
        for container in template.init_containers:
            self._init_until_done(pod, container, facts, mounts, pod_dir)
        for container in template.containers:
            state = ContainerState(spec=container)
            state.id = self._create_container(pod, container, facts, mounts, pod_dir)
            pod.containers.append(state)
        for state in pod.containers:
            self.podman.run(["start", state.id])
            state.started_at = time.monotonic()
        pod.phase = "Running"
        self._event(f"Pod/{pod.name}", f"running on {pod.ip}")

    def _init_until_done(
        self,
        pod: PodState,
        container: Container,
        facts: PodFacts,
        mounts: dict[str, list[str]],
        pod_dir: Path,
    ) -> None:
        """Run an init container until it succeeds, as the kubelet does: a failure restarts
        it in the same pod after the back-off (10 s, doubling, capped), for ever, since
        what it waits for (a database, a peer) may come later. Only under restartPolicy
        Never does a failure fail the pod."""
        restarts = 0
        while True:
            code, logs = self._run_init(pod, container, facts, mounts, pod_dir)
            if code == 0:
                pod.problem = ""
                return
            failure = f"init container {container.name} exited {code}: {logs[-400:]}"
            if pod.workload.template.restart_policy == "Never":
                raise RehearsalError(failure)
            restarts += 1
            delay = min(BACKOFF_START * 2 ** (restarts - 1), BACKOFF_CAP)
            pod.problem = f"{failure} (restart {restarts} in {delay:.0f} s)"
            self._event(f"Pod/{pod.name}", pod.problem)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:
                if pod.phase == "Terminating" or self._stop.is_set():
                    raise RehearsalError(f"{failure} (stopped during the back-off)")
                time.sleep(0.5)

    def _run_init(
        self,
        pod: PodState,
        container: Container,
        facts: PodFacts,
        mounts: dict[str, list[str]],
        pod_dir: Path,
    ) -> tuple[int, str]:
        container_id = self._create_container(pod, container, facts, mounts, pod_dir)
        try:
            done = self.podman.run(["start", "--attach", container_id], check=False, timeout=600)
            inspect = self.podman.json(["inspect", container_id, "--format", "json"])
            code = int(inspect[0]["State"]["ExitCode"]) if inspect else done.returncode
            return code, (done.stdout + done.stderr)
        finally:
            self.podman.run(["rm", "--force", container_id], check=False)

    def _create_container(
        self,
        pod: PodState,
        container: Container,
        facts: PodFacts,
        mounts: dict[str, list[str]],
        pod_dir: Path,
    ) -> str:
        env = resolve_env(container, self.plan, facts)
        volume_args: list[str] = []
        for mount in container.mounts:
            volume_args += self._mount_args(mount, mounts, pod_dir)
        args = create_args(
            container,
            pod.workload.template,
            pod.pod_id,
            f"{self.prefix}-{pod.name}-{container.name}-{secrets.token_hex(2)}",
            sorted(env),
            volume_args,
            {LABEL: self.run_id},
        )
        entry, tail = command_line(container, env)
        return self.podman.run([*args, *entry, *tail], env=env).stdout.strip()

    def _volumes(self, pod: PodState) -> dict[str, list[str]]:
        """Prepare every volume of the pod: name -> [kind, source] for `_mount_args`."""
        template = pod.workload.template
        found: dict[str, list[str]] = {}
        pod_dir = self.state_dir / "pods" / pod.name
        group = template.fs_group
        for volume in template.volumes.values():
            if volume.kind in ("configMap", "secret"):
                data = (
                    self.plan.config_maps if volume.kind == "configMap" else self.plan.secrets
                ).get(volume.source, {})
                directory = pod_dir / "volumes" / volume.name
                directory.mkdir(parents=True, exist_ok=True)
                os.chmod(directory, 0o755)
                for key, path, mode in volume.items:
                    if key not in data:
                        continue
                    target = directory / path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(data[key])
                    os.chmod(target, mode if mode is not None else volume.default_mode)
                    if group is not None:
                        os.chown(target, 0, group)
                found[volume.name] = ["bind", str(directory)]
            elif volume.kind == "claim":
                name = f"{self.prefix}-{volume.source}-{pod.name}"
                if name not in self.claims:
                    self._create_volume(name, {}, group)
                    self.claims.add(name)
                found[volume.name] = ["volume", name]
            else:
                name = f"{self.prefix}-{pod.name}-{volume.name}-{secrets.token_hex(2)}"
                options: dict[str, str] = {}
                if volume.kind == "memory":
                    tmpfs_mode = "2775" if group is not None else "1777"
                    owner = f",gid={group}" if group is not None else ""
                    options = {"type": "tmpfs", "device": "tmpfs", "o": f"mode={tmpfs_mode}{owner}"}
                self._create_volume(name, options, group)
                pod.volumes.append(name)
                found[volume.name] = ["volume", name]
        return found

    def _create_volume(self, name: str, options: dict[str, str], group: int | None) -> None:
        args = ["volume", "create", "--label", f"{LABEL}={self.run_id}"]
        for key, value in options.items():
            args += ["--opt", f"{key}={value}"]
        self.podman.run([*args, name])
        if options.get("type") == "tmpfs":
            return
        mountpoint = self.podman.run(
            ["volume", "inspect", "--format", "{{.Mountpoint}}", name]
        ).stdout.strip()
        if group is not None and mountpoint:
            # fsGroup: the volume belongs to the group, setgid, group-writable.
            os.chown(mountpoint, 0, group)
            os.chmod(mountpoint, 0o2775)

    @staticmethod
    def _mount_args(mount: Any, mounts: dict[str, list[str]], pod_dir: Path) -> list[str]:
        kind, source = mounts[mount.volume]
        suffix = ":ro" if mount.read_only else ""
        if kind == "bind":
            path = Path(source) / mount.sub_path if mount.sub_path else Path(source)
            return ["-v", f"{path}:{mount.path}:ro"]  # ConfigMaps and Secrets: read-only
        if mount.sub_path:
            raise RehearsalError(f"subPath on a volume ({mount.volume}) is not supported")
        return ["-v", f"{source}:{mount.path}{suffix}"]

    # --- probes ----------------------------------------------------------------------------

    def _probe_all(self) -> None:
        with self.lock:
            pods = [p for p in self.pods.values() if p.phase == "Running"]
        for pod in pods:
            self._check_exits(pod)
            for state in pod.containers:
                self._probe_container(pod, state)

    def _check_exits(self, pod: PodState) -> None:
        if not pod.containers:
            return
        states = (
            self.podman.json(["ps", "--all", "--filter", f"pod={pod.pod_id}", "--format", "json"])
            or []
        )
        by_id = {s["Id"]: s for s in states}
        now = time.monotonic()
        for state in pod.containers:
            info = by_id.get(state.id)
            if info is None or info.get("State") == "running":
                continue
            code = int(info.get("ExitCode", 0))
            state.exit_code = code
            state.ready = False
            policy = pod.workload.template.restart_policy
            if pod.workload.kind == "Job" or policy == "Never":
                if all(
                    by_id.get(s.id, {}).get("State") not in ("running", None)
                    for s in pod.containers
                ):
                    pod.phase = "Succeeded" if code == 0 else "Failed"
                    if code != 0:
                        logs = self.podman.run(["logs", "--tail", "20", state.id], check=False)
                        pod.problem = (
                            f"{state.spec.name} exited {code}: "
                            + (logs.stdout + logs.stderr).strip()[-400:]
                        )
                continue
            if policy == "OnFailure" and code == 0:
                continue
            if now < state.backoff_until:
                continue
            state.restarts += 1
            delay = min(BACKOFF_START * 2 ** (state.restarts - 1), BACKOFF_CAP)
            state.backoff_until = now + delay
            logs = self.podman.run(["logs", "--tail", "5", state.id], check=False)
            tail = " | ".join((logs.stdout + logs.stderr).strip().splitlines()[-5:])
            state.last_problem = f"exited {code}: {tail[-300:]}"
            self._event(f"Pod/{pod.name}", f"{state.spec.name} {state.last_problem}; restarting")
            self.podman.run(["start", state.id], check=False)
            state.exit_code = None
            state.started_at = time.monotonic()
            state.next_probe.clear()
            state.live_failures = 0

    def _probe_container(self, pod: PodState, state: ContainerState) -> None:
        now = time.monotonic()
        spec = state.spec
        if spec.readiness is None:
            state.ready = state.exit_code is None  # no probe: ready while it runs
        for kind, probe in (("readiness", spec.readiness), ("liveness", spec.liveness)):
            if probe is None:
                continue
            due = state.next_probe.get(kind, state.started_at + probe.initial_delay)
            if now < due:
                continue
            state.next_probe[kind] = now + probe.period
            ok, detail = self._run_probe(pod, state, probe)
            if kind == "readiness":
                if ok:
                    state.ready_successes += 1
                    state.ready_failures = 0
                    if state.ready_successes >= probe.success_threshold and not state.ready:
                        state.ready = True
                        self._event(f"Pod/{pod.name}", f"{spec.name} ready")
                else:
                    state.ready_successes = 0
                    state.ready_failures += 1
                    state.last_problem = f"readiness: {detail}"
                    if state.ready_failures >= probe.failure_threshold and state.ready:
                        state.ready = False
                        self._event(f"Pod/{pod.name}", f"{spec.name} not ready: {detail}")
            else:
                if ok:
                    state.live_failures = 0
                    continue
                state.live_failures += 1
                state.last_problem = f"liveness: {detail}"
                if state.live_failures >= probe.failure_threshold:
                    self._event(f"Pod/{pod.name}", f"{spec.name} liveness failed: restarting")
                    self._pre_stop(pod, state, pod.workload.template.grace_seconds)
                    self.podman.run(
                        ["restart", "--time", str(pod.workload.template.grace_seconds), state.id],
                        check=False,
                    )
                    state.restarts += 1
                    state.live_failures = 0
                    state.ready = False
                    state.started_at = time.monotonic()
                    state.next_probe.clear()

    def _run_probe(self, pod: PodState, state: ContainerState, probe: Probe) -> tuple[bool, str]:
        try:
            if probe.kind == "exec":
                done = self.podman.run(
                    ["exec", state.id, *probe.command], check=False, timeout=probe.timeout + 5
                )
                return done.returncode == 0, (done.stdout + done.stderr).strip()[-200:]
            if probe.kind == "tcp":
                with socket.create_connection((pod.ip, probe.port), timeout=probe.timeout):
                    return True, ""
            connection = http.client.HTTPConnection(pod.ip, probe.port, timeout=probe.timeout)
            try:
                connection.request("GET", probe.path)
                response = connection.getresponse()
                body = response.read()[:200].decode(errors="replace")
                return 200 <= response.status < 400, f"HTTP {response.status} {body}".strip()
            finally:
                connection.close()
        except (OSError, PodmanError, http.client.HTTPException) as exc:
            return False, str(exc)

    # --- DNS -------------------------------------------------------------------------------

    def dns_records(self) -> dict[str, list[str]]:
        records: dict[str, list[str]] = {}
        with self.lock:
            pods = [
                p for p in self.pods.values() if p.networked and p.phase in ("Pending", "Running")
            ]
        for service in self.plan.services:
            fqdn = self.plan.service_fqdn(service)
            addresses = [
                p.ip
                for p in pods
                if service.selects(p.workload.template.labels)
                and (p.ready or service.publish_not_ready)
            ]
            records[fqdn] = sorted(addresses)
            if service.headless:
                for pod in pods:
                    name = self.plan.pod_fqdn(pod.name, pod.workload)
                    if (
                        name
                        and pod.workload.service_name == service.name
                        and (pod.ready or service.publish_not_ready)
                    ):
                        records[name] = [pod.ip]
        return records

    def _publish_dns(self) -> None:
        records = self.dns_records()
        path = self.records_dir / "records.json"
        try:
            current = json.loads(path.read_text())
        except (OSError, ValueError):
            current = None
        if current != {k: sorted(v) for k, v in records.items()}:
            write_records(path, records)

    # --- deleting --------------------------------------------------------------------------

    def _pre_stop(self, pod: PodState, state: ContainerState, budget: float) -> None:
        hook: Handler | None = state.spec.pre_stop
        if hook is None or not state.id:
            return
        try:
            if hook.kind == "exec":
                self.podman.run(["exec", state.id, *hook.command], check=False, timeout=budget)
            elif hook.kind == "sleep":
                time.sleep(min(hook.seconds, budget))
            else:
                connection = http.client.HTTPConnection(pod.ip, hook.port, timeout=budget)
                connection.request("GET", hook.path)
                connection.getresponse().read()
                connection.close()
        except (OSError, PodmanError, http.client.HTTPException) as exc:
            self._event(f"Pod/{pod.name}", f"preStop of {state.spec.name} failed: {exc}")

    def delete_pod(self, name: str) -> None:
        """As `kubectl delete pod`: preStop hooks, SIGTERM, SIGKILL after the grace period."""
        with self.lock:
            pod = self.pods.get(name)
        if pod is None:
            raise RehearsalError(f"no pod {name}")
        self._remove_pod(pod)

    def _remove_pod(self, pod: PodState) -> None:
        pod.phase = "Terminating"
        for state in pod.containers:
            state.ready = False
        self._publish_dns()
        grace = pod.workload.template.grace_seconds
        deadline = time.monotonic() + grace
        hooks = [
            threading.Thread(target=self._pre_stop, args=(pod, s, grace)) for s in pod.containers
        ]
        for hook in hooks:
            hook.start()
        for hook in hooks:
            hook.join(timeout=max(0.0, deadline - time.monotonic()))
        if pod.pod_id:
            remaining = max(1, int(deadline - time.monotonic()))
            self.podman.run(["pod", "stop", "--time", str(remaining), pod.pod_id], check=False)
            self.podman.run(["pod", "rm", "--force", pod.pod_id], check=False)
        for volume in pod.volumes:
            self.podman.run(["volume", "rm", "--force", volume], check=False)
        shutil.rmtree(self.state_dir / "pods" / pod.name, ignore_errors=True)
        with self.lock:
            if self.pods.get(pod.name) is pod:
                del self.pods[pod.name]
        self._event(f"Pod/{pod.name}", "deleted")

    # --- status ----------------------------------------------------------------------------

    def _event(self, subject: str, message: str) -> None:
        self.events.append({"t": time.time(), "subject": subject, "message": message})
        self.log(f"rehearsal: {subject}: {message}")

    def ready_pods(self, workload: Workload) -> list[PodState]:
        with self.lock:
            return [p for p in self.pods.values() if p.workload is workload and p.ready]

    def problems(self) -> list[str]:
        """Why each workload is not yet up, naming it (for a deadline's error)."""
        found = []
        for workload in self.plan.workloads:
            if workload.kind == "Job":
                job = self.jobs[workload.name]
                if job.succeeded:
                    continue
                with self.lock:
                    pods = [p for p in self.pods.values() if p.workload is workload]
                detail = "; ".join(f"{p.name}: {p.phase} {p.problem}" for p in pods)
                state = "failed (backoffLimit reached)" if job.failed else "not complete"
                found.append(f"{workload.label}: {state}; {detail or 'no pod yet'}")
                continue
            ready = self.ready_pods(workload)
            if len(ready) >= workload.replicas:
                continue
            with self.lock:
                pods = [p for p in self.pods.values() if p.workload is workload]
            details = []
            for pod in pods:
                reasons = [
                    f"{c.spec.name}: {c.last_problem or 'not ready'}"
                    for c in pod.containers
                    if not c.ready
                ]
                details.append(f"{pod.name} {pod.phase} {pod.problem} {' '.join(reasons)}".strip())
            found.append(
                f"{workload.label}: {len(ready)}/{workload.replicas} ready; "
                + ("; ".join(details) or "no pod yet")
            )
        return found

    def wait_ready(self, timeout: float) -> None:
        """Until every workload is ready and every Job complete; else RehearsalError naming
        what is not, and why (never a silent hang)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(job.failed for job in self.jobs.values()):
                raise RehearsalError("; ".join(self.problems()))
            with self.lock:
                repeated = [k for k, n in self.start_failures.items() if n >= REPEATED_FAILURES]
            if repeated:
                # The same reason every time: waiting longer cannot help (a kubelet would
                # report CreateContainerConfigError and retry for ever).
                raise RehearsalError(
                    "; ".join(
                        f"{label}: cannot start a pod: {reason}" for label, reason in repeated
                    )
                )
            if not self.problems():
                return
            time.sleep(1)
        raise RehearsalError(f"not up after {timeout:.0f} s: " + "; ".join(self.problems()))

    def status(self) -> dict[str, Any]:
        with self.lock:
            pods = list(self.pods.values())
        return {
            "run_id": self.run_id,
            "network": self.network,
            "subnet": str(self.subnet),
            "dns": self.dns_ip,
            "pods": {
                p.name: {
                    "workload": p.workload.label,
                    "ip": p.ip,
                    "phase": p.phase,
                    "ready": p.ready,
                    "restarts": sum(c.restarts for c in p.containers),
                }
                for p in pods
            },
        }


def free_subnet(podman: Podman) -> ipaddress.IPv4Network:
    """A 10.x.0.0/16 that no podman network and no route of the host uses."""
    taken: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for network in podman.json(["network", "ls", "--format", "json"]) or []:
        for subnet in network.get("subnets") or []:
            with contextlib.suppress(ValueError):
                taken.append(ipaddress.ip_network(subnet["subnet"]))
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            fields = line.split()
            destination = ipaddress.IPv4Address(bytes.fromhex(fields[1])[::-1])
            mask = ipaddress.IPv4Address(bytes.fromhex(fields[7])[::-1])
            if int(mask):
                taken.append(ipaddress.ip_network(f"{destination}/{mask}", strict=False))
    for second in range(200, 250):
        candidate = ipaddress.IPv4Network(f"10.{second}.0.0/16")
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise RehearsalError("no free 10.x.0.0/16 subnet for the rehearsal's network")


def host_address(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The host's own address on the rehearsal's network: the bridge's gateway, which
    netavark makes the subnet's first address. Traffic from the host arrives from it."""
    return subnet.network_address + 1


def sweep(podman: Podman, run_id: str | None = None) -> list[str]:
    """Remove every pod, container and volume labelled as the rehearsal's (one run's, or
    all runs'), by id. Networks are removed last by the caller or here."""
    selector = f"label={LABEL}={run_id}" if run_id else f"label={LABEL}"
    problems: list[str] = []
    for listing, remove in (
        (["pod", "ps", "--filter", selector, "--format", "{{.Id}}"], ["pod", "rm", "--force"]),
        (["ps", "--all", "--filter", selector, "--format", "{{.ID}}"], ["rm", "--force"]),
        (
            ["volume", "ls", "--filter", selector, "--format", "{{.Name}}"],
            ["volume", "rm", "--force"],
        ),
    ):
        ids = podman.run(listing, check=False).stdout.split()
        if ids:
            done = podman.run([*remove, *ids], check=False)
            if done.returncode != 0:
                problems.append(done.stderr.strip())
    if run_id is None:
        networks = podman.run(
            ["network", "ls", "--filter", selector, "--format", "{{.Name}}"], check=False
        ).stdout.split()
        if networks:
            podman.run(["network", "rm", "--force", *networks], check=False)
    return problems

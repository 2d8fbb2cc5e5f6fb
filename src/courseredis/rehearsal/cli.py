"""`python -m courseredis.rehearsal up|down|status|smoke`: the deploy rehearsal from the shell.

`up --env dev|prod` builds the images, obtains the objects `pulumi up -s <env>` applies,
starts the controller process (`courseredis.rehearsal.daemon`), waits until everything is
up, runs the disruptions, then the exported smokeCommand from a container on the
rehearsal's network (`courseredis.rehearsal.smoke`), writes
`reports/rehearsal/<env>/summary.json`, prints a table, and removes everything unless
`--keep`. It exits non-zero when any step failed. `smoke` runs the smokeCommand again
against a kept rehearsal and exits with its code. `down` ends a kept (or crashed)
rehearsal and removes, by id, whatever carries its label.

State lives in `ROOT/.local/rehearsal/` (ROOT: the current directory): `containers.conf`,
`current.json` (the running rehearsal), and one directory per run. While it runs, the
controller keeps `ROOT/.local/stack.json` describing it (`stack_description`), so `make
smoke`, `make load` and `make audit` run against it; `up` also runs the smoke and the audit
from the host against the run's own copy (steps `smoke from the host`, `audit from the
host`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from courseredis.environments import ENVIRONMENTS, REPO_ROOT, load_environment
from courseredis.rehearsal import exercise, kubectl, stack_description
from courseredis.rehearsal.daemon import write_json
from courseredis.rehearsal.images import (
    ImageBuilder,
    ImageRecipeError,
    build_project_image,
    dockerfile_images,
    recipe_for,
)
from courseredis.rehearsal.podman import LABEL, Podman, PodmanError
from courseredis.rehearsal.report import Step, figures_text, print_table, write_summary
from courseredis.rehearsal.run import free_subnet, host_address, sweep
from courseredis.rehearsal.smoke import (
    SmokeCommandError,
    build_smoke_image,
    junit_figures,
    network_of,
    parse_smoke_command,
    run_smoke,
)
from courseredis.rehearsal.standins import is_stand_in
from courseredis.rehearsal.translate import Plan, translate
from courseredis.stack_file import DemoAccounts, TargetError, read_stack_file
from courseredis.waiting import TimedOut, wait_until


class RehearsalRefused(RuntimeError):
    """Another rehearsal is running, or the machine lacks what the rehearsal needs."""


def state_root(root: Path) -> Path:
    return root.resolve() / ".local" / "rehearsal"


def reports_dir(root: Path, env: str) -> Path:
    return root.resolve() / "reports" / "rehearsal" / env


def current_path(root: Path) -> Path:
    return state_root(root) / "current.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        return b"courseredis.rehearsal.daemon" in cmdline.read_bytes()
    except OSError:
        return False


def running(root: Path) -> dict[str, Any] | None:
    try:
        current: dict[str, Any] = json.loads(current_path(root).read_text())
    except (OSError, ValueError):
        return None
    return current if _alive(int(current.get("pid", 0))) else None


def declared(
    env: str, trusted_proxy: str | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """(objects, stack exports, notes): the program under mocks with real random passwords.

    A stack that declares no database (prod: the operator sets `databaseUrl`) is given the
    rehearsal's stand-in PostgreSQL (`courseredis.rehearsal.standins`): its objects come
    first, so it starts first, and its note says so; they are labelled as the rehearsal's
    (`standins.is_stand_in`), not the program's. dev runs what it declares (`ephemeralDatabase`).

    `trusted_proxy` (the host's address on the rehearsal's network) replaces the stack's
    `services.trustedProxies`: the host plays the ingress controller, as an operator
    configures it, so the load suites' simulated clients reach the limiter as themselves
    (X-Forwarded-For) rather than as one address that every per-IP limit would stop.
    """
    from courseredis.rehearsal.objects import declared_objects, deploy, random_password
    from courseredis.rehearsal.standins import database_for, stack_settings

    asyncio.set_event_loop(asyncio.new_event_loop())
    stand_in = database_for(stack_settings(env))
    plain: dict[str, str] = {}
    notes = [stand_in.note] if stand_in else []
    if trusted_proxy is not None:
        services = {**load_environment(env).config["services"], "trustedProxies": [trusted_proxy]}
        plain["services"] = json.dumps(services)
        notes.append(
            f"services.trustedProxies: [{trusted_proxy}], the host's address on the rehearsal's "
            "network: the host plays the ingress controller for the load suites and the traffic"
        )
    deployment = deploy(
        env, secrets=stand_in.config if stand_in else {}, plain=plain, passwords=random_password
    )
    result = declared_objects(deployment)  # chart paths are relative to where it ran
    notes += [f"{s.kind}/{s.name}: skipped by Chart v4 ({s.reason})" for s in result.skipped]
    return [*(stand_in.objects if stand_in else []), *result.objects], deployment.exports, notes


def wait_status(state_dir: Path, alive: Callable[[], bool], timeout: float) -> dict[str, Any]:
    """Until the controller says ready, failed or down, or exits. `alive` is asked of the
    process we started (its Popen), not of /proc: right after the fork the child's command
    line is still ours, and reading it then took a starting controller for a dead one."""
    status: dict[str, Any] = {}

    def settled() -> dict[str, Any] | None:
        nonlocal status
        try:
            status = json.loads((state_dir / "status.json").read_text())
        except (OSError, ValueError):
            status = {}
        if status.get("state") in ("ready", "failed", "down"):
            return status
        if not alive():
            return {**status, "state": "failed", "error": status.get("error") or "controller died"}
        return None

    try:
        return wait_until(settled, timeout_s=timeout, what="the rehearsal", interval_s=1)
    except TimedOut:
        return {**status, "state": "failed", "error": f"not up after {timeout:.0f} s"}


def request(state_dir: Path, document: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """Ask the controller; its answer, or `ok: false` after `timeout`."""
    path = kubectl.submit(state_dir / "requests", document)
    answer = kubectl.wait_answer(path, timeout, interval=0.2)
    if answer is None:
        return {"ok": False, "error": f"no answer in {timeout:.0f} s"}
    return answer


def stop_daemon(state_dir: Path, pid: int, timeout: float = 180) -> None:
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    # Past the timeout the caller goes on: what the controller left is swept by label.
    with contextlib.suppress(TimedOut):
        wait_until(lambda: not _alive(pid), timeout_s=timeout, what="the controller to stop")


def up(env: str, root: Path, keep: bool, timeout: float, image_from: str | None) -> int:
    if os.geteuid() != 0:
        raise RehearsalRefused("the rehearsal runs rootful podman: run it as root")
    other = running(root)
    if other is not None:
        raise RehearsalRefused(
            f"a rehearsal of {other['env']} is running (controller pid {other['pid']}); "
            "`make down` removes it"
        )
    steps: list[Step] = []
    podman = Podman(state_root(root))
    started = time.monotonic()
    subnet = free_subnet(podman)  # chosen now: the program is told the host's address on it
    objects, exports, notes = declared(env, trusted_proxy=f"{host_address(subnet)}/32")
    # The names the pods resolve are the stack's own (clusterDomain), as are the stand-ins'.
    domain = str(load_environment(env).config.get("clusterDomain", "cluster.local"))
    plan = translate(objects, domain)
    steps.append(
        Step(
            "objects",
            True,
            {
                "objects": sum(not is_stand_in(o) for o in objects),
                "stand_in_objects": sum(is_stand_in(o) for o in objects),
                "seconds": round(time.monotonic() - started, 1),
            },
        )
    )

    run_id = os.urandom(3).hex()
    # The images no recipe makes are the project's: built from the Dockerfile.
    own = [i for i in plan.images if not _has_recipe(i)]
    if len(own) > 1:
        raise RehearsalRefused(f"several images come from no recipe: {own}; one expected")
    project_image = own[0] if own else None
    bases = [i for i in plan.images if i != project_image]
    started = time.monotonic()
    built = ImageBuilder(podman).ensure(
        [*dockerfile_images((REPO_ROOT / "Dockerfile").read_text()), *bases]
    )
    smoke_command = str(exports.get("smokeCommand", ""))
    try:
        parse_smoke_command(smoke_command)  # refused before anything is built or started
    except SmokeCommandError as exc:
        raise RehearsalRefused(str(exc)) from None
    image_ids: list[str] = []
    if project_image is not None:
        image_ids.append(
            build_project_image(
                podman, REPO_ROOT, project_image, run_id=run_id, revision=image_from
            )
        )
    try:
        smoke_image = build_smoke_image(podman, REPO_ROOT, run_id, revision=image_from)
    except BaseException:
        for image in image_ids:  # not yet in current.json, so `down` would not find it
            podman.run(["image", "rm", "--force", image], check=False)
        raise
    image_ids.append(smoke_image)
    steps.append(
        Step(
            "images",
            True,
            {
                "seconds": round(time.monotonic() - started, 1),
                "base_images": {
                    b.reference: {"rebuilt": b.built, "provides": b.provides} for b in built
                },
                "project_image": project_image,
                "smoke_image": smoke_image,
            },
        )
    )

    state_dir = state_root(root) / f"{env}-{run_id}"
    state_dir.mkdir(parents=True, exist_ok=True)
    write_json(state_dir / "objects.json", {"objects": objects, "cluster_domain": domain})
    write_json(
        state_dir / "meta.json",
        {
            "run_id": run_id,
            "env": env,
            "timeout": timeout,
            "subnet": str(subnet),
            "root": str(root.resolve()),  # whose .local/stack.json describes the run
        },
    )
    log = (state_dir / "controller.log").open("w")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "courseredis.rehearsal.daemon", "--state-dir", str(state_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=root,
    )
    write_json(
        current_path(root),
        {
            "env": env,
            "pid": daemon.pid,
            "run_id": run_id,
            "state_dir": str(state_dir),
            "images": image_ids,
            "smoke_image": smoke_image,
            "smoke_command": smoke_command,
        },
    )

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    failed = True
    try:
        status = wait_status(state_dir, lambda: daemon.poll() is None, timeout + 60)
        up_ok = status.get("state") == "ready"
        steps.append(
            Step(
                "up",
                up_ok,
                {
                    "seconds": status.get("up_seconds"),
                    "pods": len(status.get("pods", {})),
                    "error": status.get("error", ""),
                },
            )
        )
        if up_ok:
            steps += exercise_steps(root, env, podman, plan, state_dir, smoke_image, smoke_command)
        failed = not all(step.passed for step in steps)
    finally:
        unhonoured = [*(str(u) for u in plan.unhonoured), kubectl.NODE_NOT_HONOURED]
        summary = write_summary(reports_dir(root, env), env, steps, unhonoured, notes, exports)
        print_table(steps, summary)
        if not keep or failed:
            if keep:
                print("rehearsal: a step failed, so it is not kept", file=sys.stderr)
            down(root)
        else:
            print(
                f"rehearsal: {env} kept (controller pid {daemon.pid}); `make down` removes it",
                file=sys.stderr,
            )
    return 1 if failed else 0


def _has_recipe(image: str) -> bool:
    try:
        recipe_for(image)
    except ImageRecipeError:
        return False
    return True


def exercise_steps(
    root: Path,
    env: str,
    podman: Podman,
    plan: Plan,
    state_dir: Path,
    smoke_image: str,
    smoke_command: str,
) -> list[Step]:
    """Once the objects are up: demo data, the post-deploy smoke, the load suites, the
    disruptions with traffic flowing, and the smoke again on what came back."""
    run_id = json.loads((state_dir / "meta.json").read_text())["run_id"]
    seeded, accounts = exercise.seed_step(podman, run_id, plan, state_dir)
    if accounts is not None:  # for the controller's stack.json, which the host tools read
        write_json(state_dir / stack_description.DEMO_FILE, accounts.model_dump(mode="json"))
    steps = [seeded]
    steps.append(_smoke(root, env, state_dir, smoke_image, smoke_command, "smoke"))
    steps += host_tool_steps(root, env, state_dir, accounts)
    if accounts is not None:
        urls = exercise.gateways(state_dir, exercise.gateway_port(plan))()
        reports = reports_dir(root, env) / "load"
        steps.append(
            exercise.load_step(env, urls[0] if urls else None, accounts, state_dir, reports)
        )
    steps += exercise.disruptions(
        env, state_dir, plan, lambda document: request(state_dir, document), accounts
    )
    name = "smoke after the disruptions"
    steps.append(_smoke(root, env, state_dir, smoke_image, smoke_command, name))
    return steps


def host_tool_steps(
    root: Path, env: str, state_dir: Path, accounts: DemoAccounts | None
) -> list[Step]:
    """`make smoke` and `make audit` as they run from the host, against the run's own
    stack.json (the copy in its state directory: ROOT's may be a local stack's), once the
    controller has written the seeded accounts into it."""
    path = state_dir / stack_description.OWN_COPY

    def described() -> bool | None:
        try:
            demo = read_stack_file(path).demo
        except (OSError, TargetError):
            return None
        if demo is None:
            return None
        return True if accounts is None or demo.students == accounts.students else None

    try:
        wait_until(described, timeout_s=30, what="the rehearsal's stack.json", interval_s=0.5)
    except TimedOut as exc:
        return [Step("stack.json", False, {"error": str(exc)})]
    reports = reports_dir(root, env)
    reports.mkdir(parents=True, exist_ok=True)
    smoke_xml = reports / "smoke-host.xml"
    smoke_step = _host_tool(
        "smoke from the host",
        [sys.executable, "-m", "smoke", "--stack-json", str(path), f"--junitxml={smoke_xml}"],
        reports / "smoke-host.log",
    )
    smoke_step.figures.update(junit_figures(smoke_xml))
    audit_step = _host_tool(
        "audit from the host",
        [sys.executable, "-m", "courseredis.ops.audit", "--stack-json", str(path)],
        reports / "audit-host.json",
    )
    return [smoke_step, audit_step]


def _host_tool(name: str, command: list[str], output: Path) -> Step:
    """Run a tool of the project's from the host; passed on exit code 0. Its output goes
    to `output`, and its tail to stderr when it fails."""
    started = time.monotonic()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SMOKE_", "REDIS_"))}
    try:  # from the repository's root, as make runs them (`python -m smoke` needs it)
        done = subprocess.run(
            command, cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=600
        )
    except subprocess.TimeoutExpired:
        return Step(name, False, {"error": "no exit in 600 s"})
    output.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        print("\n".join((done.stdout + done.stderr).splitlines()[-40:]), file=sys.stderr)
    figures = {"exit_code": done.returncode, "seconds": round(time.monotonic() - started, 1)}
    return Step(name, done.returncode == 0, figures)


def _smoke(
    root: Path, env: str, state_dir: Path, image: str, smoke_command: str, name: str
) -> Step:
    step, output = smoke_step(root, env, state_dir, image, smoke_command)
    if not step.passed:  # the whole output is in reports/rehearsal/<env>/smoke.log
        print("\n".join(output.splitlines()[-40:]), file=sys.stderr)
    return Step(name, step.passed, step.figures)


def smoke_step(
    root: Path, env: str, state_dir: Path, image: str, smoke_command: str
) -> tuple[Step, str]:
    """The smokeCommand from a container on the rehearsal's network; the step and the
    suite's output."""
    started = time.monotonic()
    try:
        address = request(state_dir, {"action": "address"})
        if not address.get("ok"):
            raise PodmanError(f"no address from the controller: {address.get('error')}")
        status = json.loads((state_dir / "status.json").read_text())
        meta = json.loads((state_dir / "meta.json").read_text())
        return run_smoke(
            Podman(state_root(root)),
            image=image,
            run_id=meta["run_id"],
            network=network_of(status, address["ip"]),
            smoke_command=smoke_command,
            state_dir=state_dir,
            reports=reports_dir(root, env),
        )
    except (PodmanError, SmokeCommandError, OSError, ValueError, KeyError) as exc:
        seconds = round(time.monotonic() - started, 1)
        return Step("smoke", False, {"error": str(exc), "seconds": seconds}), str(exc)


def smoke(root: Path) -> int:
    """Run the smokeCommand again against the kept rehearsal; the suite's exit code."""
    current = running(root)
    if current is None:
        raise RehearsalRefused("no rehearsal is running: `make rehearse KEEP=1` first")
    step, output = smoke_step(
        root,
        str(current["env"]),
        Path(current["state_dir"]),
        str(current["smoke_image"]),
        str(current["smoke_command"]),
    )
    print(output, end="" if output.endswith("\n") else "\n")
    mark = "ok  " if step.passed else "FAIL"
    print(f"rehearsal of {current['env']}: {mark} smoke {figures_text(step.figures)}")
    code = step.figures.get("exit_code")
    return code if isinstance(code, int) else 1


def down(root: Path) -> int:
    """End the running rehearsal (its controller removes what it made), then sweep by label
    whatever a crashed run left; remove the project images it built, by id."""
    podman = Podman(state_root(root))
    try:
        current: dict[str, Any] = json.loads(current_path(root).read_text())
    except (OSError, ValueError):
        current = {}
    if current:
        state_dir = Path(current["state_dir"])
        stop_daemon(state_dir, int(current.get("pid", 0)))
        # The controller removes it as it stops; not when it crashed.
        stack_description.forget(root, str(current.get("run_id", "")))
        log = state_dir / "controller.log"
        if log.exists():
            reports = reports_dir(root, str(current.get("env", "unknown")))
            reports.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, reports / "controller.log")
        # objects.json holds the generated passwords: nothing of the run stays behind.
        if state_dir.parent == state_root(root):
            shutil.rmtree(state_dir, ignore_errors=True)
    problems = sweep(podman)
    for image in current.get("images", []):
        podman.run(["image", "rm", "--force", image], check=False)
    leftover = podman.run(
        ["ps", "--all", "--filter", f"label={LABEL}", "--format", "{{.ID}}"], check=False
    ).stdout.split()
    current_path(root).unlink(missing_ok=True)
    if problems or leftover:
        print(f"rehearsal: down left {leftover} ({'; '.join(problems)})", file=sys.stderr)
        return 1
    return 0


def status(root: Path) -> int:
    current = running(root)
    if current is None:
        print("no rehearsal is running")
        return 0
    document = json.loads((Path(current["state_dir"]) / "status.json").read_text())
    print(f"rehearsal {current['env']}: {document.get('state')} (pid {current['pid']})")
    for name, pod in sorted(document.get("pods", {}).items()):
        print(f"  {name:40} {pod['ip']:15} {'ready' if pod['ready'] else pod['phase']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m courseredis.rehearsal")
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="rehearse a stack's deploy")
    up_parser.add_argument("--env", choices=ENVIRONMENTS, default="dev")
    up_parser.add_argument("--keep", action="store_true", help="leave it running")
    up_parser.add_argument("--timeout", type=float, default=420.0)
    up_parser.add_argument(
        "--image-from", default=None, help="build the project image from this git revision"
    )
    commands.add_parser("down", help="remove the running rehearsal")
    commands.add_parser("status", help="show the running rehearsal")
    commands.add_parser("smoke", help="run the smokeCommand again against the kept rehearsal")
    options = parser.parse_args(argv)
    root = Path.cwd()
    try:
        if options.command == "up":
            return up(options.env, root, options.keep, options.timeout, options.image_from)
        if options.command == "down":
            return down(root)
        if options.command == "smoke":
            return smoke(root)
        return status(root)
    except RehearsalRefused as exc:
        print(f"rehearsal: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        down(root)
        return 130

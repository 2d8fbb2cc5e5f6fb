"""The exported `smokeCommand`, run from a container on the rehearsal's network.

The Pulumi program exports `smokeCommand` as `SMOKE_...=... make smoke`, to be run where the
cluster's names resolve. Here that is a container of the Dockerfile's `smoke` stage on the
rehearsal's network, with the rehearsal's DNS server as its resolver (search list and
`ndots:5` as the pods get them) and the kubectl stand-in (`courseredis.rehearsal.kubectl`)
on its PATH. It runs `python -m smoke` (what `make smoke` runs) with the command's own
variables and a JUnit XML in `reports/rehearsal/<env>/smoke.xml`; the step's figures are
read from that file.
"""

from __future__ import annotations

import re
import shlex
import shutil
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from courseredis.rehearsal import kubectl
from courseredis.rehearsal.images import build_project_image
from courseredis.rehearsal.podman import LABEL, Podman
from courseredis.rehearsal.report import Step

SMOKE_TARGET = "smoke"  # the Dockerfile's stage
SMOKE_IMAGE = "localhost/courseredis-rehearsal-smoke:rehearsal"
SMOKE_COMMAND = ["make", "smoke"]
JUNIT = "smoke.xml"
LOG = "smoke.log"
REPORTS_MOUNT = "/reports"
KUBECTL_MOUNT = "/usr/local/bin/kubectl"
RUN_TIMEOUT = 900.0
VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)


class SmokeCommandError(ValueError):
    """The exported smokeCommand is not `VAR=value ... make smoke`."""


def parse_smoke_command(text: str) -> dict[str, str]:
    """The variables of `VAR=value ... make smoke` (shell quoting undone); anything else
    is refused, naming what was found, so a changed export cannot run half-understood."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise SmokeCommandError(f"smokeCommand is not shell words ({exc}): {text!r}") from None
    variables: dict[str, str] = {}
    while words and (match := VARIABLE.fullmatch(words[0])):
        variables[match.group(1)] = match.group(2)
        words.pop(0)
    if words != SMOKE_COMMAND:
        raise SmokeCommandError(
            f"smokeCommand must be `VAR=value ... {' '.join(SMOKE_COMMAND)}`; after the "
            f"variables it runs {shlex.join(words)!r}: {text!r}"
        )
    return variables


def build_smoke_image(
    podman: Podman, repo_root: Path, run_id: str, revision: str | None = None
) -> str:
    """Build the Dockerfile's `smoke` stage as the project image is built (local base
    images, `--pull=never`, the same context); the new image's id."""
    return build_project_image(
        podman, repo_root, SMOKE_IMAGE, run_id=run_id, revision=revision, target=SMOKE_TARGET
    )


@dataclass(frozen=True)
class Network:
    """Where the smoke container runs: the rehearsal's network, as a pod is on it."""

    name: str
    ip: str
    dns: str
    search: tuple[str, ...]


def run_args(
    image: str,
    run_id: str,
    network: Network,
    variables: Sequence[str],
    kubectl_script: Path,
    requests: Path,
    reports: Path,
) -> list[str]:
    """`podman run` of the smoke image; the variables are passed by name (`--env NAME`), so
    their values never appear on a command line."""
    args = [
        "run",
        "--rm",
        "--name",
        f"crh-{run_id}-smoke-{int(time.time())}",
        "--label",
        f"{LABEL}={run_id}",
        "--network",
        network.name,
        "--ip",
        network.ip,
        "--dns",
        network.dns,
        "--dns-option",
        "ndots:5",
    ]
    for domain in network.search:
        args += ["--dns-search", domain]
    args += [
        # Root: the requests and reports directories are root's on the host (rootful podman).
        "--user",
        "0:0",
        "-v",
        f"{kubectl_script}:{KUBECTL_MOUNT}:ro",
        "-v",
        f"{requests}:{kubectl.CONTAINER_REQUESTS}",
        "-v",
        f"{reports}:{REPORTS_MOUNT}",
        "--env",
        f"{kubectl.REQUESTS_ENV}={kubectl.CONTAINER_REQUESTS}",
    ]
    for name in sorted(variables):
        args += ["--env", name]
    return [*args, image, f"--junitxml={REPORTS_MOUNT}/{JUNIT}"]


def junit_figures(path: Path) -> dict[str, Any]:
    """Tests passed, failed (errors included), skipped, and the failed tests' names."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return {"tests_passed": 0, "tests_failed": 0, "tests_skipped": 0, "junit": "missing"}
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    names = [
        f"{case.get('classname', '')}::{case.get('name', '')}"
        for case in root.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return {
        "tests_passed": total - failed - skipped,
        "tests_failed": failed,
        "tests_skipped": skipped,
        "failed_tests": names,
    }


def run_smoke(
    podman: Podman,
    *,
    image: str,
    run_id: str,
    network: Network,
    smoke_command: str,
    state_dir: Path,
    reports: Path,
) -> tuple[Step, str]:
    """Run the smoke command in its container; the step (passed: exit code 0) and the
    suite's output (also written to `reports/.../smoke.log`)."""
    started = time.monotonic()
    variables = parse_smoke_command(smoke_command)
    reports.mkdir(parents=True, exist_ok=True)
    (reports / JUNIT).unlink(missing_ok=True)  # never read an earlier run's figures
    script = state_dir / "smoke" / "kubectl"
    script.parent.mkdir(parents=True, exist_ok=True)
    # A copy with its own mode: a checkout need not keep kubectl.py executable.
    shutil.copyfile(Path(kubectl.__file__), script)
    script.chmod(0o755)
    args = run_args(
        image, run_id, network, list(variables), script, state_dir / "requests", reports
    )
    done = podman.run(args, check=False, input_bytes=b"", timeout=RUN_TIMEOUT, env=variables)
    output = done.stdout + done.stderr
    (reports / LOG).write_text(output)
    figures: dict[str, Any] = {
        **junit_figures(reports / JUNIT),
        "exit_code": done.returncode,
        "seconds": round(time.monotonic() - started, 1),
    }
    return Step("smoke", done.returncode == 0, figures), output


def network_of(status: Mapping[str, Any], ip: str) -> Network:
    """The network, resolver and search list of the controller's status, and `ip`."""
    return Network(status["network"], ip, status["dns"], tuple(status.get("search", ())))

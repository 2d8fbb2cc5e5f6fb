"""`make rehearse` for real: dev and prod on podman, disruptions included, nothing left behind.

Each run builds the project and smoke images from the working tree (the base images are
cached on the machine), brings the stack's objects up, seeds demo data through the pods,
runs the exported smokeCommand from a container, then the smoke and the audit from the host
against the stack.json the rehearsal keeps, the load suites at small scale, deletes
Redis and gateway pods and restarts the Redis StatefulSet with traffic flowing, runs the
smoke again, writes the summary, and removes everything it created.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from courseredis.environments import REPO_ROOT
from courseredis.rehearsal.podman import LABEL, Podman

pytestmark = pytest.mark.timeout(1200)


def rehearse(env: str, root: Path) -> tuple[int, dict[str, object], str]:
    done = subprocess.run(
        [sys.executable, "-m", "courseredis.rehearsal", "up", "--env", env],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=1100,
    )
    summary = json.loads((root / "reports" / "rehearsal" / env / "summary.json").read_text())
    return done.returncode, summary, done.stdout + done.stderr


def leftovers(podman: Podman) -> dict[str, list[str]]:
    selector = f"label={LABEL}"
    return {
        "containers": podman.run(["ps", "-a", "--filter", selector, "-q"]).stdout.split(),
        "pods": podman.run(["pod", "ps", "--filter", selector, "-q"]).stdout.split(),
        "volumes": podman.run(["volume", "ls", "--filter", selector, "-q"]).stdout.split(),
        "networks": podman.run(["network", "ls", "--filter", selector, "-q"]).stdout.split(),
    }


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_rehearsal_runs_the_stack_through_its_disruptions_and_cleans_up(
    env: str, tmp_path: Path, podman: Podman, base_images
):
    code, summary, output = rehearse(env, tmp_path)
    steps = {step["name"]: step for step in summary["steps"]}  # type: ignore[attr-defined]
    assert code == 0, output[-3000:]
    assert summary["passed"] is True
    for name in (
        "objects",
        "images",
        "up",
        "demo data",
        "smoke",
        "smoke from the host",  # `make smoke` and `make audit` on its stack.json
        "audit from the host",
        "load suites",
        "delete one Redis pod",
        "delete every Redis pod",
        "rolling restart of Redis",
        "delete a gateway pod",
        "smoke after the disruptions",
    ):
        assert steps[name]["passed"], (name, steps[name])
    # Every Redis pod came back on a new IP, as after a real deletion.
    every = steps["delete every Redis pod"]["figures"]
    assert every["all_new_ips"] is True
    # Traffic flowed through each disruption, and its failures were counted.
    for name in ("delete one Redis pod", "rolling restart of Redis", "delete a gateway pod"):
        assert steps[name]["figures"]["requests"] > 0, (name, steps[name])
    # With persistence (prod: AOF), the session and the revocation outlived every Redis pod;
    # without (dev), the figures say they were lost, by design.
    assert every["persistence"] is (env == "prod")
    if env == "prod":
        assert every["session_kept"] and every["revocation_kept"], every
    # The smoke ran its flows: nothing the gate would count was skipped.
    assert steps["smoke"]["figures"]["tests_failed"] == 0
    not_honoured = summary["not_honoured"]
    assert any(line.startswith("NetworkPolicy/redis:") for line in not_honoured)  # type: ignore[attr-defined]
    assert leftovers(podman) == {"containers": [], "pods": [], "volumes": [], "networks": []}
    assert not (tmp_path / ".local" / "rehearsal" / "current.json").exists()
    assert not (tmp_path / ".local" / "stack.json").exists()  # its description went with it

"""The load suites at small scale against the rehearsal's gateway.

The same `python -m loadtests.run` as `make load`, pointed at one ready gateway pod (from the
host, over the rehearsal's own network) with a stack file of the rehearsal's: the gateway and
the demo accounts seeded through the pods (`courseredis.rehearsal.demo`). Each suite keeps
its own SLO gates; the step passes when every suite does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from courseredis.environments import REPO_ROOT
from courseredis.rehearsal.daemon import write_json
from courseredis.stack_file import DemoAccounts, StackFile

SUITES = ("rate_limiting", "lock_contention", "cache_hit_ratio")
RUN_TIME = "15s"
USERS = 8  # per suite: small, and under the gateway's per-IP limits from one host address


def stack_document(env: str, gateway: str, demo: DemoAccounts) -> dict[str, Any]:
    """What `loadtests` reads from a stack.json: the gateway and the accounts."""
    return StackFile(env=env, services={"gateway": gateway}, demo=demo).to_json()


def run_suites(
    env: str, gateway: str, demo: DemoAccounts, state_dir: Path, reports: Path
) -> dict[str, Any]:
    """Run the suites; figures per suite (passed, headline numbers) and the exit code."""
    stack_file = state_dir / "load-stack.json"  # holds the demo passwords: mode 0600
    write_json(stack_file, stack_document(env, gateway, demo))
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.run",
            "--suites",
            ",".join(SUITES),
            "--time",
            RUN_TIME,
            "--users",
            str(USERS),
            "--host",
            gateway,
            "--stack-file",
            str(stack_file),
            "--reports",
            str(reports),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=len(SUITES) * 240,
        check=False,
    )
    (reports / "output.txt").parent.mkdir(parents=True, exist_ok=True)
    (reports / "output.txt").write_text(done.stdout + done.stderr)
    suites: dict[str, Any] = {}
    for suite in SUITES:
        summary_path = reports / suite / "summary.json"
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError):
            suites[suite] = {"passed": False, "problem": f"no summary in {summary_path.parent}"}
            continue
        suites[suite] = {"passed": bool(summary.get("passed")), **_headline(summary)}
    return {
        "exit_code": done.returncode,
        "seconds": round(time.monotonic() - started, 1),
        "suites": suites,
        "reports": str(reports),
    }


def _headline(summary: dict[str, Any]) -> dict[str, Any]:
    """A few numbers of a suite's summary: requests, failures and its own gates."""
    figures = summary.get("figures") or {}
    picked = {
        k: v
        for k, v in figures.items()
        if isinstance(v, int | float | str | bool) and v is not None
    }
    gates = summary.get("gates") or summary.get("checks")
    if gates is not None:
        picked["gates"] = gates
    return picked

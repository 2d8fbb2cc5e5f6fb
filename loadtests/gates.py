"""SLO gates and the per-suite `summary.json`: pure, no Locust.

A gate is a figure, a bound (at most / at least) and a threshold. A figure that could not
be measured (no requests of that kind, say) misses its gate: a gate that passes because
nothing was checked would hide a broken run.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from loadtests.analysis import rounded

SUMMARY_FILE = "summary.json"
SUMMARY_VERSION = 1


@dataclass(frozen=True)
class Gate:
    name: str  # e.g. p95_ms
    bound: Literal["max", "min"]
    threshold: float
    actual: float | None
    option: str  # the command-line option that sets the threshold
    env_var: str  # ... and its environment variable

    @property
    def passed(self) -> bool:
        if self.actual is None or math.isnan(self.actual):
            return False
        if self.bound == "max":
            return self.actual <= self.threshold
        return self.actual >= self.threshold

    @property
    def miss(self) -> float | None:
        """By how much the gate was missed (positive), None when passed or not measured."""
        if self.passed or self.actual is None:
            return None
        return abs(self.actual - self.threshold)

    def describe(self) -> str:
        sign = "<=" if self.bound == "max" else ">="
        if self.actual is None:
            return f"{self.name}: not measured (gate {sign} {_num(self.threshold)})"
        verdict = "ok" if self.passed else f"MISSED by {_num(self.miss)}"
        return f"{self.name} = {_num(self.actual)} (gate {sign} {_num(self.threshold)}): {verdict}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bound": self.bound,
            "threshold": self.threshold,
            "actual": self.actual,
            "passed": self.passed,
            "missed_by": self.miss,
            "option": self.option,
            "env_var": self.env_var,
        }


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


def failure_message(gates: Sequence[Gate]) -> str | None:
    """One line naming every missed gate and by how much; None when all passed."""
    missed = [g for g in gates if not g.passed]
    if not missed:
        return None
    return "SLO gates missed: " + "; ".join(g.describe() for g in missed)


def build_summary(
    *,
    suite: str,
    run: dict[str, Any],
    requests: dict[str, Any],
    figures: dict[str, Any],
    gates: Sequence[Gate],
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    summary: dict[str, Any] = rounded(
        {
            "version": SUMMARY_VERSION,
            "suite": suite,
            "passed": all(g.passed for g in gates),
            "failed_gates": [g.name for g in gates if not g.passed],
            "run": run,
            "requests": requests,
            "figures": figures,
            "gates": [g.to_json() for g in gates],
            "notes": list(notes),
        }
    )
    return summary


def write_summary(directory: Path, summary: dict[str, Any]) -> Path:
    """Write summary.json atomically (a reader never sees half of it)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SUMMARY_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(summary, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(temporary, path)
    return path


REQUIRED_KEYS = (
    "version",
    "suite",
    "passed",
    "failed_gates",
    "run",
    "requests",
    "figures",
    "gates",
)


def check_summary(summary: Any) -> list[str]:
    """What is wrong with a summary document ([] when it is well formed)."""
    if not isinstance(summary, dict):
        return ["not a JSON object"]
    problems = [f"missing {key}" for key in REQUIRED_KEYS if key not in summary]
    if problems:
        return problems
    if not isinstance(summary["gates"], list) or not summary["gates"]:
        problems.append("no gates")
    for gate in summary.get("gates", []):
        for key in ("name", "bound", "threshold", "actual", "passed"):
            if key not in gate:
                problems.append(f"gate without {key}: {gate}")
    failed = sorted(g["name"] for g in summary["gates"] if not g.get("passed"))
    if sorted(summary["failed_gates"]) != failed:
        problems.append("failed_gates does not match the gates")
    if summary["passed"] != (not failed):
        problems.append("passed does not match the gates")
    for key in ("total", "failures", "error_ratio", "p95_ms"):
        if key not in summary["requests"]:
            problems.append(f"requests without {key}")
    return problems

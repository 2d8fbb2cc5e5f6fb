"""`reports/rehearsal/<env>/summary.json` and the table printed at the end of a rehearsal."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Step:
    name: str
    passed: bool
    figures: dict[str, Any] = field(default_factory=dict)


def write_summary(
    directory: Path,
    env: str,
    steps: list[Step],
    unhonoured: list[str],
    notes: list[str],
    exports: dict[str, Any],
) -> dict[str, Any]:
    """The summary: every step with `name`, `passed` and its figures; what the rehearsal
    could not honour, by kind and name; and the stand-ins it used."""
    summary = {
        "env": env,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "passed": bool(steps) and all(step.passed for step in steps),
        "steps": [asdict(step) for step in steps],
        "not_honoured": unhonoured,
        "stand_ins": notes,
        "smoke_command": exports.get("smokeCommand", ""),
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def figures_text(figures: dict[str, Any]) -> str:
    parts = []
    for key, value in figures.items():
        if isinstance(value, dict | list):
            continue
        parts.append(f"{key}={value}")
    return " ".join(parts)[:90]


def print_table(steps: list[Step], summary: dict[str, Any]) -> None:
    print(f"\nrehearsal of {summary['env']}: {'passed' if summary['passed'] else 'FAILED'}")
    for step in steps:
        mark = "ok  " if step.passed else "FAIL"
        print(f"  {mark} {step.name:28} {figures_text(step.figures)}")
    print(f"  not honoured: {len(summary['not_honoured'])} (listed in summary.json)")

"""What a chaos scenario reports: figures, checks with a verdict each, and a pass flag.

`reports/chaos/summary.json` holds one entry per scenario; `table` prints the headline
figures of each, the same rows docs/chaos.md's table shows.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from courseredis.engines import SPECS, engine_override


@dataclass(frozen=True)
class Check:
    """One property a scenario asserts, its verdict, and what was seen."""

    name: str
    ok: bool
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class ScenarioResult:
    """A scenario's outcome. It passes when it ran to the end and every check holds."""

    scenario: str
    title: str
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    headline: tuple[str, ...] = ()  # the figures the table shows, in order
    duration_s: float = 0.0
    error: str | None = None  # the scenario could not run to its end: why

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.ok for c in self.checks)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, bool(ok), detail))
        return bool(ok)

    def failures(self) -> list[str]:
        out = [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]
        if self.error is not None:
            out.append(f"error: {self.error}")
        if not self.checks and self.error is None:
            out.append("no check ran")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "title": self.title,
            "passed": self.passed,
            "duration_s": round(self.duration_s, 2),
            "figures": self.figures,
            "checks": [c.to_json() for c in self.checks],
            "error": self.error,
        }


def describe_error(error: BaseException) -> str:
    """The error, and where in the scenario it came from (the innermost frame of ours)."""
    where = ""
    for frame in traceback.extract_tb(error.__traceback__):
        if "courseredis" in frame.filename:
            where = f" (at {Path(frame.filename).name}:{frame.lineno} in {frame.name})"
    return f"{type(error).__name__}: {error}{where}"


def rounded(value: float, digits: int = 3) -> float:
    return round(value, digits)


def summary_document(results: Sequence[ScenarioResult], started: float) -> dict[str, Any]:
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "passed": bool(results) and all(r.passed for r in results),
        "duration_s": round(time.monotonic() - started, 1),
        "host": _host(),
        "scenarios": [r.to_json() for r in results],
    }


def write_summary(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, indent=2, default=str) + "\n")
    temporary.replace(path)


def _host() -> dict[str, Any]:
    # The engine the scenarios' stacks run: the stack's, or COURSEREDIS_ENGINE's.
    engine = engine_override() or "redis"
    server = SPECS[engine].server
    try:
        out = subprocess.run(
            [server, "--version"], capture_output=True, text=True, check=False, timeout=5
        ).stdout
        redis_version = out.split("v=", 1)[1].split()[0] if "v=" in out else "unknown"
    except (OSError, subprocess.SubprocessError):
        redis_version = "unknown"
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "engine": engine,
        "redis_server": redis_version,  # the engine server's version (key kept for readers)
        "machine": platform.machine(),
    }


def _figure(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def table(results: Sequence[ScenarioResult]) -> str:
    """A Markdown table: one row per scenario, its verdict, headline figures and duration."""
    lines = ["| Scenario | Result | Figures | Took |", "|---|---|---|---|"]
    for r in results:
        figures = ", ".join(
            f"{name} {_figure(r.figures[name])}" for name in r.headline if name in r.figures
        )
        verdict = "pass" if r.passed else "FAIL"
        lines.append(f"| {r.title} | {verdict} | {figures} | {r.duration_s:.0f} s |")
    return "\n".join(lines)

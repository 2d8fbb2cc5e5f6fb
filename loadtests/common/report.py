"""The end-of-run report: the requests' figures, every gate, summary.json and the verdict.

Latency gates look at the suite's own requests only: the session upkeep (login, refresh,
named with `SESSION`) measures argon2, not the pattern under test.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from locust.env import Environment
from locust.stats import StatsEntry

from loadtests.common.findings import Finding, gate
from loadtests.common.options import option
from loadtests.common.run_state import RunState, current
from loadtests.common.sessions import SESSION
from loadtests.gates import Gate, build_summary, failure_message, write_summary

if TYPE_CHECKING:
    from loadtests.common.suite import Suite


def report_run(suite: Suite, environment: Environment) -> dict[str, Any]:
    """Evaluate the gates, write summary.json, print the verdict; the summary."""
    run = current()
    runner = environment.runner
    assert runner is not None
    stats = runner.stats
    measured = measured_entry(stats.entries.values(), stats)
    total = stats.total
    duration = max(1e-9, (total.last_request_timestamp or time.time()) - total.start_time)
    p99_gate = float(option(environment, "max_p99_ms"))
    requests: dict[str, Any] = {
        "total": total.num_requests,
        "failures": total.num_failures,
        "error_ratio": total.num_failures / total.num_requests if total.num_requests else None,
        "rps": total.num_requests / duration,
        "measured_requests": measured.num_requests,
        "p50_ms": _percentile(measured, 0.50),
        "p95_ms": _percentile(measured, 0.95),
        "p99_ms": _percentile(measured, 0.99),
        "by_name": by_name(stats.entries.values()),
        "errors": [
            {
                "name": e.name,
                "method": e.method,
                "error": str(e.error)[:300],
                "occurrences": e.occurrences,
            }
            for e in list(stats.errors.values())[:10]
        ],
    }
    finding = (
        suite.analyse(run) if (suite.analyse is not None and run is not None) else Finding({}, [])
    )
    gates = [
        gate(environment, "error_ratio", "max", "max_error_ratio", requests["error_ratio"]),
        gate(environment, "p95_ms", "max", "max_p95_ms", requests["p95_ms"]),
    ]
    if p99_gate > 0:
        gates.append(gate(environment, "p99_ms", "max", "max_p99_ms", requests["p99_ms"]))
    gates.append(
        gate(
            environment,
            "user_exceptions",
            "max",
            "max_user_exceptions",
            float(sum(e["count"] for e in runner.exceptions.values())),
        )
    )
    gates += finding.gates
    run_info = {
        "host": environment.host,
        "started_at": datetime.fromtimestamp(total.start_time, UTC).isoformat(timespec="seconds"),
        "duration_s": duration,
        "users": runner.target_user_count,
        "workers": run.extras.get("workers", 1) if run else 1,
        "seed": run.seed if run else None,
        "generator": socket.gethostname(),
        "sessions": _session_counts(run),
    }
    summary = build_summary(
        suite=suite.name,
        run=run_info,
        requests=requests,
        figures=finding.figures,
        gates=gates,
        notes=finding.notes,
    )
    directory = Path(option(environment, "summary_dir") or f"reports/load/{suite.name}")
    path = write_summary(directory, summary)
    print_report(suite.name, summary, path, gates)
    return summary


def measured_entry(entries: Any, stats: Any) -> StatsEntry:
    """All requests but the session upkeep, merged: what the latency gates look at."""
    merged = StatsEntry(stats, "measured", "", use_response_times_cache=False)
    for entry in entries:
        if not entry.name.endswith(SESSION):
            merged.extend(entry)
    return merged


def _percentile(entry: StatsEntry, q: float) -> float | None:
    return float(entry.get_response_time_percentile(q)) if entry.num_requests else None


def by_name(entries: Any) -> list[dict[str, Any]]:
    rows = []
    for entry in sorted(entries, key=lambda e: (-e.num_requests, e.name)):
        rows.append(
            {
                "name": entry.name,
                "method": entry.method,
                "requests": entry.num_requests,
                "failures": entry.num_failures,
                "p50_ms": _percentile(entry, 0.50),
                "p95_ms": _percentile(entry, 0.95),
                "p99_ms": _percentile(entry, 0.99),
            }
        )
    return rows


def _session_counts(run: RunState | None) -> dict[str, float]:
    """Logins and refreshes over every process (counted where they happened)."""
    if run is None:
        return {}
    counters = run.collector.counters
    return {
        "logins": counters.get("session_logins", 0),
        "refreshes": counters.get("session_refreshes", 0),
        "login_failures": counters.get("login_failures", 0),
        "reauthentications": counters.get("reauthentications", 0),
    }


def print_report(suite: str, summary: dict[str, Any], path: Path, gates: Sequence[Gate]) -> None:
    lines = [f"== {suite}: {'PASSED' if summary['passed'] else 'FAILED'} (summary: {path})"]
    lines += [f"   {g.describe()}" for g in gates]
    for note in summary.get("notes", []):
        lines.append(f"   note: {note}")
    message = failure_message(gates)
    if message:
        lines.append(message)
    print("\n".join(lines), flush=True)

"""`python -m loadtests.run`: the load suites one after the other, headless, then one screen.

What `make load` runs. Per suite it starts `locust -f loadtests/<suite>.py --headless` for
--time, with Locust's HTML report and CSV files and the suite's `summary.json` in
`<reports>/<suite>/`, then prints one line per suite and every missed gate. Exit status: 0
when every suite ran and passed its gates, 1 otherwise, 2 when the run could not start.

Gate thresholds and suite options pass through the environment (LOAD_MIN_HIT_RATIO=0.9 ...)
or after `--` as Locust arguments (`-- --min-hit-ratio 0.9`). Pure: no Locust import.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.gates import SUMMARY_FILE, check_summary
from loadtests.target import DEFAULT_STACK_FILE, TargetError, gateway_url, stack_document

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent


@dataclass(frozen=True)
class SuiteRun:
    """How `make load` runs a suite: its users and spawn rate (-u, -r)."""

    users: int
    spawn_rate: float
    needs_gateway: bool = True


SUITES: dict[str, SuiteRun] = {
    "rate_limiting": SuiteRun(users=16, spawn_rate=16),
    "lock_contention": SuiteRun(users=20, spawn_rate=20),
    "cache_hit_ratio": SuiteRun(users=20, spawn_rate=10),
    "redis_direct": SuiteRun(users=14, spawn_rate=14, needs_gateway=False),
    # Many real logins at once: the auth service's bounded password checks (issue 13, 8).
    "login_burst": SuiteRun(users=40, spawn_rate=40),
}
DEFAULT_SUITES = ("rate_limiting", "lock_contention", "cache_hit_ratio")


def main(argv: Sequence[str] | None = None) -> int:
    args, locust_args = _parser().parse_known_args(argv)
    if locust_args and locust_args[0] == "--":
        locust_args = locust_args[1:]
    suites = [s for s in args.suites.replace(",", " ").split() if s]
    unknown = [s for s in suites if s not in SUITES]
    if unknown or not suites:
        print(f"error: unknown suites {unknown}; known: {', '.join(SUITES)}", file=sys.stderr)
        return 2
    try:
        host = args.host or _local_gateway(args.stack_file, suites)
    except TargetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    reports = Path(args.reports).resolve()
    stack_file = str(Path(args.stack_file).resolve())
    print(f"load suites against {host or 'Redis only'}: {' '.join(suites)}, {args.time} each")
    results = []
    for suite in suites:
        results.append(
            run_suite(suite, host, args.time, args.users, stack_file, reports, locust_args)
        )
    print()
    print(render(results, host, args.time, reports))
    return 0 if all(r["passed"] for r in results) else 1


def _local_gateway(stack_file: str, suites: Sequence[str]) -> str | None:
    if not any(SUITES[s].needs_gateway for s in suites):
        return None
    url = gateway_url(stack_document(stack_file))
    if url is None:
        raise TargetError(
            f"no local stack in {stack_file}: start it with `make up` (or give --host)"
        )
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=5) as response:
            response.read()
    except (urllib.error.URLError, OSError) as error:
        raise TargetError(
            f"the gateway {url} does not answer ({error}): is the stack up? `make status`"
        ) from None
    return url


def run_suite(
    suite: str,
    host: str | None,
    run_time: str,
    users: int | None,
    stack_file: str,
    reports: Path,
    extra: Sequence[str],
) -> dict[str, Any]:
    """Run one suite headless; its summary (or why there is none) as a dict."""
    spec = SUITES[suite]
    directory = reports / suite
    directory.mkdir(parents=True, exist_ok=True)
    summary_path = directory / SUMMARY_FILE
    summary_path.unlink(missing_ok=True)  # a crashed run must not show the last one's
    count = users or spec.users
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(HERE / f"{suite}.py"),
        "--headless",
        "-u",
        str(count),
        "-r",
        str(count if users else spec.spawn_rate),
        "-t",
        run_time,
        "--stop-timeout",
        "5",
        "--html",
        str(directory / "report.html"),
        "--csv",
        str(directory / "locust"),
        "--logfile",
        str(directory / "locust.log"),
        "--only-summary",
        "--stack-file",
        stack_file,
        "--summary-dir",
        str(directory),
    ]
    if host:
        command += ["--host", host]
    command += list(extra)
    started = time.monotonic()
    print(f"  {suite}: running ({count} users) ...", flush=True)
    with (directory / "output.txt").open("w") as output:
        completed = subprocess.run(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            timeout=_seconds(run_time) + 180,
            check=False,
        )
    elapsed = time.monotonic() - started
    result: dict[str, Any] = {
        "suite": suite,
        "exit_code": completed.returncode,
        "elapsed_s": elapsed,
        "directory": str(directory),
    }
    if not summary_path.is_file():
        result |= {
            "passed": False,
            "problem": f"no summary (locust exited "
            f"{completed.returncode}; see {directory / 'output.txt'})",
        }
        return result
    summary = json.loads(summary_path.read_text())
    problems = check_summary(summary)
    result |= {
        "summary": summary,
        "passed": bool(summary["passed"]) and not problems and completed.returncode == 0,
    }
    if problems:
        result["problem"] = "malformed summary: " + "; ".join(problems)
    elif completed.returncode != 0 and summary["passed"]:
        result["problem"] = f"locust exited {completed.returncode}; see {directory}/output.txt"
    return result


def _seconds(run_time: str) -> float:
    """Locust's run-time syntax (20s, 1m30s, 2h) in seconds."""
    total, number = 0.0, ""
    for char in run_time.strip():
        if char.isdigit() or char == ".":
            number += char
        elif char in "smh" and number:
            total += float(number) * {"s": 1, "m": 60, "h": 3600}[char]
            number = ""
    return total + (float(number) if number else 0.0)


def headline(summary: dict[str, Any]) -> str:
    """The figures that matter most, per suite, on one line."""
    f = summary.get("figures", {})
    suite = summary.get("suite")
    if suite == "rate_limiting":
        retry = f.get("retry_after", {})
        return (
            f"429 ratio {_fmt(f.get('ratio_429'))}, admitted over limit "
            f"{_fmt(f.get('admitted_over_limit'))}, Retry-After retries "
            f"{retry.get('succeeded', 0)}/{retry.get('attempted', 0)} ok"
        )
    if suite == "lock_contention":
        wait = f.get("lock_wait", {})
        latency = f.get("latency", {})
        return (
            f"409 ratio {_fmt(f.get('ratio_409'))} (lock {_fmt(f.get('ratio_409_lock'))}), "
            f"p99 {_fmt(latency.get('p99_ms'))} ms, lock wait p95 {_fmt(wait.get('p95_ms'))} "
            f"ms, double enrollments {_fmt(f.get('double_enrollments'))}"
        )
    if suite == "cache_hit_ratio":
        hit = f.get("hit_ratio", {})
        return (
            f"hit ratio observed {_fmt(hit.get('observed'))}, server {_fmt(hit.get('server'))}, "
            f"ideal {_fmt(hit.get('ideal'))} (gap {_fmt(hit.get('gap_ideal_minus_observed'))})"
        )
    if suite == "login_burst":
        statuses = f.get("by_status", {})
        alive = f.get("auth", {}).get("after", {}).get("alive")
        return (
            f"logins {_fmt(f.get('logins'))}: 200 {statuses.get('200', 0)}, 429 "
            f"{statuses.get('429', 0)}, 503 {statuses.get('503', 0)}; bad answers "
            f"{_fmt(f.get('bad_answers'))}, auth alive {alive}"
        )
    if suite == "redis_direct":
        parts = []
        if "rate_limit" in f:
            parts.append(f"over limit {_fmt(f['rate_limit'].get('admitted_over_limit'))}")
        if "lock" in f:
            parts.append(f"exclusion violations {_fmt(f['lock'].get('exclusion_violations'))}")
        if "cache" in f:
            parts.append(f"cache hit ratio {_fmt(f['cache'].get('hit_ratio'))}")
        return ", ".join(parts)
    return ""


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:.3g}"
    return str(value)


def render(
    results: Sequence[dict[str, Any]], host: str | None, run_time: str, reports: Path
) -> str:
    lines = [
        f"{'suite':<16} {'result':<7} {'requests':>9} {'errors':>7} {'p95 ms':>7}  figures",
    ]
    missed: list[str] = []
    for r in results:
        summary = r.get("summary")
        if summary is None:
            lines.append(
                f"{r['suite']:<16} {'FAILED':<7} {'-':>9} {'-':>7} {'-':>7}  {r.get('problem', '')}"
            )
            continue
        requests = summary["requests"]
        verdict = "PASSED" if r["passed"] else "FAILED"
        lines.append(
            f"{r['suite']:<16} {verdict:<7} {requests['total']:>9} "
            f"{_fmt(requests['error_ratio']):>7} {_fmt(requests['p95_ms']):>7}  {headline(summary)}"
        )
        for gate in summary["gates"]:
            if not gate["passed"]:
                sign = "<=" if gate["bound"] == "max" else ">="
                actual = "not measured" if gate["actual"] is None else _fmt(gate["actual"])
                by = (
                    ""
                    if gate.get("missed_by") is None
                    else f", missed by {_fmt(gate['missed_by'])}"
                )
                missed.append(
                    f"  {r['suite']}: {gate['name']} = {actual} (gate {sign} "
                    f"{_fmt(gate['threshold'])}{by}) [{gate['option']} / {gate['env_var']}]"
                )
        if r.get("problem"):
            missed.append(f"  {r['suite']}: {r['problem']}")
    if missed:
        lines += ["", "missed gates and problems:", *missed]
    else:
        lines += ["", "all gates passed"]
    lines.append(f"reports: {reports}/<suite>/report.html, locust_stats.csv, summary.json")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.run",
        description="Run the load suites headless and summarize their SLO gates.",
        epilog="Arguments after -- go to every Locust run (e.g. -- --min-hit-ratio 0.9).",
    )
    parser.add_argument(
        "--suites",
        default=os.environ.get("LOAD_SUITES", " ".join(DEFAULT_SUITES)),
        help="suites, space- or comma-separated (default: the three suites)",
    )
    parser.add_argument(
        "--time",
        default=os.environ.get("LOAD_TIME", "20s"),
        help="run time per suite, Locust syntax (default 20s)",
    )
    parser.add_argument(
        "--users",
        type=int,
        default=int(os.environ.get("LOAD_USERS") or 0),
        help="users per suite (default: each suite's own)",
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("LOAD_HOST", ""),
        help="the gateway URL (default: the local stack's)",
    )
    parser.add_argument(
        "--stack-file", default=os.environ.get("LOAD_STACK_FILE", DEFAULT_STACK_FILE)
    )
    parser.add_argument(
        "--reports",
        default=os.environ.get("LOAD_REPORTS", "reports/load"),
        help="reports directory (default reports/load)",
    )
    return parser


if __name__ == "__main__":
    raise SystemExit(main())

"""`make demo`: the main job end to end on a laptop.

Starts the local stack of an environment (prod: the 3x2 cluster and the four services),
runs the smoke suite, runs the three load suites for a short time, prints one summary table
(each SLO with its figure and verdict), writes one HTML report with plots, and stops the
stack unless asked to keep it. Ctrl-C at any point stops everything it started.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from courseredis.environments import ENVIRONMENTS, REPO_ROOT
from courseredis.local import cli as local_cli
from courseredis.stack_file import stack_file_path

LOAD_SUITES = ("rate_limiting", "lock_contention", "cache_hit_ratio")
# The smoke run's pytest flags (`make smoke` runs `python -m smoke`, which adds them): the
# plugins of the other suites stay out of the smoke run.
SMOKE_PYTEST_FLAGS = (
    "-p",
    "no:cacheprovider",
    "-p",
    "no:locust",
    "-p",
    "no:schemathesis",
    "-p",
    "no:hypothesispytest",
)


@dataclass
class Step:
    name: str
    passed: bool
    seconds: float
    detail: str = ""


@dataclass
class DemoRun:
    env: str
    reports: Path
    steps: list[Step] = field(default_factory=list)
    smoke: dict[str, int] = field(default_factory=dict)
    load: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(step.passed for step in self.steps)


def say(message: str) -> None:
    print(message, flush=True)


def banner(number: int, total: int, text: str) -> None:
    say(f"\n==> [{number}/{total}] {text}")


def run_smoke(run: DemoRun, root: Path) -> Step:
    junit = run.reports / "smoke.xml"
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "smoke",
            "-q",
            *SMOKE_PYTEST_FLAGS,
            f"--junitxml={junit}",
            "--stack-json",
            str(stack_file_path(root)),
        ],
        cwd=REPO_ROOT,
        check=False,
    )
    run.smoke = junit_counts(junit)
    counts = ", ".join(f"{v} {k}" for k, v in run.smoke.items())
    return Step("smoke suite", result.returncode == 0, time.monotonic() - started, counts)


def junit_counts(path: Path) -> dict[str, int]:
    if not path.exists():
        return {}
    suite = ElementTree.parse(path).getroot()
    if suite.tag == "testsuites":
        suite = suite[0]
    total = int(suite.get("tests", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    skipped = int(suite.get("skipped", 0))
    return {"passed": total - failed - skipped, "failed": failed, "skipped": skipped}


def run_load(run: DemoRun, root: Path, load_time: str) -> Step:
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.run",
            "--time",
            load_time,
            "--suites",
            ",".join(LOAD_SUITES),
            "--reports",
            str(run.reports / "load"),
            "--stack-file",
            str(stack_file_path(root)),
        ],
        cwd=REPO_ROOT,
        check=False,
    )
    for suite in LOAD_SUITES:
        path = run.reports / "load" / suite / "summary.json"
        if path.exists():
            run.load[suite] = json.loads(path.read_text())
    failed = [s for s, summary in run.load.items() if not summary.get("passed")]
    detail = f"gates missed in {', '.join(failed)}" if failed else "all gates met"
    return Step("load suites", result.returncode == 0, time.monotonic() - started, detail)


# --- the summary table ----------------------------------------------------------------------


def slo_rows(run: DemoRun) -> list[tuple[str, str, str, str]]:
    """(suite, SLO, figure, verdict) for every gate of every suite."""
    rows = []
    for suite, summary in run.load.items():
        for gate in summary.get("gates", []):
            sign = "<=" if gate["bound"] == "max" else ">="
            actual = "-" if gate["actual"] is None else _fmt(gate["actual"])
            verdict = "ok" if gate["passed"] else f"MISSED by {_fmt(gate['missed_by'])}"
            rows.append(
                (suite, f"{gate['name']} {sign} {_fmt(gate['threshold'])}", actual, verdict)
            )
    return rows


def highlights(run: DemoRun) -> list[tuple[str, str]]:
    """The figures users ask for first, when the suites reported them."""
    out = []
    cache = run.load.get("cache_hit_ratio", {}).get("figures", {}).get("hit_ratio", {})
    if cache:
        out.append(
            (
                "cache hit ratio: clients / server / ideal",
                " / ".join(_fmt(cache.get(k)) for k in ("observed", "server", "ideal")),
            )
        )
    for suite, summary in run.load.items():
        for gate in summary.get("gates", []):
            if gate["name"] in ("admitted_over_limit", "double_enrollments"):
                out.append((f"{gate['name']} ({suite})", _fmt(gate["actual"])))
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_table(run: DemoRun) -> str:
    lines = [f"course-redis demo: {run.env} — {'PASSED' if run.passed else 'FAILED'}", ""]
    for step in run.steps:
        mark = "ok  " if step.passed else "FAIL"
        lines.append(f"  {mark} {step.name:<14} {step.seconds:6.1f} s  {step.detail}")
    lines.append("")
    rows = slo_rows(run)
    if rows:
        width = max(len(r[1]) for r in rows)
        lines.append(f"  {'suite':<16} {'SLO':<{width}} {'figure':>10}  verdict")
        for suite, slo, figure, verdict in rows:
            lines.append(f"  {suite:<16} {slo:<{width}} {figure:>10}  {verdict}")
        lines.append("")
    for name, value in highlights(run):
        lines.append(f"  {name}: {value}")
    return "\n".join(lines)


# --- the HTML report --------------------------------------------------------------------------


def _history(run: DemoRun, suite: str) -> list[dict[str, str]]:
    directory = run.reports / "load" / suite
    files = sorted(directory.glob("*_stats_history.csv"))
    if not files:
        return []
    with files[0].open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row.get("Name") == "Aggregated"]


def _series(rows: list[dict[str, str]], column: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    start = None
    for row in rows:
        try:
            at, value = float(row["Timestamp"]), float(row[column])
        except (KeyError, ValueError):
            continue
        start = at if start is None else start
        xs.append(at - start)
        ys.append(value)
    return xs, ys


def plots(run: DemoRun) -> list[tuple[str, str]]:
    """(title, PNG as base64) per plot: hit ratio and 429s over time, then latency
    percentiles and throughput per suite."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = []
    cache = run.load.get("cache_hit_ratio", {}).get("figures", {}).get("over_time") or []
    limits = run.load.get("rate_limiting", {}).get("figures", {}).get("over_time") or []
    if cache or limits:
        figure, (hits, refused) = plt.subplots(1, 2, figsize=(11, 3.2))
        if cache:
            hits.plot([t for t, _, _ in cache], [h / n if n else 0 for _, n, h in cache])
            ideal = run.load["cache_hit_ratio"]["figures"]["hit_ratio"].get("ideal")
            if ideal is not None:
                hits.axhline(ideal, linestyle="--", color="grey", label=f"ideal {ideal:.3f}")
                hits.legend()
        hits.set(title="cache hit ratio (X-Cache)", xlabel="s", ylim=(0, 1.02))
        if limits:
            refused.bar([t for t, _, _ in limits], [r for _, _, r in limits], label="429")
            refused.plot([t for t, _, _ in limits], [n for _, n, _ in limits], label="requests")
            refused.legend()
        refused.set(title="rate limiting: 429s per second", xlabel="s")
        figure.tight_layout()
        images.append(("cache hit ratio and 429s over time", _png(figure, plt)))
    for suite in run.load:
        rows = _history(run, suite)
        if not rows:
            continue
        figure, (latency, rates) = plt.subplots(1, 2, figsize=(11, 3.2))
        for column in ("50%", "95%", "99%"):
            xs, ys = _series(rows, column)
            latency.plot(xs, ys, label=f"p{column.rstrip('%')}")
        latency.set(title=f"{suite}: latency", xlabel="s", ylabel="ms")
        latency.legend()
        for column, label in (("Requests/s", "requests/s"), ("Failures/s", "refused or failed/s")):
            xs, ys = _series(rows, column)
            rates.plot(xs, ys, label=label)
        rates.set(title=f"{suite}: throughput", xlabel="s", ylabel="per second")
        rates.legend()
        figure.tight_layout()
        images.append((suite, _png(figure, plt)))
    return images


def _png(figure: Any, plt: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def write_html(run: DemoRun) -> Path:
    path = run.reports / "index.html"
    esc = html.escape
    verdict = "<span class=ok>passed</span>" if run.passed else "<span class=fail>FAILED</span>"
    parts = [
        "<!doctype html><meta charset='utf-8'><title>course-redis demo</title>",
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
        "td,th{padding:.2em .8em;text-align:left}tr:nth-child(even){background:#f4f4f4}"
        ".ok{color:#075}.fail{color:#b00}</style>",
        f"<h1>course-redis demo: {esc(run.env)} {verdict}</h1>",
        f"<p>{esc(datetime.now(UTC).isoformat(timespec='seconds'))}</p>",
        "<h2>Steps</h2><table><tr><th>step</th><th>result</th><th>time</th><th></th></tr>",
    ]
    for step in run.steps:
        css = "ok" if step.passed else "fail"
        parts.append(
            f"<tr><td>{esc(step.name)}</td><td class={css}>{'ok' if step.passed else 'FAIL'}</td>"
            f"<td>{step.seconds:.1f} s</td><td>{esc(step.detail)}</td></tr>"
        )
    parts.append("</table><h2>Service level objectives</h2>")
    parts.append("<table><tr><th>suite</th><th>SLO</th><th>figure</th><th>verdict</th></tr>")
    for suite, slo, figure, verdict in slo_rows(run):
        css = "ok" if verdict == "ok" else "fail"
        parts.append(
            f"<tr><td>{esc(suite)}</td><td>{esc(slo)}</td><td>{esc(figure)}</td>"
            f"<td class={css}>{esc(verdict)}</td></tr>"
        )
    parts.append("</table><ul>")
    parts += [f"<li>{esc(name)}: <b>{esc(value)}</b></li>" for name, value in highlights(run)]
    parts.append("</ul><h2>Over time</h2>")
    for title, image in plots(run):
        parts.append(
            f"<h3>{esc(title)}</h3><img alt='{esc(title)}' src='data:image/png;base64,{image}'>"
        )
    parts.append(
        "<p>Locust's own reports: "
        + ", ".join(f"<a href='load/{s}/report.html'>{s}</a>" for s in run.load)
        + "</p>"
    )
    path.write_text("\n".join(parts))
    return path


# --- the run ------------------------------------------------------------------------------------


def demo(env: str, *, keep: bool, load_time: str, root: Path, reports: Path) -> int:
    reports.mkdir(parents=True, exist_ok=True)
    run = DemoRun(env, reports)
    total = 5
    stack_started = False
    try:
        banner(1, total, f"starting the {env} stack (Redis, database, four services)")
        started = time.monotonic()
        code = local_cli.up(root, env, REPO_ROOT)
        stack_started = code == 0
        run.steps.append(Step("stack up", code == 0, time.monotonic() - started))
        if code != 0:
            return 1
        banner(2, total, "smoke suite: topology, configuration, access, keys and TTLs")
        run.steps.append(run_smoke(run, root))
        banner(3, total, f"load suites, {load_time} each: rate limiting, lock contention, cache")
        run.steps.append(run_load(run, root, load_time))
        banner(4, total, "report")
        say(render_table(run))
        path = write_html(run)
        say(f"\nHTML report: {path}")
        return 0 if run.passed else 1
    except KeyboardInterrupt:
        say("\ninterrupted: stopping what the demo started")
        return 130
    finally:
        if stack_started and not keep:
            banner(5, total, "stopping the stack (KEEP=1 keeps it)")
            local_cli.down(root)
        elif stack_started:
            banner(5, total, "keeping the stack: `make down` stops it")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m courseredis.demo", description=__doc__)
    parser.add_argument("--env", default="prod", choices=ENVIRONMENTS)
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument("--load-time", default=os.environ.get("LOAD_TIME", "20s"))
    parser.add_argument("--root", default=".", help="directory whose .local/ holds the stack")
    parser.add_argument("--reports", default="reports/demo")
    args = parser.parse_args(argv)
    return demo(
        args.env,
        keep=args.keep,
        load_time=args.load_time,
        root=Path(args.root).resolve(),
        reports=Path(args.reports).resolve(),
    )


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m courseredis.ops.chaos`: run the scenarios, write the summary, print the table.

Each scenario starts its own local stack under `--work` (default `.local/chaos/<scenario>`)
and stops it before the next one starts; a scenario's directory (Redis logs, service logs)
is removed when it passes and kept when it fails. `reports/chaos/summary.json` is rewritten
after every scenario, so an interrupted run still leaves what it measured. Exit status 0
when every scenario passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from courseredis.ops.chaos import access, failover, hostile, memory, outage, restart, upgrade
from courseredis.ops.chaos.report import ScenarioResult, summary_document, table, write_summary


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[Path, Any], ScenarioResult]
    full: Callable[[], Any]
    short: Callable[[], Any]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(failover.NAME, failover.run, failover.FailoverOptions, failover.FailoverOptions.short),
    Scenario(outage.NAME, outage.run, outage.OutageOptions, outage.OutageOptions.short),
    Scenario(restart.NAME, restart.run, restart.RestartOptions, restart.RestartOptions.short),
    Scenario(memory.NAME, memory.run, memory.MemoryOptions, memory.MemoryOptions.short),
    Scenario(hostile.NAME, hostile.run, hostile.HostileOptions, hostile.HostileOptions.short),
    Scenario(access.NAME, access.run, access.AccessOptions, access.AccessOptions.short),
    Scenario(upgrade.NAME, upgrade.run, upgrade.UpgradeOptions, upgrade.UpgradeOptions.short),
)
NAMES = tuple(s.name for s in SCENARIOS)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    chosen = [s for s in SCENARIOS if s.name in _selected(args.only)]
    out = Path(args.out) / "summary.json"
    work = Path(args.work)
    started = time.monotonic()
    results: list[ScenarioResult] = []
    for number, scenario in enumerate(chosen, 1):
        print(f"[{number}/{len(chosen)}] {scenario.name} ...", flush=True)
        workdir = work / scenario.name
        options = scenario.short() if args.short else scenario.full()
        result = scenario.run(workdir, options)
        results.append(result)
        write_summary(out, summary_document(results, started))
        verdict = "pass" if result.passed else "FAIL"
        print(f"[{number}/{len(chosen)}] {scenario.name}: {verdict} in {result.duration_s:.1f} s")
        for failure in result.failures():
            print(f"    {failure}")
        if result.passed:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"    logs kept in {workdir}")
    print()
    print(table(results))
    print(f"\n{out} written in {time.monotonic() - started:.0f} s")
    return 0 if results and all(r.passed for r in results) else 1


def _selected(only: str | None) -> set[str]:
    if not only:
        return set(NAMES)
    names = {n.strip() for n in only.split(",") if n.strip()}
    unknown = names - set(NAMES)
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; known: {', '.join(NAMES)}")
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m courseredis.ops.chaos",
        description="Run the chaos scenarios against local stacks they start themselves.",
    )
    parser.add_argument(
        "--only", help=f"comma-separated scenarios (default all: {', '.join(NAMES)})"
    )
    parser.add_argument("--out", default="reports/chaos", help="directory of summary.json")
    parser.add_argument("--work", default=".local/chaos", help="where the stacks run")
    parser.add_argument("--short", action="store_true", help="the short forms (as the tests)")
    return parser


if __name__ == "__main__":
    sys.exit(main())

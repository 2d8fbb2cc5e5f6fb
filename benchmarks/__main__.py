"""`python -m benchmarks [--quick]`: the whole comparison, on a single node and a 3x2 cluster.

Starts both stacks itself (the `dev` and `prod` topologies of the stack files, through
`running_stack`), measures on each with the same connection settings, stops them, and
writes `reports/bench/peers.json` (one entry per operation, topology and API),
`reports/bench/results.json` (machine, memory, request path, contention, targets) and
`reports/bench/results.md` (the tables), and prints the tables.

`--quick` (or BENCH_QUICK=1) runs everything in a few seconds of measuring: the figures
are then only a smoke test of the harness. Benchmarks never fail on a figure: the exit
status says whether the run completed, not whether targets were met.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import contention, memory, micro, native, report, request_path
from benchmarks.measure import FULL, QUICK
from benchmarks.operations import Topology
from courseredis.environments import REPO_ROOT, load_environment
from courseredis.local import LocalStack, running_stack
from courseredis.settings import RedisSettings

SECTIONS = ("micro", "memory", "request", "contention", "native")
TOPOLOGIES: tuple[tuple[str, Topology], ...] = (("dev", "single"), ("prod", "cluster"))


def _settings(stack: LocalStack) -> RedisSettings:
    return RedisSettings.for_nodes(
        stack.nodes,
        cluster=stack.mode == "cluster",
        username=stack.username,
        password=stack.password,
    )


_T0 = time.monotonic()


def _say(message: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("BENCH_QUICK", "") not in ("", "0"),
        help="a few seconds of measuring, to check the harness (also BENCH_QUICK=1)",
    )
    parser.add_argument(
        "--out", default=str(REPO_ROOT / "reports" / "bench"), help="where the reports go"
    )
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}"
    )
    parser.add_argument("--only", default=None, help="micro: operations whose name contains this")
    parser.add_argument(
        "--topologies", default="single,cluster", help="comma-separated subset of single,cluster"
    )
    args = parser.parse_args(argv)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    wanted = {t.strip() for t in args.topologies.split(",") if t.strip()}
    unknown = (sections - set(SECTIONS)) | (wanted - {"single", "cluster"})
    if unknown:
        parser.error(f"unknown sections or topologies: {sorted(unknown)}")
    timing = QUICK if args.quick else FULL
    requests = 60 if args.quick else 1500
    zipf_reads, zipf_courses = (1000, 200) if args.quick else (20_000, 2000)
    out = Path(args.out)

    started = time.monotonic()
    load_at_start = os.getloadavg()
    entries: list[micro.Entry] = []
    figures: list[memory.MemoryFigure] = []
    paths: list[request_path.RequestPath] = []
    contended: list[tuple[contention.Stampede, contention.ZipfTrace]] = []
    pairs: list[native.Pair] = []
    not_run: list[str] = []
    with tempfile.TemporaryDirectory(prefix="courseredis-bench-") as tmp:
        for env, topology in TOPOLOGIES:
            if topology not in wanted:
                continue
            _say(f"starting the {env} Redis ({topology}) ...")
            with running_stack(load_environment(env).redis, Path(tmp) / env, env=env) as stack:
                settings = _settings(stack)
                if "micro" in sections:
                    _say(f"{topology}: operations, sync (one client) ...")
                    entries += micro.run_sync(settings, topology, timing, args.only)
                    _say(f"{topology}: operations, asyncio ({micro.CONCURRENCY} tasks) ...")
                    entries += micro.run_async(settings, topology, timing, args.only)
                if "memory" in sections:
                    _say(f"{topology}: memory per rate-limit key ...")
                    from courseredis.connection import create_client

                    client = create_client(settings)
                    try:
                        figures += memory.run(client, topology)
                    finally:
                        client.close()
                if "request" in sections:
                    _say(f"{topology}: the request path (services started) ...")
                    paths.append(
                        request_path.run(
                            stack, topology, Path(tmp) / f"services-{env}", requests=requests
                        )
                    )
                if "native" in sections and topology == "single":
                    _say(f"{topology}: native primitives against the scripts ...")
                    from courseredis.connection import create_client

                    client = create_client(settings)
                    try:
                        pairs += native.measure(client, timing)
                    finally:
                        client.close()
                if "contention" in sections:
                    _say(f"{topology}: the cache under contention (4 processes) ...")
                    contended.append(
                        contention.run(settings, topology, reads=zipf_reads, courses=zipf_courses)
                    )
        if "native" in sections:
            newer, not_run = native.newer_servers(timing, _say)
            pairs += newer
    elapsed = time.monotonic() - started

    results: dict[str, Any] = {
        "command": "make bench" + (" BENCH_QUICK=1" if args.quick else ""),
        "quick": args.quick,
        "seconds": round(elapsed, 1),
        "machine": report.machine(load_at_start),
        "timing": {"rounds": timing.rounds, "slice_s": timing.slice_s},
        "memory": [f.to_json() for f in figures],
        "request_path": [p.to_json() for p in paths],
        "contention": [{"stampede": s.to_json(), "zipf": z.to_json()} for s, z in contended],
        "native": {"pairs": [p.to_json() for p in pairs], "not_run": not_run},
    }
    report.write_json(out / "peers.json", [e.to_json() for e in entries])
    report.write_json(out / "results.json", results)
    tables = [
        (
            "Operations (ratio to PING on the same client and API)",
            report.MICRO_HEADER,
            report.micro_rows(entries),
        ),
        ("Memory", report.MEMORY_HEADER, report.memory_rows(figures)),
        ("Request path", report.REQUEST_HEADER, report.request_rows(paths)),
        ("Contention", report.CONTENTION_HEADER, report.contention_rows(contended)),
        (
            "Native primitives against the scripts (sync, single node)",
            native.HEADER,
            [p.row() for p in pairs] + [[line, "", "", "", "", ""] for line in not_run],
        ),
    ]
    markdown = [f"Machine: {results['machine']}; {elapsed:.0f} s", ""]
    for title, header, rows in tables:
        if not rows:
            continue
        print(f"\n{title}\n{report.text_table(header, rows)}")
        markdown += [f"### {title}", "", report.markdown_table(header, rows), ""]
    (out / "results.md").write_text("\n".join(markdown))
    _say(f"wrote {out / 'peers.json'}, results.json and results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The results: `peers.json` (one entry per operation, topology and API), `results.json`
(everything else: machine, memory, request path, contention, targets) and the tables, as
text for the terminal and as Markdown for docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from benchmarks.contention import Stampede, ZipfTrace
from benchmarks.memory import MemoryFigure
from benchmarks.micro import Entry
from benchmarks.request_path import RequestPath


def machine(load_at_start: tuple[float, float, float] | None = None) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        server = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        server = "unknown"
    load = os.getloadavg()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "redis_py": redis.__version__,
        "redis_server": server,
        "load_average_at_start": [round(x, 2) for x in load_at_start or ()],
        "load_average_at_end": [round(x, 2) for x in load],
    }


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _mark(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "MISSED")


def micro_rows(entries: Sequence[Entry]) -> list[list[str]]:
    """One row per operation and API; the single node and the cluster side by side."""
    by_key: dict[tuple[str, str], dict[str, Entry]] = {}
    order: list[tuple[str, str]] = []
    for entry in entries:
        key = (entry.name, entry.api)
        if key not in by_key:
            by_key[key] = {}
            order.append(key)
        by_key[key][entry.topology] = entry
    rows = []
    for name, api in order:
        found = by_key[(name, api)]
        any_entry = next(iter(found.values()))
        cells = [name, api, str(any_entry.round_trips)]
        for topology in ("single", "cluster"):
            there = found.get(topology)
            if there is None:
                cells += ["", "", ""]
                continue
            target = "" if there.target is None else f">= {there.target:.2f} {_mark(there.met)}"
            cells += [f"{there.ops_per_s:,.0f}", f"{there.ratio_to_ping:.3f}", target]
        rows.append(cells)
    return rows


MICRO_HEADER = [
    "operation",
    "api",
    "RT",
    "single ops/s",
    "single xPING",
    "single target",
    "cluster ops/s",
    "cluster xPING",
    "cluster target",
]


def memory_rows(figures: Sequence[MemoryFigure]) -> list[list[str]]:
    cells: dict[tuple[str, str], dict[str, int]] = {}
    for figure in figures:
        cells.setdefault((figure.name, figure.limit), {})[figure.topology] = figure.bytes_per_key
    return [
        [name, limit, str(values.get("single", "")), str(values.get("cluster", ""))]
        for (name, limit), values in cells.items()
    ]


MEMORY_HEADER = ["rate-limit key at its limit", "limit", "single bytes", "cluster bytes"]


def request_rows(paths: Sequence[RequestPath]) -> list[list[str]]:
    rows = []
    for path in paths:
        gateway = ", ".join(f"{k} {v:g}" for k, v in path.gateway_commands_per_request.items())
        rows.append(
            [
                path.topology,
                str(path.requests * 2),
                f"{path.round_trips_per_request:.2f} (max {path.max_round_trips}) "
                + _mark(path.max_round_trips <= 1),
                f"{path.commands_per_batch:.1f} cmds, {path.nodes_per_batch:.2f} nodes",
                gateway,
                f"{path.direct_rps:,.0f}",
                f"{path.gateway_rps:,.0f}",
                f"{path.throughput_ratio:.2f} " + _mark(path.throughput_ratio >= 0.5),
            ]
        )
    return rows


REQUEST_HEADER = [
    "topology",
    "requests",
    "round trips/request",
    "per batch",
    "gateway's commands/request",
    "direct rps",
    "gateway rps",
    "gateway/direct",
]


def contention_rows(results: Sequence[tuple[Stampede, ZipfTrace]]) -> list[list[str]]:
    rows = []
    for stampede, zipf in results:
        rows.append(
            [
                stampede.topology,
                f"{stampede.readers} readers / {stampede.processes} processes: "
                f"{stampede.loads} load(s) " + _mark(stampede.loads == 1),
                f"{zipf.reads} reads of {zipf.courses}: hit ratio {zipf.achieved:.4f} / "
                f"ideal {zipf.ideal:.4f} = {zipf.achieved / zipf.ideal:.4f} "
                + _mark(zipf.achieved / zipf.ideal >= 0.97),
            ]
        )
    return rows


CONTENTION_HEADER = ["topology", "stampede (one course, all miss at once)", "Zipf read trace"]


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)

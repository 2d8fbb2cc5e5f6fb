"""`make bench` in its short mode runs end to end and writes well-formed reports.

The figures of a short run mean nothing (a few milliseconds per operation, on a machine
doing other things): only the shape of the reports is checked, never a speed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.operations import all_operations

REPO = Path(__file__).resolve().parents[2]
OURS = re.compile(r"ours\.[a-z]+\.[a-z_]+(\.asyncio)?")


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "BENCH_QUICK": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Operations" in done.stdout  # the printed table
    return out


@pytest.mark.timeout(300)
def test_peers_json_has_one_entry_per_operation_topology_and_api(reports):
    entries = json.loads((reports / "peers.json").read_text())
    assert isinstance(entries, list)
    seen = set()
    for entry in entries:
        assert {"name", "topology", "ops_per_s", "ratio_to_ping"} <= set(entry)
        assert entry["topology"] in ("single", "cluster")
        assert isinstance(entry["ops_per_s"], float) and entry["ops_per_s"] > 0
        assert isinstance(entry["ratio_to_ping"], float) and entry["ratio_to_ping"] > 0
        if entry["name"].startswith("ours."):
            assert OURS.fullmatch(entry["name"]), entry["name"]
        key = (entry["name"], entry["topology"])
        assert key not in seen, key
        seen.add(key)
    expected = set()
    for op in all_operations():
        if op.sync:
            expected.add(op.name)
        if op.aio:
            expected.add(op.name + ".asyncio")
    for topology in ("single", "cluster"):
        assert {name for name, where in seen if where == topology} == expected
    pings = [e for e in entries if e["name"] in ("raw.PING", "raw.PING.asyncio")]
    assert len(pings) == 4 and all(e["ratio_to_ping"] == 1.0 for e in pings)
    peers = {e["name"].split(".")[0] for e in entries}
    assert {"ours", "raw", "limits", "redis-py", "python-redis-lock", "pottery"} <= peers


@pytest.mark.timeout(300)
def test_results_json_covers_memory_request_path_and_contention(reports):
    results = json.loads((reports / "results.json").read_text())
    assert results["quick"] is True
    memory = {(m["name"], m["topology"], m["limit"]) for m in results["memory"]}
    for topology in ("single", "cluster"):
        for limit in ("100/min", "1000/h"):
            for name in (
                "ours.ratelimit.sliding_log",
                "ours.ratelimit.sliding_counter",
                "ours.ratelimit.fixed_window",
                "ours.ratelimit.gcra",
                "limits.moving_window",
            ):
                assert (name, topology, limit) in memory
    assert all(m["bytes_per_key"] > 0 for m in results["memory"])
    paths = {p["topology"]: p for p in results["request_path"]}
    assert set(paths) == {"single", "cluster"}
    for path in paths.values():
        assert path["gateway_rps"] > 0 and path["direct_rps"] > 0
        assert path["round_trips_per_request"] > 0
        assert path["gateway_statuses"] and all(
            status.startswith("200") for status in path["gateway_statuses"]
        )
    contended = {c["stampede"]["topology"]: c for c in results["contention"]}
    assert set(contended) == {"single", "cluster"}
    # Native against Lua: the machine's engine always; the newer servers in podman, or a
    # line saying why not.
    native = results["native"]
    pairs = {(p["server"], p["operation"]) for p in native["pairs"]}
    assert len(pairs) + 2 * len(native["not_run"]) >= 6
    assert all(
        p["lua_ratio_to_ping"] > 0 and p["native_ratio_to_ping"] > 0 for p in native["pairs"]
    )
    for c in contended.values():
        assert c["stampede"]["loads"] >= 1
        assert 0 < c["zipf"]["ideal_hit_ratio"] <= 1
    assert (reports / "results.md").read_text().count("###") == 5

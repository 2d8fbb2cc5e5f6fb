"""The supervisor acts only on processes that are ours, and stops them for good."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from courseredis.local import supervisor

MARKER = "supervisor-test-marker"
# A process that ignores SIGTERM, as a stuck one does: only SIGKILL ends it.
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"


def ours(argv: list[str]) -> bool:
    return MARKER in argv


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def start(spawn: list[subprocess.Popen[bytes]], code: str = "import time; time.sleep(60)"):
    process = subprocess.Popen([sys.executable, "-c", code, MARKER])
    spawn.append(process)
    return process


def test_a_process_is_found_only_when_its_command_line_is_ours(spawn):
    pid = start(spawn).pid
    assert supervisor.find(pid, ours) is not None
    assert supervisor.find(pid, lambda argv: "redis-server" in argv) is None


def test_stop_ends_with_sigterm_and_falls_back_to_sigkill(spawn):
    polite = supervisor.find(start(spawn).pid, ours)
    stubborn = supervisor.find(start(spawn, STUBBORN).pid, ours)
    assert polite and stubborn
    assert supervisor.stop([polite, stubborn], grace_s=1.0) == []
    # The supervisor reaped them (its own children), so Popen sees no exit status.
    assert not supervisor.running(polite) and not supervisor.running(stubborn)
    assert spawn[0].poll() is not None and spawn[1].poll() is not None


def test_an_exited_process_is_neither_found_nor_signalled(spawn):
    process = start(spawn, "pass")
    process.wait()
    assert supervisor.find(process.pid, ours) is None


def test_a_zombie_counts_as_exited_and_is_reaped(spawn, tmp_path):
    # It runs until told to exit, so it is found alive first, then left a zombie (nobody
    # has waited for it) when it exits.
    go = tmp_path / "go"
    waits = f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)"
    process = start(spawn, waits)
    found = supervisor.find(process.pid, ours)
    assert found is not None
    go.touch()
    supervisor.wait_exited([found], timeout_s=5)
    assert not supervisor.running(found)
    assert not psutil.pid_exists(process.pid) or process.poll() is not None


def test_a_process_just_spawned_is_recognised_once_its_exec_completes(spawn):
    # Right after the spawn the command line can still be empty; it is not someone else's.
    assert all(supervisor.find(start(spawn).pid, ours) is not None for _ in range(5))


def test_a_held_process_that_has_exited_is_no_longer_signalled(spawn):
    process = start(spawn)
    found = supervisor.find(process.pid, ours)
    assert found is not None
    process.kill()
    process.wait()
    assert not supervisor.running(found)
    supervisor.signal_all([found], signal.SIGTERM)  # psutil refuses: nothing raised
    assert supervisor.stop([found], grace_s=0.1) == []

"""Finding, watching and stopping the processes the local stack started, and only those.

The stack records PIDs (the nodes' pidfiles, the services in stack.json) and acts on them
later, maybe from another `courseredis-local` run. A PID alone is not enough: once our
process has exited the kernel may give the number to any other. So a PID is taken as ours
only while its command line says so (`redis-server ...:<port>`, `courseredis.services`),
and from then on we hold a `psutil.Process`, which remembers the start time and refuses to
signal a PID that has since been reused. Zombies count as exited: they have.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Sequence

import psutil

from courseredis.waiting import TimedOut, wait_until

# Whether a command line (argv) is one of ours.
Ours = Callable[[list[str]], bool]
_EXEC_WAIT_S = 1.0


def find(pid: int, ours: Ours) -> psutil.Process | None:
    """The live process `pid` if its command line is one of ours; None otherwise."""
    try:
        process = psutil.Process(pid)
        if _exited(process):
            return None
        return process if ours(_argv(process)) else None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _argv(process: psutil.Process) -> list[str]:
    # A process just spawned shows an empty command line until its exec completes: wait
    # for it rather than take a service we have just started for someone else's process.
    def argv() -> list[str] | None:
        return process.cmdline() or (None if running(process) else [])

    try:
        return wait_until(argv, timeout_s=_EXEC_WAIT_S, what=f"PID {process.pid}'s exec")
    except TimedOut:
        return []


def running(process: psutil.Process) -> bool:
    """Whether the process we found is still running (the same one: psutil checks)."""
    try:
        return process.is_running() and not _exited(process)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _exited(process: psutil.Process) -> bool:
    if process.status() != psutil.STATUS_ZOMBIE:
        return False
    # Our own child stays a zombie until we wait for it; reap it so it leaves the table.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(process.pid, os.WNOHANG)
    return True


def wait_exited(processes: Sequence[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait up to `timeout_s` until all have exited; return those still running."""

    def still() -> list[psutil.Process]:
        return [p for p in processes if running(p)]

    with contextlib.suppress(TimedOut):
        wait_until(lambda: not still(), timeout_s=timeout_s, what="the processes to exit")
    return still()


def signal_all(processes: Sequence[psutil.Process], sig: signal.Signals) -> None:
    for process in processes:
        # Gone since the check (or its PID reused, which psutil refuses to signal).
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            process.send_signal(sig)


def stop(processes: Sequence[psutil.Process], *, grace_s: float) -> list[psutil.Process]:
    """SIGTERM, then SIGKILL what is still running after `grace_s`; return any survivors.

    Each signal gets `grace_s` to take effect, SIGKILL included: a process in
    uninterruptible sleep dies only when it wakes.
    """
    alive = [p for p in processes if running(p)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not alive:
            break
        signal_all(alive, sig)
        alive = wait_exited(alive, grace_s)
    return alive

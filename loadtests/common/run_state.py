"""The run's shared state in this process: accounts, sessions, the collector, the seed.

Set once per process when the test starts (`set_current`, from the suite's `test_start`
listener), then read by users (`state()`) and by the report (`current()`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from locust.env import Environment

from courseredis.stack_file import StackFile
from loadtests.analysis import Samples
from loadtests.common.addresses import ClientAddresses
from loadtests.common.collector import Collector
from loadtests.common.options import option
from loadtests.common.sessions import SharedSession
from loadtests.target import Account, Accounts, TargetError

if TYPE_CHECKING:
    from loadtests.common.suite import Suite


@dataclass
class RunState:
    environment: Environment
    suite: Suite
    rng: random.Random
    seed: int
    stack: StackFile | None
    addresses: ClientAddresses
    collector: Collector = field(default_factory=Collector)
    accounts: Accounts | None = None
    sessions: dict[str, SharedSession] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    metrics_before: dict[str, Samples] = field(default_factory=dict)
    _next_student: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    def students(self) -> tuple[Account, ...]:
        if self.accounts is None:
            raise TargetError("no accounts loaded")
        return self.accounts.students

    def next_student(self, exclude: Sequence[str] = ()) -> Account:
        """Students in turn, from an offset per worker so workers spread over them."""
        pool = [s for s in self.students() if s.username not in exclude]
        if not pool:
            raise TargetError("no student account left for this user")
        offset = max(0, getattr(self.environment.runner, "worker_index", 0)) * 7
        account = pool[(offset + self._next_student) % len(pool)]
        self._next_student += 1
        return account

    def session(self, account: Account, ip: str | None) -> SharedSession:
        existing = self.sessions.get(account.username)
        if existing is None:
            existing = SharedSession(
                account, ip, float(option(self.environment, "refresh_after_s"))
            )
            self.sessions[account.username] = existing
        return existing

    def admin(self) -> Account:
        if self.accounts is None or self.accounts.admin is None:
            raise TargetError("no admin account: the credentials need an `admin` entry")
        return self.accounts.admin


_STATE: RunState | None = None


def set_current(run: RunState) -> None:
    """Make `run` this process's run (the suite's test_start listener does)."""
    global _STATE
    _STATE = run


def current() -> RunState | None:
    """This process's run, or None before the test starts."""
    return _STATE


def state() -> RunState:
    if _STATE is None:
        raise TargetError("the run has not started (no test_start yet)")
    return _STATE

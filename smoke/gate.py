"""The smoke suite as a post-deploy gate: a skipped flow or key check fails the run.

A skipped check was not done. In a deployed run (a target named by options or `SMOKE_*`
variables, not the local stack file) a skipped flow or key check means the run was not given
what it needs (most often no student account), so the run exits non-zero and names each
skipped check with its reason; `--allow-skips` turns that into a report only.

The local stack gates too when it has a student account (`make up` records the demo
accounts in stack.json, so its flows always run: a skip there means something is broken).
A local stack.json without a student account cannot drive the flows at all, so it does not
gate (and says so).

What gates: the flow and key checks, that is the tests of `test_keys.py` and
`test_keyspace.py` and any test that uses the `flows` or `audit` fixture. Other skips (host
checks without a testinfra host, live logins without service passwords, topology checks
that do not apply) are listed by pytest as usual and do not gate.

Some flow or key checks depend on the environment's state, not on what was given: the
enrollment's idempotency marker can only be read within 24 h of the smoke student's first
enrollment (the API cannot take an enrollment back, so later runs get `409`). Such a skip
is raised with `skip_for_state`, named in the gate's report and does not gate: otherwise
every run a day after the first would fail and `--allow-skips` would become the norm.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import NoReturn

import pytest

from smoke.target import Target

ALLOW_SKIPS_FLAG = "--allow-skips"
# The modules of the flow and key checks, and the fixtures that make a test one.
GATED_MODULES = frozenset({"test_keys.py", "test_keyspace.py"})
GATED_FIXTURES = frozenset({"flows", "audit"})
# The user property a test sets (then skips) when its skip is due to the environment's state.
STATE_PROPERTY = "smoke_skip"
STATE_VALUE = "state"


def is_flow_or_key_check(nodeid: str, fixturenames: Iterable[str]) -> bool:
    """A test of the flows or of the keys: in their modules or using their fixtures."""
    module = PurePosixPath(nodeid.split("::", 1)[0]).name
    return module in GATED_MODULES or not GATED_FIXTURES.isdisjoint(fixturenames)


def skip_for_state(node: pytest.Item, reason: str) -> NoReturn:
    """Skip a flow or key check for the environment's state (not for what was not given):
    reported by the gate, never failing it."""
    node.user_properties.append((STATE_PROPERTY, STATE_VALUE))
    pytest.skip(reason)


def applies(target: Target) -> tuple[bool, str]:
    """Whether skipped flow and key checks fail this run, and why (for the report)."""
    if not target.local:
        return True, "a deployed target (given by options or SMOKE_* variables)"
    if target.student is not None:
        return True, "the local stack, with a student account"
    return False, (
        "the local stack without a student account: its flows cannot run, so skipped flow "
        "and key checks do not fail the run"
    )


@dataclass(frozen=True)
class Skip:
    """One skipped flow or key check."""

    check: str  # the pytest node id
    reason: str
    state: bool  # skipped for the environment's state: never gates


def skip_reason(longrepr: object) -> str:
    """The reason of a skip report (`(path, line, "Skipped: reason")`)."""
    whole = isinstance(longrepr, tuple) and len(longrepr) == 3
    text = str(longrepr[2]) if isinstance(longrepr, tuple) and whole else str(longrepr)
    return text.removeprefix("Skipped: ")


def verdict(
    skips: Sequence[Skip], *, gating: bool, why: str, allowed: bool
) -> tuple[bool, list[str]]:
    """(whether the run fails, the report's lines): every skipped flow or key check named
    with its reason, grouped by reason."""
    blocking = [s for s in skips if not s.state]
    state = [s for s in skips if s.state]
    fails = gating and not allowed and bool(blocking)
    lines: list[str] = []
    if not skips:
        lines.append(f"every flow and key check ran ({why})")
        return False, lines
    if fails:
        lines.append(
            f"FAILED: {len(blocking)} flow and key check(s) skipped in {why}; give what each "
            f"reason names, or pass {ALLOW_SKIPS_FLAG} to accept a run without them:"
        )
    elif blocking and gating:
        lines.append(
            f"{len(blocking)} flow and key check(s) skipped in {why}, accepted by "
            f"{ALLOW_SKIPS_FLAG}:"
        )
    elif blocking:
        lines.append(f"{len(blocking)} flow and key check(s) skipped, not a gate here: {why}:")
    lines.extend(_grouped(blocking))
    if state:
        lines.append(
            f"{len(state)} flow and key check(s) skipped for the environment's state "
            "(not for what was given; these never fail the run):"
        )
        lines.extend(_grouped(state))
    return fails, lines


def _grouped(skips: Sequence[Skip]) -> list[str]:
    by_reason: dict[str, list[str]] = {}
    for skip in skips:
        by_reason.setdefault(skip.reason, []).append(skip.check)
    lines: list[str] = []
    for reason, checks in by_reason.items():
        lines.append(f"  skipped: {reason}")
        lines.extend(f"    - {check}" for check in checks)
    return lines


class Gate:
    """The pytest plugin (registered by `smoke/conftest.py`): records the skipped flow and
    key checks, fails the run for them where it gates, and reports them in a "smoke gate"
    section of the summary."""

    def __init__(self, target: Target, *, allowed: bool) -> None:
        self.gating, self.why = applies(target)
        self.allowed = allowed
        self.checks: set[str] = set()  # node ids of the selected flow and key checks
        self.skips: list[Skip] = []
        self.fails = False
        self.lines: list[str] = []

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.checks = {
            item.nodeid
            for item in session.items  # after -k / -m deselection
            if is_flow_or_key_check(item.nodeid, getattr(item, "fixturenames", ()))
        }

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail") or report.nodeid not in self.checks:
            return
        state = (STATE_PROPERTY, STATE_VALUE) in report.user_properties
        self.skips.append(Skip(report.nodeid, skip_reason(report.longrepr), state))

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, object, object]:
        """Around the terminal's own: the verdict before its summary (the "smoke gate"
        section), the last line after its counts (which say nothing of the gate)."""
        if self.checks:
            self.fails, self.lines = verdict(
                self.skips, gating=self.gating, why=self.why, allowed=self.allowed
            )
        else:
            self.lines = ["no flow or key check selected"]
        if self.fails and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        result = yield
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if self.fails and reporter is not None:
            blocking = sum(not s.state for s in self.skips)
            reporter.write_sep(
                "=",
                f"smoke gate FAILED: {blocking} flow and key check(s) skipped (named under "
                f'"smoke gate" above; {ALLOW_SKIPS_FLAG} accepts them)',
                red=True,
            )
        return result

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.lines:
            return
        terminalreporter.section("smoke gate", red=self.fails, green=not self.fails)
        for line in self.lines:
            terminalreporter.write_line(line, red=self.fails and line.startswith("FAILED"))

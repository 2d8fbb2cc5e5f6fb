"""The one wait loop: returns what the check found, checks once more at the deadline, and
says what it waited for when it gives up."""

from __future__ import annotations

import asyncio
import time

import pytest

from courseredis.waiting import Deadline, TimedOut, wait_until, wait_until_async


def test_returns_the_first_truthy_value_the_check_gives() -> None:
    answers = iter([None, 0, "", "ready"])
    assert wait_until(lambda: next(answers), timeout_s=5, what="x", interval_s=0) == "ready"


def test_a_time_out_names_what_it_waited_for_and_what_it_saw_last() -> None:
    with pytest.raises(TimedOut, match=r"waiting for node 7 \(last seen: loading\)"):
        wait_until(lambda: None, timeout_s=0.05, what="node 7", last_seen=lambda: "loading")


def test_the_check_runs_once_more_after_the_deadline() -> None:
    calls: list[int] = []

    def check() -> bool:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.1)  # the first check outlasts the whole timeout
            return False
        return True

    # The condition became true while time ran out: that is success, not a time-out.
    assert wait_until(check, timeout_s=0.05, what="x") is True
    assert len(calls) == 2


def test_errors_of_the_check_are_not_swallowed() -> None:
    def check() -> None:
        raise PermissionError("wrong password")

    with pytest.raises(PermissionError):
        wait_until(check, timeout_s=5, what="x")


def test_a_negative_deadline_is_refused() -> None:
    with pytest.raises(ValueError, match="zero or more"):
        Deadline(-1)


def test_the_asyncio_form_waits_without_blocking_the_loop() -> None:
    async def scenario() -> str:
        flag = asyncio.Event()

        async def check() -> str | None:
            return "set" if flag.is_set() else None

        async def setter() -> None:
            await asyncio.sleep(0.05)
            flag.set()

        task = asyncio.ensure_future(setter())
        result = await wait_until_async(check, timeout_s=5, what="the flag")
        await task
        return result

    assert asyncio.run(scenario()) == "set"

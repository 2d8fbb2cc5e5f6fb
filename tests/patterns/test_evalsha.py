"""EVALSHA, then EVAL where the node lacks the script; the node then keeps it."""

from __future__ import annotations

from typing import Any

from courseredis import keys
from courseredis.patterns.evalsha import evalsha, evalsha_async
from courseredis.patterns.lua import load
from tests.support import flush_scripts

COURSE = keys.course(434343)
DELETE_IF = load("compare_and_delete")


def test_a_node_without_the_script_runs_it_by_eval_and_then_has_it(client):
    sent: list[str] = []

    def execute(*args: Any) -> Any:
        sent.append(args[0])
        return client.execute_command(*args)

    client.set(COURSE, "mine", px=10_000)
    flush_scripts(client)
    assert evalsha(execute, DELETE_IF, (COURSE,), ("theirs",)) == 0
    assert evalsha(execute, DELETE_IF, (COURSE,), ("mine",)) == 1
    assert sent == ["EVALSHA", "EVAL", "EVALSHA"]
    assert client.exists(COURSE) == 0


async def test_the_same_holds_for_asyncio(client, aclient):
    sent: list[str] = []

    async def execute(*args: Any) -> Any:
        sent.append(args[0])
        return await aclient.execute_command(*args)

    client.set(COURSE, "mine", px=10_000)
    flush_scripts(client)
    assert await evalsha_async(execute, DELETE_IF, (COURSE,), ("theirs",)) == 0
    assert await evalsha_async(execute, DELETE_IF, (COURSE,), ("mine",)) == 1
    assert sent == ["EVALSHA", "EVAL", "EVALSHA"]
    assert client.exists(COURSE) == 0

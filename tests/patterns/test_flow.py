"""The flow drivers: batches keep each operation's own reply or error."""

from __future__ import annotations

from redis.exceptions import OutOfMemoryError

from courseredis import keys
from courseredis.patterns.flow import Batch, Command, Script, execute_async, execute_sync
from courseredis.patterns.lua import load
from tests.support import flush_scripts, memory_full

COURSE = keys.course(424242)


def a_batch() -> Batch:
    write = Script(load("compare_and_set"), (COURSE,), ("lease", "{}", 1000))
    return Batch((Command(("EXISTS", COURSE)), write))


def test_a_script_whose_reload_fails_fails_alone_in_its_batch(client):
    client.set(COURSE, "lease", px=10_000)  # so the script writes
    flush_scripts(client)  # its EVALSHA meets NOSCRIPT; the EVAL then meets OOM
    with memory_full(client):
        exists, write = execute_sync(client, a_batch())
    client.delete(COURSE)
    assert exists == 1  # the other command's reply stands
    assert isinstance(write, OutOfMemoryError)


async def test_the_same_holds_for_asyncio(client, aclient):
    client.set(COURSE, "lease", px=10_000)
    flush_scripts(client)
    with memory_full(client):
        exists, write = await execute_async(aclient, a_batch())
    client.delete(COURSE)
    assert exists == 1
    assert isinstance(write, OutOfMemoryError)


def test_a_batch_of_loaded_scripts_answers_in_order(client):
    client.set(COURSE, "lease", px=10_000)
    exists, written = execute_sync(client, a_batch())
    assert (exists, written) == (1, 1)
    assert client.get(COURSE) in ("{}", b"{}")
    client.delete(COURSE)

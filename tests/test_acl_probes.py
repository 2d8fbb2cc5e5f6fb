"""The ACL probes: one for every command the key schema grants, each a command Redis
accepts as written (so a refusal is the ACL's, never a wrong arity)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from courseredis import keys
from courseredis.acl_probes import DANGEROUS, INVOCATIONS, UNUSED_ON_OWN_KEYS, fill
from courseredis.local import LocalStack
from tests.support import node

KEY = keys.course(1)


def test_every_command_the_schema_grants_has_a_probe_of_that_command():
    granted = {c for p in keys.PATTERNS for c in p.write_commands + p.read_commands}
    assert granted <= INVOCATIONS.keys(), f"no probe for {sorted(granted - INVOCATIONS.keys())}"
    for command, template in INVOCATIONS.items():
        assert template[0].lower() == command


def test_no_probe_is_listed_twice():
    for table in (DANGEROUS, UNUSED_ON_OWN_KEYS, tuple(INVOCATIONS.values())):
        assert len(set(table)) == len(table)


def test_fill_puts_in_the_key_and_the_group():
    assert fill(INVOCATIONS["xack"], KEY, "g1") == ("XACK", KEY, "g1", "0-1")
    assert fill(("RENAME", "{k}", "{k}"), KEY) == ("RENAME", KEY, KEY)


@pytest.fixture
def admin(single_node: LocalStack) -> Iterator[redis.Redis]:
    with node(single_node, 0) as client:
        yield client


def test_every_probe_is_a_command_redis_accepts_as_written(admin, single_node):
    probes = [fill(t, KEY) for t in (*INVOCATIONS.values(), *UNUSED_ON_OWN_KEYS, *DANGEROUS)]
    pipe = admin.pipeline(transaction=False)
    for argv in probes:
        pipe.execute_command("ACL", "DRYRUN", single_node.username, *argv)
    replies = pipe.execute(raise_on_error=False)
    wrong = [f"{' '.join(a)}: {r}" for a, r in zip(probes, replies, strict=True) if r != "OK"]
    assert not wrong, "; ".join(wrong)

"""The keyspace audit, on a real single node and a real 3x2 cluster.

The session's Redis is shared with other tests, so each test plants keys that carry a
random token and audits only those (`match`); the scan still walks every master.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import timedelta

import pytest
import redis

from courseredis import keys
from courseredis.local import LocalStack
from courseredis.ops.audit import (
    NO_TTL_VIOLATION,
    OUTSIDE_SCHEMA,
    STREAM_TOO_LONG,
    TTL_ABOVE_RULE,
    WRONG_TYPE,
    Credentials,
    audit_keyspace,
    check_key,
    find_masters,
    human,
    ttl_bucket,
)
from courseredis.topology import split_addr

_MS = timedelta(milliseconds=1)


@pytest.fixture
def token() -> int:
    """12 random digits that every planted key carries (in an id, a uuid, a name)."""
    return random.SystemRandom().randrange(10**11, 10**12)


def credentials(stack: LocalStack) -> Credentials:
    return Credentials(stack.username, stack.password)


def planted(token: int) -> dict[str, str]:
    """Keys of every pattern, following the schema, each carrying `token`."""
    uuid = f"00000000-0000-4000-8000-{token:012d}"
    return {
        "jwt_revoked": keys.jwt_revoked(uuid),
        "refresh_token": keys.refresh_token(uuid),
        "ratelimit_ip": keys.ratelimit_ip("192.0.2.7", f"r{token}"),
        "ratelimit_user": keys.ratelimit_user(token, "login"),
        "enrollment_lock": keys.enrollment_lock(token, 1),
        "course_cache": keys.course(token),
        "session": keys.session(uuid),
        "idempotency": keys.idempotency("courses", f"e{token}"),
        "event_stream": keys.event_stream(f"t{token}"),
    }


def write_clean(client, token: int) -> dict[str, str]:
    k = planted(token)
    client.set(k["jwt_revoked"], "1", px=60_000)
    client.set(k["refresh_token"], "{}", px=keys.REFRESH_TOKEN_TTL // _MS)
    client.zadd(k["ratelimit_ip"], {"a": 1})
    client.pexpire(k["ratelimit_ip"], 60_000)
    # A string, as GCRA keeps its TAT (rate-limit keys are zsets or strings, no hashes).
    client.set(k["ratelimit_user"], "1700000000000000", px=3_600_000)
    client.set(k["enrollment_lock"], "owner", px=30_000)
    client.set(k["course_cache"], "x" * 5000, px=300_000)
    client.hset(k["session"], mapping={"user_id": "1", "roles": "student"})
    client.pexpire(k["session"], keys.SESSION_TTL // _MS)
    client.set(k["idempotency"], "done", px=keys.IDEMPOTENCY_TTL // _MS)
    client.xadd(k["event_stream"], {"id": "1"})
    return k


def cleanup(client, names) -> None:
    for name in names:
        client.delete(name)


def test_a_clean_keyspace_passes_with_counts_per_pattern(client, stack, token):
    written = write_clean(client, token)
    try:
        report = audit_keyspace(stack.nodes, credentials(stack), match=f"*{token}*", top=3)
    finally:
        cleanup(client, written.values())
    assert report.ok, [v.message() for v in report.violations]
    assert report.mode == ("cluster" if stack.mode == "cluster" else "standalone")
    assert len(report.masters) == (3 if stack.mode == "cluster" else 1)
    assert report.scanned == len(written)
    assert {name: report.patterns[name].count for name in written} == dict.fromkeys(written, 1)
    assert report.patterns["session"].types == {"hash": 1}
    assert report.patterns["session"].ttl == {"<=24h": 1}
    assert report.patterns["refresh_token"].ttl == {"<=7d": 1}
    assert report.ttl_distribution["none"] == 1  # the stream: bounded by length instead
    assert report.without_ttl_count == 0
    assert report.biggest[0].key == written["course_cache"] and report.biggest[0].bytes > 5000
    assert len(report.biggest) == 3 and not report.memory_sampled
    document = report.to_json()
    assert document["ok"] is True and document["keys_scanned"] == len(written)
    assert document["patterns"]["course_cache"]["template"] == "course:<id>"


def test_violations_name_their_keys(client, stack, token):
    uuid = f"00000000-0000-4000-8000-{token:012d}"
    no_ttl = keys.course(token)
    outside = f"audit-{token}:stray"
    long_session = keys.session(uuid)
    wrong_type = keys.refresh_token(uuid)
    client.set(no_ttl, "{}")
    client.set(outside, "x", px=60_000)
    client.hset(long_session, "user_id", "1")
    client.expire(long_session, 30 * 86_400)
    client.hset(wrong_type, "x", "1")
    client.pexpire(wrong_type, 60_000)
    try:
        report = audit_keyspace(stack.nodes, credentials(stack), match=f"*{token}*")
    finally:
        cleanup(client, [no_ttl, outside, long_session, wrong_type])
    assert not report.ok
    found = {(v.key, v.kind) for v in report.violations}
    assert found == {
        (no_ttl, NO_TTL_VIOLATION),
        (outside, OUTSIDE_SCHEMA),
        (long_session, TTL_ABOVE_RULE),
        (wrong_type, WRONG_TYPE),
    }
    assert report.without_ttl == [no_ttl] and report.outside_schema.count == 1
    messages = {v.key: v.message() for v in report.violations}
    assert "has no TTL" in messages[no_ttl]
    assert "30 d" in messages[long_session] and "24 h" in messages[long_session]
    assert "is a hash, the schema says string" in messages[wrong_type]
    assert report.to_json()["violation_counts"] == {
        NO_TTL_VIOLATION: 1,
        OUTSIDE_SCHEMA: 1,
        TTL_ABOVE_RULE: 1,
        WRONG_TYPE: 1,
    }


def test_memory_is_sampled_past_the_limit(client, stack, token):
    names = [keys.course(token * 10 + i) for i in range(8)]
    for name in names:
        client.set(name, "{}", px=60_000)
    try:
        report = audit_keyspace(
            stack.nodes, credentials(stack), match=f"*{token}*", memory_sample=1, seed=7
        )
    finally:
        cleanup(client, names)
    assert report.scanned == 8 and report.memory_sampled
    assert 1 <= report.memory_measured <= len(report.masters)  # one key per master at most


def _keys_calls(stack: LocalStack) -> int:
    total = 0
    for node in stack.nodes:
        host, port = split_addr(node)
        with redis.Redis(
            host=host, port=port, username=stack.username, password=stack.password
        ) as c:
            total += int(c.info("commandstats").get("cmdstat_keys", {}).get("calls", 0))
    return total


def test_scans_every_master_and_never_sends_keys(stack):
    mode, masters = find_masters(stack.nodes, credentials(stack))
    assert mode == stack.mode and len(masters) == (3 if stack.mode == "cluster" else 1)
    before = _keys_calls(stack)
    audit_keyspace(stack.nodes, credentials(stack), match="no-such-key-*")
    assert _keys_calls(stack) == before


def run_cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
    env.update(REDIS_USERNAME=stack.username or "", REDIS_PASSWORD=stack.password or "")
    return subprocess.run(
        [sys.executable, "-m", "courseredis.ops.audit", "--nodes", ",".join(stack.nodes), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_cli_prints_json_and_exits_1_naming_the_keys(client, stack, token):
    good, bad = keys.course(token), f"stray-{token}"
    client.set(good, "{}", px=60_000)
    client.set(bad, "x")
    try:
        failing = run_cli(stack, "--match", f"*{token}*")
        client.delete(bad)
        passing = run_cli(stack, "--match", f"*{token}*")
    finally:
        cleanup(client, [good, bad])
    assert failing.returncode == 1, failing.stderr
    document = json.loads(failing.stdout)
    assert document["ok"] is False and document["keys_scanned"] == 2
    assert document["keys_without_ttl"] == {"count": 1, "keys": [bad]}
    assert [v["key"] for v in document["violations"]] == [bad]
    assert f"violation: {bad}" in failing.stderr
    assert passing.returncode == 0, passing.stderr
    assert json.loads(passing.stdout)["patterns"]["course_cache"]["count"] == 1


def test_cli_exits_2_when_it_cannot_audit(stack):
    result = run_cli(stack, "--username", "nobody")
    assert result.returncode == 2
    assert "audit error" in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    ("key", "kind", "ttl", "length", "problem"),
    [
        ("course:1", "string", 300_000, None, None),
        ("course:1", "string", 300_001, None, TTL_ABOVE_RULE),
        ("course:1", "string", None, None, NO_TTL_VIOLATION),
        ("course:1", "hash", 1000, None, WRONG_TYPE),
        ("course:01", "string", 1000, None, OUTSIDE_SCHEMA),
        ("events:enrollments", "stream", None, keys.EVENT_STREAM_MAX_LENGTH + 100, None),
        ("events:enrollments", "stream", None, keys.EVENT_STREAM_MAX_LENGTH + 101, STREAM_TOO_LONG),
        (b"\xff\xfe", "string", 1000, None, OUTSIDE_SCHEMA),
    ],
)
def test_check_key_rules(key, kind, ttl, length, problem):
    _, found = check_key(key, kind, ttl, node="n", stream_length=length)
    assert [v.kind for v in found] == ([problem] if problem else [])


def test_ttl_buckets_and_durations():
    assert [ttl_bucket(t) for t in (None, 60_000, 60_001, 86_400_000, 10**10)] == [
        "none",
        "<=1m",
        "<=5m",
        "<=24h",
        ">7d",
    ]
    assert [human(v) for v in (5, 1500, 300_000, 86_400_000, 604_800_000)] == [
        "5 ms",
        "1.5 s",
        "5 m",
        "24 h",
        "7 d",
    ]

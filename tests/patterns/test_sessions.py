"""Sessions: a hash per login with a sliding 24 h TTL; activity writes are throttled."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest

from courseredis import keys
from courseredis.patterns.sessions import AsyncSessions, Sessions
from tests.support import assert_follows_schema, assert_follows_schema_async


def test_a_session_is_a_hash_with_user_roles_and_activity_for_24_hours(client):
    session = Sessions(client).create(42, ["student", "beta"])
    key = keys.session(session.session_id)
    assert client.hgetall(key) == {
        "user_id": "42",
        "roles": "student,beta",
        "created_at": str(session.created_at_ms),
        "last_activity": str(session.created_at_ms),
    }
    ttl_ms = assert_follows_schema(client, key)
    assert ttl_ms > (keys.SESSION_TTL - timedelta(seconds=5)) / timedelta(milliseconds=1)


def test_touch_writes_at_most_once_per_throttle_interval(client):
    sessions = Sessions(client, throttle=timedelta(milliseconds=100))
    created = sessions.create(1, ["student"])
    writes = [sessions.touch(created.session_id) for _ in range(10)]
    assert not any(s is not None and s.written for s in writes)
    time.sleep(0.12)
    later = sessions.touch(created.session_id)
    assert later is not None and later.written
    assert later.last_activity_ms >= created.last_activity_ms + 100
    read = sessions.read(created.session_id)
    assert read is not None and read.last_activity_ms == later.last_activity_ms


def test_a_touch_renews_the_ttl(client):
    sessions = Sessions(client, throttle=timedelta(0))
    created = sessions.create(1, [])
    key = keys.session(created.session_id)
    client.pexpire(key, 10_000)
    sessions.touch(created.session_id)
    assert client.pttl(key) > 10_000


def test_unknown_and_deleted_sessions_read_as_none(client):
    sessions = Sessions(client)
    assert sessions.read(str(uuid.uuid4())) is None
    assert sessions.touch(str(uuid.uuid4())) is None
    created = sessions.create(3, ["admin"])
    assert sessions.delete(created.session_id)
    assert sessions.read(created.session_id) is None


async def test_the_async_api_matches(aclient):
    sessions = AsyncSessions(aclient)
    created = await sessions.create(5, ["student"])
    read = await sessions.read(created.session_id)
    assert read is not None and read.user_id == 5 and read.roles == ("student",)
    touched = await sessions.touch(created.session_id)
    assert touched is not None and not touched.written
    await assert_follows_schema_async(aclient, keys.session(created.session_id))
    assert await sessions.delete(created.session_id)


@pytest.mark.parametrize("roles", ["admin", ["Admin"], ["a,b"], ["x" * 40], [1]])
def test_bad_roles_are_refused(roles):
    with pytest.raises(ValueError, match="role"):
        Sessions(None).create(1, roles)  # type: ignore[arg-type]


def test_a_bad_session_id_is_refused():
    with pytest.raises(keys.InvalidIdentifier):
        Sessions(None).read("../../etc")  # type: ignore[arg-type]

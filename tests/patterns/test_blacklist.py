"""JWT blacklist, on the real single node and the real cluster."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from courseredis import keys
from courseredis.connection import create_client
from courseredis.local import LocalStack
from courseredis.patterns.blacklist import AsyncBlacklist, Blacklist
from courseredis.patterns.replica_ack import NotReplicated, ReplicaAck
from tests.support import assert_follows_schema, assert_follows_schema_async, settings_for


def test_a_revocation_lives_for_the_remaining_lifetime_plus_skew(client):
    jti = uuid.uuid4()
    expires_in = 600
    assert Blacklist(client).revoke(jti, int(time.time()) + expires_in)
    ttl_ms = assert_follows_schema(client, keys.jwt_revoked(jti))
    skew_ms = keys.REVOCATION_SKEW / timedelta(milliseconds=1)
    assert (expires_in - 2) * 1000 + skew_ms <= ttl_ms <= expires_in * 1000 + skew_ms


def test_a_token_already_expired_is_not_stored(client):
    jti = uuid.uuid4()
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    assert not Blacklist(client).revoke(jti, long_ago)
    assert client.exists(keys.jwt_revoked(jti)) == 0


def test_a_forged_far_future_expiry_cannot_pin_a_key_beyond_the_rule(client):
    jti = uuid.uuid4()
    Blacklist(client).revoke(jti, int(time.time()) + 10 * 365 * 86400)
    assert_follows_schema(client, keys.jwt_revoked(jti))


def test_many_tokens_are_checked_in_one_call_across_slots(client):
    blacklist = Blacklist(client)
    jtis = [uuid.uuid4() for _ in range(20)]
    for jti in jtis[::2]:
        blacklist.revoke(jti, int(time.time()) + 60)
    assert blacklist.are_revoked(jtis) == [i % 2 == 0 for i in range(20)]
    assert blacklist.is_revoked(jtis[0]) and not blacklist.is_revoked(jtis[1])
    assert blacklist.are_revoked([]) == []


async def test_the_async_api_revokes_and_checks(aclient):
    blacklist = AsyncBlacklist(aclient)
    jti = str(uuid.uuid4())
    assert not await blacklist.is_revoked(jti)
    assert await blacklist.revoke(jti, datetime.now(UTC) + timedelta(minutes=15))
    assert await blacklist.is_revoked(jti)
    assert await blacklist.are_revoked([jti, str(uuid.uuid4())]) == [True, False]
    await assert_follows_schema_async(aclient, keys.jwt_revoked(jti))


@pytest.mark.parametrize("bad", ["not-a-uuid", "{x}", "", 42, None, "a" * 36])
def test_a_bad_jti_never_reaches_redis(bad):
    with pytest.raises(keys.InvalidIdentifier):
        Blacklist(None).is_revoked(bad)  # type: ignore[arg-type]


def test_a_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        Blacklist(None).revoke(uuid.uuid4(), datetime.now())  # type: ignore[arg-type]


def test_an_acknowledged_revocation_waits_for_its_replica(cluster: LocalStack) -> None:
    jti = uuid.uuid4()
    with create_client(settings_for(cluster)) as client:
        assert Blacklist(client, ack=ReplicaAck(1, 1000)).revoke(jti, int(time.time()) + 600)
        assert Blacklist(client).is_revoked(jti)


def test_without_a_replica_a_revocation_is_not_acknowledged(single_node: LocalStack) -> None:
    jti = uuid.uuid4()
    with create_client(settings_for(single_node)) as client:
        with pytest.raises(NotReplicated, match="0 of 1 replica"):
            Blacklist(client, ack=ReplicaAck(1, 50)).revoke(jti, int(time.time()) + 600)
        # The write itself happened: a client repeating the logout changes nothing.
        assert Blacklist(client).is_revoked(jti)

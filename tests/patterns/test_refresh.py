"""Refresh tokens: rotation is single use and atomic; reuse revokes the family."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from courseredis import keys
from courseredis.connection import create_client
from courseredis.local import LocalStack
from courseredis.patterns.refresh import (
    SPENT_KEPT,
    AsyncRefreshTokens,
    InvalidRefreshToken,
    RefreshTokens,
    RotationStatus,
    digest,
    parse_token,
)
from courseredis.patterns.replica_ack import NotReplicated, ReplicaAck
from tests.support import assert_follows_schema, settings_for


def test_an_issued_token_is_stored_for_7_days_with_its_record(client):
    issued = RefreshTokens(client).issue(42, "courses:read")
    key = keys.refresh_token(issued.record.family)
    ttl_ms = assert_follows_schema(client, key)
    assert ttl_ms > (keys.REFRESH_TOKEN_TTL - timedelta(seconds=5)) / timedelta(milliseconds=1)
    stored = json.loads(client.get(key))
    assert {"userId", "scope", "createdAt", "family"} <= stored.keys()
    assert stored["userId"] == "42" and stored["family"] == issued.record.family


def test_the_record_holds_digests_never_a_secret_the_client_holds(client):
    tokens = RefreshTokens(client, grace=timedelta(seconds=30))
    issued = tokens.issue(42, "courses")
    rotated = tokens.rotate(issued.token)
    assert rotated.token is not None
    stored = client.get(keys.refresh_token(issued.record.family))
    record = json.loads(stored)
    held = [parse_token(t)[1] for t in (issued.token, rotated.token)]
    for secret in held:
        assert secret not in stored
    # The clear-text fields of before are gone; what remains are digests.
    assert not {"current", "previous"} & record.keys()
    assert record["secretDigest"] == digest(held[1])
    assert record["spentDigests"] == [digest(held[0])]
    # A retry, which answers the same successor, still stores no secret.
    retried = tokens.rotate(issued.token)
    assert retried.status is RotationStatus.RETRY and retried.token == rotated.token
    assert client.get(keys.refresh_token(issued.record.family)) == stored


def test_a_forged_secret_for_a_known_family_is_unknown_and_changes_nothing(client):
    tokens = RefreshTokens(client)
    issued = tokens.issue(8)
    family = issued.record.family
    before = client.get(keys.refresh_token(family))
    # The family id is public (every access token's `sid`); the secret is a guess.
    for forged_secret in ("A" * 43, parse_token(issued.token)[1][:-1] + "x"):
        forged = tokens.rotate(f"{family}.{forged_secret}")
        assert forged.status is RotationStatus.UNKNOWN and forged.token is None
    assert client.get(keys.refresh_token(family)) == before
    assert tokens.rotate(issued.token).status is RotationStatus.ROTATED


def test_any_rotated_out_secret_of_the_family_is_reuse(client):
    tokens = RefreshTokens(client, grace=timedelta(0))
    issued = tokens.issue(12)
    chain = [issued.token]
    for _ in range(3):
        rotation = tokens.rotate(chain[-1])
        assert rotation.status is RotationStatus.ROTATED and rotation.token is not None
        chain.append(rotation.token)
    # Two rotations old: not the previous secret, but one the family issued.
    assert tokens.rotate(chain[1]).status is RotationStatus.REUSED
    assert client.exists(keys.refresh_token(issued.record.family)) == 0
    assert tokens.rotate(chain[-1]).status is RotationStatus.UNKNOWN


def test_a_secret_older_than_the_kept_digests_is_unknown_and_revokes_nothing(client):
    tokens = RefreshTokens(client, grace=timedelta(0))
    issued = tokens.issue(13)
    current = issued.token
    for _ in range(SPENT_KEPT + 1):
        rotation = tokens.rotate(current)
        assert rotation.token is not None
        current = rotation.token
    record = json.loads(client.get(keys.refresh_token(issued.record.family)))
    assert len(record["spentDigests"]) == SPENT_KEPT
    assert tokens.rotate(issued.token).status is RotationStatus.UNKNOWN
    assert tokens.rotate(current).status is RotationStatus.ROTATED


def test_rotation_gives_a_new_token_and_the_old_one_only_within_grace(client):
    tokens = RefreshTokens(client, grace=timedelta(milliseconds=200))
    issued = tokens.issue(7)
    first = tokens.rotate(issued.token)
    assert first.status is RotationStatus.ROTATED and first.token != issued.token
    # A retry after a lost response gets the same successor, not a second branch.
    retry = tokens.rotate(issued.token)
    assert retry.status is RotationStatus.RETRY and retry.token == first.token
    assert first.token is not None
    second = tokens.rotate(first.token)
    assert second.status is RotationStatus.ROTATED
    assert second.record is not None and second.record.generation == 3


def test_reusing_an_old_token_after_grace_revokes_the_whole_family(client):
    tokens = RefreshTokens(client, grace=timedelta(milliseconds=1))
    issued = tokens.issue(7)
    successor = tokens.rotate(issued.token)
    import time

    time.sleep(0.01)
    stolen = tokens.rotate(issued.token)
    assert stolen.status is RotationStatus.REUSED
    assert client.exists(keys.refresh_token(issued.record.family)) == 0
    assert successor.token is not None
    assert tokens.rotate(successor.token).status is RotationStatus.UNKNOWN


def test_concurrent_rotations_of_one_token_yield_one_successor(client):
    tokens = RefreshTokens(client)
    issued = tokens.issue(9)
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: tokens.rotate(issued.token), range(20)))
    assert [r.status for r in results].count(RotationStatus.ROTATED) == 1
    assert {r.token for r in results} == {results[0].token}


async def test_concurrent_async_rotations_yield_one_successor(aclient):
    tokens = AsyncRefreshTokens(aclient)
    issued = await tokens.issue(10, "all")
    results = await asyncio.gather(*(tokens.rotate(issued.token) for _ in range(30)))
    assert sum(r.status is RotationStatus.ROTATED for r in results) == 1
    assert len({r.token for r in results}) == 1
    assert await tokens.revoke(issued.token)
    assert (await tokens.rotate(results[0].token or "")).status is RotationStatus.UNKNOWN


def test_logout_revokes_by_token_or_family(client):
    tokens = RefreshTokens(client)
    issued = tokens.issue(11)
    assert tokens.revoke(issued.record.family)
    assert not tokens.revoke(issued.token)


@pytest.mark.parametrize(
    "bad",
    ["", "x", "not-a-uuid.secret", "{x}.aaaa", 5, None, "a" * 200, parse_token.__name__],
)
def test_a_malformed_token_is_refused_before_redis(bad):
    with pytest.raises(InvalidRefreshToken):
        RefreshTokens(None).rotate(bad)  # type: ignore[arg-type]


def test_a_bad_user_id_is_refused():
    with pytest.raises(keys.InvalidIdentifier):
        RefreshTokens(None).issue(True)  # type: ignore[arg-type]


def test_without_a_replica_a_rotation_still_answers(single_node: LocalStack) -> None:
    with create_client(settings_for(single_node)) as client:
        tokens = RefreshTokens(client, ack=ReplicaAck(1, 50))
        issued = tokens.issue(7, "courses")
        assert tokens.rotate(issued.token).status is RotationStatus.ROTATED
        # A revocation is never acknowledged without its replica.
        with pytest.raises(NotReplicated):
            tokens.revoke(issued.record.family)

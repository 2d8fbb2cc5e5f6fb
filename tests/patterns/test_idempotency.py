"""Idempotent consumers: claim, complete (24 h), release on failure."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from courseredis import keys
from courseredis.patterns.idempotency import (
    AsyncIdempotency,
    ClaimLost,
    ClaimStatus,
    Idempotency,
)
from tests.support import assert_follows_schema


def test_an_event_is_processed_once_and_then_marked_done_for_24_hours(client):
    idem, event = Idempotency(client), uuid.uuid4()
    calls: list[int] = []

    def handle(n: int) -> str:
        calls.append(n)
        return "applied"

    first = idem.process("enrollments", event, lambda: handle(1))
    second = idem.process("enrollments", event, lambda: handle(2))
    assert (first.status, first.result) == (ClaimStatus.CLAIMED, "applied")
    assert second.status is ClaimStatus.DONE
    assert calls == [1]
    key = keys.idempotency("enrollments", event)
    assert client.get(key) == "done"
    ttl_ms = assert_follows_schema(client, key)
    assert ttl_ms > (keys.IDEMPOTENCY_TTL - timedelta(seconds=5)) / timedelta(milliseconds=1)


def test_a_failed_handler_releases_the_claim_so_redelivery_retries(client):
    idem, event = Idempotency(client), uuid.uuid4()

    def fail() -> None:
        raise RuntimeError("downstream failed")

    with pytest.raises(RuntimeError):
        idem.process("courses", event, fail)
    assert client.exists(keys.idempotency("courses", event)) == 0
    assert idem.process("courses", event, lambda: "ok").status is ClaimStatus.CLAIMED


def test_an_event_in_progress_elsewhere_is_busy(client):
    idem, event = Idempotency(client), uuid.uuid4()
    claim = idem.claim("courses", event)
    assert claim.status is ClaimStatus.CLAIMED
    assert idem.claim("courses", event).status is ClaimStatus.BUSY
    assert_follows_schema(client, claim.key, max_ttl=timedelta(seconds=30))
    idem.complete(claim)
    assert idem.claim("courses", event).status is ClaimStatus.DONE


def test_completing_an_expired_claim_is_an_error(client):
    idem = Idempotency(client, lease=timedelta(milliseconds=30))
    claim = idem.claim("courses", uuid.uuid4())
    client.delete(claim.key)
    with pytest.raises(ClaimLost):
        idem.complete(claim)


async def test_concurrent_deliveries_apply_once(aclient):
    idem, event = AsyncIdempotency(aclient), str(uuid.uuid4())
    applied = 0

    async def handler() -> None:
        nonlocal applied
        applied += 1
        await asyncio.sleep(0.05)

    outcomes = await asyncio.gather(*(idem.process("courses", event, handler) for _ in range(50)))
    assert applied == 1
    assert sum(o.status is ClaimStatus.CLAIMED for o in outcomes) == 1


@pytest.mark.parametrize(
    ("consumer", "event_id"),
    [("Courses", "e1"), ("courses", "e:1"), ("courses", "{e}"), ("c", "e\n"), ("c", "x" * 65)],
)
def test_bad_consumer_names_and_event_ids_are_refused(consumer, event_id):
    with pytest.raises(keys.InvalidIdentifier):
        Idempotency(None).claim(consumer, event_id)  # type: ignore[arg-type]

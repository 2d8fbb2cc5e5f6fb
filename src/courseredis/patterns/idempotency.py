"""Idempotent consumers: claim an event before processing, mark it done after, release on
failure, so a redelivered event is never applied twice and a failed one is retried.

The claim is `SET key <lease token> NX PX <lease> GET` (Redis >= 7.0): one command tells
whether we claimed it, it is done, or another consumer instance is processing it.
"""

from __future__ import annotations

import enum
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from courseredis import keys
from courseredis.connection import AsyncClient, SyncClient
from courseredis.patterns.flow import Call, Command, Flow, Script, run_async, run_sync, text
from courseredis.patterns.lua import load

T = TypeVar("T")
_MS = timedelta(milliseconds=1)
_DONE = "done"
CLAIM_LEASE = timedelta(seconds=30)
_DONE_TTL_MS = keys.IDEMPOTENCY_TTL // _MS
_COMPARE_AND_SET = load("compare_and_set")


class ClaimStatus(enum.StrEnum):
    CLAIMED = "claimed"  # ours to process
    DONE = "done"  # processed before: skip
    BUSY = "busy"  # another instance holds the claim: redeliver later


class ClaimLost(RuntimeError):
    """The claim expired (and may have been retaken) before the consumer completed."""


@dataclass(frozen=True)
class Claim:
    key: str
    token: str
    status: ClaimStatus


@dataclass(frozen=True)
class Outcome:
    status: ClaimStatus
    result: Any = None


def _claim(consumer: str, event_id: str | uuid.UUID, lease: timedelta) -> Flow[Claim]:
    key = keys.idempotency(consumer, event_id)
    token = "processing:" + secrets.token_hex(8)
    previous = text(
        (yield Command(("SET", key, token, "NX", "PX", lease // _MS, "GET"), (("get", True),)))
    )
    if previous is None or previous == token:  # ours, even if the client retried the SET
        return Claim(key, token, ClaimStatus.CLAIMED)
    return Claim(key, token, ClaimStatus.DONE if previous == _DONE else ClaimStatus.BUSY)


def _complete(claim: Claim) -> Flow[None]:
    done = yield Script(_COMPARE_AND_SET, (claim.key,), (claim.token, _DONE, _DONE_TTL_MS))
    if not done:
        raise ClaimLost(f"{claim.key}: the claim expired before completion")


def _release(claim: Claim) -> Flow[bool]:
    released = yield Script(load("compare_and_delete"), (claim.key,), (claim.token,))
    return bool(released)


def _process(
    consumer: str, event_id: str | uuid.UUID, handler: Callable[[], Any], lease: timedelta
) -> Flow[Outcome]:
    claim = yield from _claim(consumer, event_id, lease)
    if claim.status is not ClaimStatus.CLAIMED:
        return Outcome(claim.status)
    try:
        result = yield Call(handler)
    except Exception:  # not GeneratorExit: a closed flow must not yield again
        yield from _release(claim)
        raise
    yield from _complete(claim)
    return Outcome(ClaimStatus.CLAIMED, result)


class Idempotency:
    """Sync API: `Idempotency(client).process("courses", event_id, handle)`."""

    def __init__(self, client: SyncClient, *, lease: timedelta = CLAIM_LEASE) -> None:
        self._client = client
        self._lease = lease

    def claim(self, consumer: str, event_id: str | uuid.UUID) -> Claim:
        return run_sync(self._client, _claim(consumer, event_id, self._lease))

    def complete(self, claim: Claim) -> None:
        run_sync(self._client, _complete(claim))

    def release(self, claim: Claim) -> bool:
        return run_sync(self._client, _release(claim))

    def process(
        self, consumer: str, event_id: str | uuid.UUID, handler: Callable[[], T]
    ) -> Outcome:
        """Run `handler` once per event; on failure the claim is released and it re-raises."""
        return run_sync(self._client, _process(consumer, event_id, handler, self._lease))


class AsyncIdempotency:
    def __init__(self, client: AsyncClient, *, lease: timedelta = CLAIM_LEASE) -> None:
        self._client = client
        self._lease = lease

    async def claim(self, consumer: str, event_id: str | uuid.UUID) -> Claim:
        return await run_async(self._client, _claim(consumer, event_id, self._lease))

    async def complete(self, claim: Claim) -> None:
        await run_async(self._client, _complete(claim))

    async def release(self, claim: Claim) -> bool:
        return await run_async(self._client, _release(claim))

    async def process(
        self,
        consumer: str,
        event_id: str | uuid.UUID,
        handler: Callable[[], Any | Awaitable[Any]],
    ) -> Outcome:
        return await run_async(self._client, _process(consumer, event_id, handler, self._lease))

"""JWT blacklist: a revoked access token's `jti`, kept until the token expires anyway.

A revocation can wait for a replica to hold it (`courseredis.patterns.replica_ack`): a
failover must not bring a revoked token back.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from courseredis import keys
from courseredis.connection import AsyncClient, SyncClient
from courseredis.patterns.flow import (
    Batch,
    Call,
    Command,
    Flow,
    Script,
    remembered,
    run_async,
    run_sync,
)
from courseredis.patterns.lua import load
from courseredis.patterns.replica_ack import (
    Acknowledge,
    Acknowledged,
    ReplicaAck,
    acknowledger,
    async_acknowledger,
    require_acknowledged,
)

_MS = timedelta(milliseconds=1)


def _expiry_ms(expires_at: datetime | int) -> int:
    if isinstance(expires_at, datetime):
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware (a JWT exp is UTC)")
        return int(expires_at.timestamp() * 1000)
    if isinstance(expires_at, bool) or not isinstance(expires_at, int) or expires_at < 0:
        raise ValueError(f"expires_at is an exp claim in seconds, not {expires_at!r}")
    return expires_at * 1000


def revoke_script(jti: str | uuid.UUID, expires_at: datetime | int) -> Script:
    return Script(
        load("blacklist_revoke"),
        (keys.jwt_revoked(jti),),
        (
            _expiry_ms(expires_at),
            keys.REVOCATION_SKEW // _MS,
            (keys.ACCESS_TOKEN_LIFETIME + keys.REVOCATION_SKEW) // _MS,
        ),
    )


@remembered  # a token is checked on each request it makes
def is_revoked_command(jti: str | uuid.UUID) -> Command:
    return Command(("EXISTS", keys.jwt_revoked(jti)))


def _revoke(jti: str | uuid.UUID, expires_at: datetime | int) -> Flow[bool]:
    ttl_ms = yield revoke_script(jti, expires_at)
    return int(ttl_ms) > 0


def _revoke_acknowledged(
    jti: str | uuid.UUID, expires_at: datetime | int, acknowledge: Acknowledge
) -> Flow[bool]:
    script = revoke_script(jti, expires_at)
    result: Acknowledged = yield Call(lambda: acknowledge([script]))
    (ttl_ms,) = require_acknowledged(result, "revocation")
    return int(ttl_ms) > 0


def _is_revoked(jti: str | uuid.UUID) -> Flow[bool]:
    found = yield is_revoked_command(jti)
    return int(found) == 1


def _are_revoked(jtis: Sequence[str | uuid.UUID]) -> Flow[list[bool]]:
    if not jtis:
        return []
    # One EXISTS per key in one batch: a multi-key EXISTS would cross slots on a cluster.
    replies = yield Batch(tuple(is_revoked_command(j) for j in jtis))
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return [int(r) == 1 for r in replies]


class Blacklist:
    """Sync API. Checks raise on a Redis failure: the gateway fails closed (503).

    With an `ack` (replicas > 0), `revoke` returns once a replica holds the revocation
    and raises `NotReplicated` when none confirmed it in time.
    """

    def __init__(self, client: SyncClient, *, ack: ReplicaAck | None = None) -> None:
        self._client = client
        self._ack = ack

    def revoke(self, jti: str | uuid.UUID, expires_at: datetime | int) -> bool:
        """Revoke until `expires_at` (+ skew). False when the token had already expired."""
        acknowledge = acknowledger(self._client, self._ack)
        if acknowledge is None:
            return run_sync(self._client, _revoke(jti, expires_at))
        return run_sync(self._client, _revoke_acknowledged(jti, expires_at, acknowledge))

    def is_revoked(self, jti: str | uuid.UUID) -> bool:
        return run_sync(self._client, _is_revoked(jti))

    def are_revoked(self, jtis: Sequence[str | uuid.UUID]) -> list[bool]:
        return run_sync(self._client, _are_revoked(jtis))


class AsyncBlacklist:
    def __init__(self, client: AsyncClient, *, ack: ReplicaAck | None = None) -> None:
        self._client = client
        self._ack = ack

    async def revoke(self, jti: str | uuid.UUID, expires_at: datetime | int) -> bool:
        acknowledge = async_acknowledger(self._client, self._ack)
        if acknowledge is None:
            return await run_async(self._client, _revoke(jti, expires_at))
        return await run_async(self._client, _revoke_acknowledged(jti, expires_at, acknowledge))

    async def is_revoked(self, jti: str | uuid.UUID) -> bool:
        return await run_async(self._client, _is_revoked(jti))

    async def are_revoked(self, jtis: Sequence[str | uuid.UUID]) -> list[bool]:
        return await run_async(self._client, _are_revoked(jtis))

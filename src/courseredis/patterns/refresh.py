"""Refresh tokens: issue, rotate (single use, atomic, reuse revokes the family), revoke.

A token is `<family>.<secret>`. One key per family, `refresh:<family>`, holds the digests
of the current secret and of the last secrets it replaced, so a rotation is one Lua call on
one key: no CROSSSLOT, no window in which two clients can both rotate the same token, and
revoking a whole family is one DEL.

No secret is stored, nor sent to Redis: the record holds SHA-256 digests, the script is
given the digest of the presented secret, so whoever reads Redis (an ACL user, the AOF, a
backup, `MONITOR`) cannot build a token. A plain SHA-256 is enough because a secret is 256
random bits: there is nothing to guess, so neither a slow hash nor a server-side HMAC key
(one more secret to hold and rotate) would add anything.

A successor secret is derived, HMAC-SHA256(presented secret, nonce), with a fresh random
nonce that the record keeps: a client retrying after a lost response presents the same
secret and gets the same successor back, though the successor itself was never stored.
Holding an old secret is not enough to compute later ones: each needs its rotation's nonce.

Only a secret this family issued counts as reuse (the family is then revoked): the record
keeps the digests of the last `SPENT_KEPT` rotated-out secrets. Any other secret is a
guess, and a family id is no secret (it is every access token's `sid`): it answers
UNKNOWN and leaves the family alone, or anyone could log anyone out.

With a replica ack (`courseredis.patterns.replica_ack`), each write is confirmed by a
replica before the call returns, so a failover cannot bring back a family that was revoked,
nor the pre-rotation record (whose successor the client holds, and would then be refused as
a reuse). A revocation that is not confirmed raises `NotReplicated`. An issue or rotation
that is not confirmed in time is still returned (logged): losing it to a double fault
costs the user a new login, not security, and a shard that runs without its replica for
a while must not stop every login with it.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from courseredis import keys
from courseredis.connection import AsyncClient, SyncClient
from courseredis.patterns.flow import Call, Command, Flow, Script, run_async, run_sync, text
from courseredis.patterns.lua import load
from courseredis.patterns.replica_ack import (
    Acknowledge,
    Acknowledged,
    NotReplicated,
    ReplicaAck,
    acknowledger,
    async_acknowledger,
    require_acknowledged,
)

log = logging.getLogger(__name__)
_MS = timedelta(milliseconds=1)
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")
GRACE = timedelta(seconds=10)
# Rotated-out secrets whose reuse is recognised (and revokes the family). A client rotates
# about once per access token (15 m); older secrets, once out of this list, are refused as
# unknown without revoking anything. 16 digests are about 1 KiB per family.
SPENT_KEPT = 16


class InvalidRefreshToken(ValueError):
    """The presented string is not a refresh token of ours (checked before Redis is asked)."""


class RotationStatus(enum.StrEnum):
    ROTATED = "rotated"  # the token was current: here is its successor
    RETRY = "retry"  # the token was just rotated: the same successor again
    REUSED = "reused"  # a rotated-out token of the family came back: the family is revoked
    UNKNOWN = "unknown"  # expired, revoked, or a secret the family never issued


_STATUSES = {status.value: status for status in RotationStatus}
_TTL_MS = keys.REFRESH_TOKEN_TTL // _MS
_ROTATE = load("refresh_rotate")


@dataclass(frozen=True)
class RefreshRecord:
    user_id: int
    scope: str
    family: str
    created_at_ms: int
    generation: int


@dataclass(frozen=True)
class IssuedToken:
    token: str
    record: RefreshRecord


@dataclass(frozen=True)
class Rotation:
    status: RotationStatus
    token: str | None  # the successor, for ROTATED and RETRY
    record: RefreshRecord | None

    @property
    def ok(self) -> bool:
        return self.status in (RotationStatus.ROTATED, RotationStatus.RETRY)


def parse_token(token: object) -> tuple[str, str]:
    """Split `<family>.<secret>`; raise InvalidRefreshToken on anything else."""
    if not isinstance(token, str) or len(token) > 100:
        raise InvalidRefreshToken("a refresh token is a string of at most 100 characters")
    family, dot, secret = token.partition(".")
    if not dot or not _SECRET.fullmatch(secret):
        raise InvalidRefreshToken("malformed refresh token")
    try:
        return keys.valid_uuid("family", family), secret
    except keys.InvalidIdentifier:
        raise InvalidRefreshToken("malformed refresh token") from None


def _record(raw: str) -> RefreshRecord:
    return _record_of(json.loads(raw))


def _record_of(data: dict[str, Any]) -> RefreshRecord:
    return RefreshRecord(
        user_id=int(data["userId"]),
        scope=data["scope"],
        family=data["family"],
        created_at_ms=int(data["createdAt"]),
        generation=int(data["generation"]),
    )


def _new_secret() -> str:
    return secrets.token_urlsafe(32)  # 256 bits: 43 characters, `_SECRET`'s shape


def digest(secret: str) -> str:
    """What the record keeps of a secret, and what the script compares: SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _successor(secret: str, nonce: str) -> str:
    """The secret that replaces `secret` in the rotation made with `nonce`."""
    mac = hmac.new(secret.encode(), nonce.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _written(result: Acknowledged, what: str) -> Any:
    """The one write's reply; a missing confirmation is logged, not raised."""
    (reply,) = result.replies
    if isinstance(reply, Exception):
        raise reply
    if not result.acked:
        log.warning("%s not confirmed by a replica", what, extra={"detail": result.detail})
    return reply


def _issue(
    user_id: int,
    scope: str,
    created_at_ms: int | None,
    acknowledge: Acknowledge | None = None,
    family: str | None = None,
) -> Flow[IssuedToken]:
    # The family id is no secret (it is every access token's `sid`); a caller may choose it
    # (the redis_direct load suite keeps to ids its Redis user may touch). Random otherwise.
    family = keys.valid_uuid("family", family) if family is not None else str(uuid.uuid4())
    key = keys.refresh_token(family)
    keys.valid_int_id("user_id", user_id)
    if not isinstance(scope, str) or len(scope) > 256:
        raise ValueError("scope is a string of at most 256 characters")
    if created_at_ms is None:
        seconds, micros = yield Command(("TIME",))
        created_at_ms = int(seconds) * 1000 + int(micros) // 1000
    secret = _new_secret()
    record = {
        # userId as a string: Lua's cjson would print large numbers in exponent form.
        "userId": str(user_id),
        "scope": scope,
        "createdAt": created_at_ms,
        "family": family,
        "generation": 1,
        "secretDigest": digest(secret),
        "spentDigests": [],
        "rotationNonce": None,
        "rotatedAt": None,
    }
    write = Command(("SET", key, json.dumps(record), "PX", _TTL_MS, "NX"))
    if acknowledge is None:
        yield write
    else:
        result = yield Call(lambda: acknowledge([write]))
        _written(result, "refresh token issue")
    return IssuedToken(f"{family}.{secret}", _record_of(record))


def _rotate(token: str, grace: timedelta, acknowledge: Acknowledge | None = None) -> Flow[Rotation]:
    family, secret = parse_token(token)
    nonce = _new_secret()
    script = Script(
        _ROTATE,
        (keys.refresh_token(family),),
        (
            digest(secret),
            digest(_successor(secret, nonce)),
            nonce,
            grace // _MS,
            _TTL_MS,
            SPENT_KEPT,
        ),
    )
    if acknowledge is None:
        status, raw = yield script
    else:
        result: Acknowledged = yield Call(lambda: acknowledge([script]))
        (reply,) = result.replies
        if not isinstance(reply, Exception) and not result.acked and text(reply[0]) == "reused":
            # A reuse deleted the family: that is a revocation, and must be confirmed.
            raise NotReplicated(f"family revocation not confirmed: {result.detail}")
        status, raw = _written(result, "refresh token rotation")
    status = _STATUSES[text(status) or ""]
    if status is RotationStatus.ROTATED or status is RotationStatus.RETRY:
        data = json.loads(raw)  # str or bytes alike
        successor = _successor(secret, data["rotationNonce"])
        return Rotation(status, f"{family}.{successor}", _record_of(data))
    record = _record(text(raw) or "") if status is RotationStatus.REUSED else None
    return Rotation(status, None, record)


def _revoke(token_or_family: str, acknowledge: Acknowledge | None = None) -> Flow[bool]:
    if "." in token_or_family:
        family, _ = parse_token(token_or_family)
    else:
        family = token_or_family
    delete = Command(("DEL", keys.refresh_token(family)))
    if acknowledge is None:
        deleted = yield delete
    else:
        result = yield Call(lambda: acknowledge([delete]))
        (deleted,) = require_acknowledged(result, "refresh family revocation")
    return int(deleted) == 1


class RefreshTokens:
    """Sync API. `ack`: wait for replicas after each write (see the module's docstring)."""

    def __init__(
        self, client: SyncClient, *, grace: timedelta = GRACE, ack: ReplicaAck | None = None
    ) -> None:
        self._client = client
        self._grace = grace
        self._acknowledge = acknowledger(client, ack)

    def issue(
        self,
        user_id: int,
        scope: str = "",
        *,
        created_at_ms: int | None = None,
        family: str | None = None,
    ) -> IssuedToken:
        flow = _issue(user_id, scope, created_at_ms, self._acknowledge, family)
        return run_sync(self._client, flow)

    def rotate(self, token: str) -> Rotation:
        return run_sync(self._client, _rotate(token, self._grace, self._acknowledge))

    def revoke(self, token_or_family: str) -> bool:
        """Revoke the whole family (logout); False when it was already gone."""
        return run_sync(self._client, _revoke(token_or_family, self._acknowledge))


class AsyncRefreshTokens:
    def __init__(
        self, client: AsyncClient, *, grace: timedelta = GRACE, ack: ReplicaAck | None = None
    ) -> None:
        self._client = client
        self._grace = grace
        self._acknowledge = async_acknowledger(client, ack)

    async def issue(
        self,
        user_id: int,
        scope: str = "",
        *,
        created_at_ms: int | None = None,
        family: str | None = None,
    ) -> IssuedToken:
        flow = _issue(user_id, scope, created_at_ms, self._acknowledge, family)
        return await run_async(self._client, flow)

    async def rotate(self, token: str) -> Rotation:
        return await run_async(self._client, _rotate(token, self._grace, self._acknowledge))

    async def revoke(self, token_or_family: str) -> bool:
        return await run_async(self._client, _revoke(token_or_family, self._acknowledge))

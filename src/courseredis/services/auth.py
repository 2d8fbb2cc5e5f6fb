"""The auth service: login, refresh-token rotation, logout.

A login creates one session whose id is also the refresh-token family and the `sid` claim
of every access token it issues, so logout can end all three at once.

Replica acknowledgement (`REDIS_REPLICA_ACKS`, default 0: off; set it to 1 on a cluster
whose ACL lets this service `WAIT`): a logout answers 204 only once a replica holds the
revocation and both deletions, so a master dying right after cannot bring the token back;
otherwise 503, and the client repeats the logout (safe). Refresh-token issue and rotation
wait too but do not fail for want of a replica (see `courseredis.patterns.refresh`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import select

from courseredis import keys
from courseredis.patterns.blacklist import revoke_script
from courseredis.patterns.flow import Batch, Command, execute_async
from courseredis.patterns.refresh import AsyncRefreshTokens, InvalidRefreshToken, RotationStatus
from courseredis.patterns.replica_ack import (
    ReplicaAck,
    require_acknowledged,
    write_acknowledged_async,
)
from courseredis.patterns.sessions import AsyncSessions
from courseredis.services.app import Served, ServeOptions
from courseredis.services.db.models import User
from courseredis.services.identity import ClaimsDep
from courseredis.services.passwords import PasswordChecks, PasswordChecksBusy, concurrency_for
from courseredis.services.runtime import Runtime, RuntimeDep, part_of
from courseredis.services.tokens import issue_access_token

log = logging.getLogger(__name__)
router = APIRouter(prefix="/auth", tags=["auth"])
_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


class ReplicaAckSettings(BaseSettings):
    """How many replicas confirm a logout (`WAIT`), from REDIS_REPLICA_ACKS and
    REDIS_REPLICA_ACK_TIMEOUT_MS. 0 on a single node: it has no replica to wait for."""

    model_config = SettingsConfigDict(env_prefix="REDIS_", extra="ignore")

    replica_acks: int = Field(default=0, ge=0, le=5)
    replica_ack_timeout_ms: int = Field(default=250, gt=0, le=10_000)


class PasswordCheckSettings(BaseSettings):
    """How many password checks run at once, from PASSWORD_CHECK_MEMORY_BUDGET_MIB (what
    they may take together: half of a 512 MiB pod by default, the rest is the process's),
    PASSWORD_CHECK_CONCURRENCY (default: as many as fit in the budget, 64 MiB each) and
    PASSWORD_CHECK_QUEUE (how many more may wait; beyond them a login gets 503)."""

    model_config = SettingsConfigDict(env_prefix="PASSWORD_CHECK_", extra="ignore")

    memory_budget_mib: int = Field(default=256, ge=1)
    concurrency: int | None = Field(default=None, ge=1)
    queue: int = Field(default=32, ge=0)

    def checks(self) -> PasswordChecks:
        concurrency = self.concurrency or concurrency_for(self.memory_budget_mib)
        return PasswordChecks(concurrency, self.queue)


@dataclass(frozen=True)
class AuthState:
    """What the auth service builds at start-up (`start`)."""

    ack: ReplicaAck | None  # None: writes are not confirmed by a replica
    refresh_tokens: AsyncRefreshTokens  # with that ack
    passwords: PasswordChecks
    # An unknown user's password is checked against it, so timing does not tell who has
    # an account. Made at start-up: the first unknown user would otherwise wait for it.
    dummy_hash: str


AuthStateDep = Annotated[AuthState, Depends(part_of(AuthState))]


async def start(runtime: Runtime) -> Callable[[], Awaitable[None]]:
    """Start-up hook: the replica ack and the password checks from the environment, and
    the refresh tokens."""
    settings = ReplicaAckSettings()
    ack = (
        ReplicaAck(settings.replica_acks, settings.replica_ack_timeout_ms)
        if settings.replica_acks
        else None
    )
    passwords = PasswordCheckSettings().checks()
    dummy_hash = await passwords.hash(secrets.token_urlsafe(16))
    runtime.attach(
        AuthState(ack, AsyncRefreshTokens(runtime.redis, ack=ack), passwords, dummy_hash)
    )

    async def stop() -> None:
        passwords.close()

    return stop


class Login(BaseModel):
    # The rule the gateway's per-account limit applies too (keys.USERNAME_PATTERN).
    username: str = Field(
        min_length=1, max_length=keys.MAX_IDENTIFIER_LENGTH, pattern=keys.USERNAME_PATTERN
    )
    password: str = Field(min_length=1, max_length=128)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=200)


class Tokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = int(keys.ACCESS_TOKEN_LIFETIME.total_seconds())


def _access_token(runtime: Runtime, user: User, session_id: str) -> str:
    signing = runtime.settings.signing_key()
    assert signing is not None, "main.build starts auth only with its signing key"
    token, _ = issue_access_token(
        signing,
        runtime.settings.jwt_issuer,
        user_id=user.id,
        roles=user.role_names,
        session_id=session_id,
    )
    return token


@router.post(
    "/login",
    responses={
        401: {"description": "wrong username or password"},
        503: {"description": "too many logins at once (Retry-After)"},
    },
)
async def login(body: Login, runtime: RuntimeDep, state: AuthStateDep) -> Tokens:
    async with runtime.db() as db:
        user = (await db.execute(select(User).where(User.username == body.username))).scalar()
    # argon2 costs ~0.1 s of CPU and 64 MiB by design: off the event loop, a bounded number
    # at once. An unknown user is checked against a dummy hash, so timing does not tell who
    # has an account.
    stored = user.password_hash if user is not None else state.dummy_hash
    try:
        matches = await state.passwords.verify(stored, body.password)
    except PasswordChecksBusy as busy:
        runtime.metrics.password_checks_busy.inc()
        log.warning("login refused: password checks busy", extra={"detail": str(busy)})
        raise HTTPException(
            503, "too many logins at once, try again shortly", headers={"Retry-After": "1"}
        ) from None
    if user is None or not matches:
        raise HTTPException(401, "wrong username or password", headers=_UNAUTHORIZED)
    issued = await state.refresh_tokens.issue(user.id, "courses")
    session_id = issued.record.family
    try:
        await AsyncSessions(runtime.redis).create(user.id, user.role_names, session_id=session_id)
    except Exception:
        # No session, no login: take the refresh family back rather than leave half a login
        # (never handed out: no replica need confirm its end).
        await AsyncRefreshTokens(runtime.redis).revoke(session_id)
        raise
    return Tokens(access_token=_access_token(runtime, user, session_id), refresh_token=issued.token)


@router.post("/refresh", responses={401: {"description": "unknown, expired or reused token"}})
async def refresh(body: RefreshRequest, runtime: RuntimeDep, state: AuthStateDep) -> Tokens:
    try:
        rotation = await state.refresh_tokens.rotate(body.refresh_token)
    except InvalidRefreshToken as error:
        raise HTTPException(401, str(error), headers=_UNAUTHORIZED) from None
    if rotation.status is RotationStatus.REUSED:
        runtime.metrics.refresh_reuse.inc()
        assert rotation.record is not None
        await AsyncSessions(runtime.redis).delete(rotation.record.family)
        log.warning("refresh token reuse: family revoked", extra={"family": rotation.record.family})
        raise HTTPException(401, "refresh token reused: session revoked", headers=_UNAUTHORIZED)
    if not rotation.ok:
        raise HTTPException(401, "unknown or expired refresh token", headers=_UNAUTHORIZED)
    assert rotation.record is not None and rotation.token is not None
    async with runtime.db() as db:
        user = await db.get(User, rotation.record.user_id)
    if user is None:
        await state.refresh_tokens.revoke(rotation.record.family)
        raise HTTPException(401, "user no longer exists", headers=_UNAUTHORIZED)
    sessions = AsyncSessions(runtime.redis)
    if await sessions.touch(rotation.record.family) is None:
        # The session expired (24 h) while the family lives on (7 d): a refresh is activity.
        await sessions.create(user.id, user.role_names, session_id=rotation.record.family)
    return Tokens(
        access_token=_access_token(runtime, user, rotation.record.family),
        refresh_token=rotation.token,
    )


@router.post("/logout", status_code=204, responses={401: {"description": "invalid token"}})
async def logout(runtime: RuntimeDep, state: AuthStateDep, claims: ClaimsDep) -> Response:
    # The three writes go out together; each touches a different slot.
    writes = (
        revoke_script(claims.jti, claims.expires_at),
        Command(("DEL", keys.refresh_token(claims.session_id))),
        Command(("DEL", keys.session(claims.session_id))),
    )
    ack = state.ack
    if ack is not None:
        # Then WAIT on each node written: a NotReplicated is a 503, as any RedisError.
        result = await write_acknowledged_async(runtime.redis, writes, ack)
        require_acknowledged(result, "logout")
        return Response(status_code=204)
    replies = await execute_async(runtime.redis, Batch(writes))
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return Response(status_code=204)


def serve(options: ServeOptions) -> Served:
    """This service's routes and start-up hooks (`courseredis.services.app.Served`)."""
    return Served(router, (start,))

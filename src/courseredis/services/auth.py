"""The auth service: login, refresh-token rotation, logout.

A login creates one session whose id is also the refresh-token family and the `sid` claim
of every access token it issues, so logout can end all three at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from courseredis import keys
from courseredis.patterns.blacklist import revoke_script
from courseredis.patterns.flow import Batch, Command, execute_async
from courseredis.patterns.refresh import AsyncRefreshTokens, InvalidRefreshToken, RotationStatus
from courseredis.patterns.sessions import AsyncSessions
from courseredis.services.db.models import User
from courseredis.services.passwords import verify_password
from courseredis.services.runtime import Runtime, RuntimeDep
from courseredis.services.tokens import (
    InvalidToken,
    bearer_token,
    decode_access_token,
    issue_access_token,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/auth", tags=["auth"])
_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    password: str = Field(min_length=1, max_length=128)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=200)


class Tokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = int(keys.ACCESS_TOKEN_LIFETIME.total_seconds())


def _roles(user: User) -> tuple[str, ...]:
    return tuple(r for r in user.roles.split(",") if r)


def _access_token(runtime: Runtime, user: User, session_id: str) -> str:
    token, _ = issue_access_token(
        runtime.settings.jwt_secret.get_secret_value(),
        runtime.settings.jwt_issuer,
        user_id=user.id,
        roles=_roles(user),
        session_id=session_id,
    )
    return token


@router.post("/login", responses={401: {"description": "wrong username or password"}})
async def login(body: Login, runtime: RuntimeDep) -> Tokens:
    async with runtime.db() as db:
        user = (await db.execute(select(User).where(User.username == body.username))).scalar()
    # argon2 costs ~0.1 s of CPU by design: off the event loop, other requests go on.
    matches = user is not None and await asyncio.to_thread(
        verify_password, user.password_hash, body.password
    )
    if user is None or not matches:
        raise HTTPException(401, "wrong username or password", headers=_UNAUTHORIZED)
    issued = await AsyncRefreshTokens(runtime.redis).issue(user.id, "courses")
    session_id = issued.record.family
    try:
        await AsyncSessions(runtime.redis).create(user.id, _roles(user), session_id=session_id)
    except Exception:
        # No session, no login: take the refresh family back rather than leave half a login.
        await AsyncRefreshTokens(runtime.redis).revoke(session_id)
        raise
    return Tokens(access_token=_access_token(runtime, user, session_id), refresh_token=issued.token)


@router.post("/refresh", responses={401: {"description": "unknown, expired or reused token"}})
async def refresh(body: RefreshRequest, runtime: RuntimeDep) -> Tokens:
    try:
        rotation = await AsyncRefreshTokens(runtime.redis).rotate(body.refresh_token)
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
        await AsyncRefreshTokens(runtime.redis).revoke(rotation.record.family)
        raise HTTPException(401, "user no longer exists", headers=_UNAUTHORIZED)
    sessions = AsyncSessions(runtime.redis)
    if await sessions.touch(rotation.record.family) is None:
        # The session expired (24 h) while the family lives on (7 d): a refresh is activity.
        await sessions.create(user.id, _roles(user), session_id=rotation.record.family)
    return Tokens(
        access_token=_access_token(runtime, user, rotation.record.family),
        refresh_token=rotation.token,
    )


@router.post("/logout", status_code=204, responses={401: {"description": "invalid token"}})
async def logout(
    runtime: RuntimeDep, authorization: Annotated[str | None, Header()] = None
) -> Response:
    try:
        claims = decode_access_token(
            runtime.settings.jwt_secret.get_secret_value(),
            runtime.settings.jwt_issuer,
            bearer_token(authorization),
        )
    except InvalidToken as error:
        raise HTTPException(401, str(error), headers=_UNAUTHORIZED) from None
    # The three writes go out together; each touches a different slot.
    replies = await execute_async(
        runtime.redis,
        Batch(
            (
                revoke_script(claims.jti, claims.expires_at),
                Command(("DEL", keys.refresh_token(claims.session_id))),
                Command(("DEL", keys.session(claims.session_id))),
            )
        ),
    )
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return Response(status_code=204)

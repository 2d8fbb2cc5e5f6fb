"""Access tokens: short-lived HS256 JWTs carrying `sub`, `roles`, `jti`, `sid`, `exp`.

Only HS256 is accepted, so a token claiming `alg: none` or another algorithm is refused
before its claims are read. The session id `sid` is also the refresh-token family: one
login is one session is one family, and logout ends all three.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from courseredis import keys
from courseredis.patterns.sessions import ROLE

ALGORITHM = "HS256"


class InvalidToken(ValueError):
    """Malformed, expired, wrongly signed or incomplete: answer 401."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    roles: tuple[str, ...]
    jti: str
    session_id: str
    expires_at: int  # seconds since the epoch

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


def issue_access_token(
    secret: str, issuer: str, *, user_id: int, roles: tuple[str, ...], session_id: str
) -> tuple[str, AccessClaims]:
    now = int(time.time())
    claims = AccessClaims(
        user_id=user_id,
        roles=roles,
        jti=str(uuid.uuid4()),
        session_id=session_id,
        expires_at=now + int(keys.ACCESS_TOKEN_LIFETIME.total_seconds()),
    )
    token = jwt.encode(
        {
            "sub": str(user_id),
            "roles": list(roles),
            "jti": claims.jti,
            "sid": session_id,
            "iss": issuer,
            "iat": now,
            "exp": claims.expires_at,
        },
        secret,
        algorithm=ALGORITHM,
    )
    return token, claims


def decode_access_token(secret: str, issuer: str, token: str) -> AccessClaims:
    if len(token) > 4096:
        raise InvalidToken("token too long")
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=issuer,
            options={"require": ["exp", "sub", "jti", "sid", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except jwt.InvalidTokenError as error:
        raise InvalidToken(f"invalid token: {error}") from None
    try:
        user_id = keys.valid_int_id("sub", int(payload["sub"]))
        jti = keys.valid_uuid("jti", payload["jti"])
        session_id = keys.valid_uuid("sid", payload["sid"])
        roles = payload.get("roles", [])
        if not isinstance(roles, list) or not all(
            isinstance(r, str) and ROLE.fullmatch(r) for r in roles
        ):
            raise ValueError("bad roles")
        expires_at = int(payload["exp"])
    except (ValueError, TypeError, keys.InvalidIdentifier):
        raise InvalidToken("invalid token claims") from None
    return AccessClaims(user_id, tuple(roles), jti, session_id, expires_at)


class TokenVerifier:
    """`decode_access_token` for one key and issuer, remembering the tokens it accepted.

    The same string under the same key always verifies alike, so a token seen before only
    needs its expiry checked again; whether it was revoked is not decided here (the gateway
    asks Redis on every request). Only accepted tokens are kept: one refused for a reason
    that time can lift (an `nbf` or `iat` in the future) is verified anew each time. The
    oldest entry makes room for a new one.
    """

    def __init__(self, secret: str, issuer: str, max_tokens: int = 4096) -> None:
        self._secret = secret
        self._issuer = issuer
        self._max_tokens = max_tokens
        self._accepted: dict[str, AccessClaims] = {}

    def verify(self, token: str) -> AccessClaims:
        claims = self._accepted.get(token)
        if claims is None:
            claims = decode_access_token(self._secret, self._issuer, token)
            if len(self._accepted) >= self._max_tokens:
                del self._accepted[next(iter(self._accepted))]
            self._accepted[token] = claims
        elif claims.expires_at <= time.time():  # PyJWT's own test, without leeway
            del self._accepted[token]
            raise InvalidToken("token expired")
        return claims


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise InvalidToken("missing bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("expected 'Authorization: Bearer <token>'")
    return token.strip()

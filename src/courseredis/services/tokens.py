"""Access tokens: short-lived EdDSA (Ed25519) JWTs carrying `sub`, `roles`, `jti`, `sid`, `exp`.

Signed with a private key only the auth service holds; every service verifies with the
public keys (`JWT_PUBLIC_KEYS`), so a compromised gateway or upstream can check tokens but
not make one. Each token names its key in the header (`kid`): the RFC 7638 thumbprint of
the public key, computed from the key itself, so a key and its name can never disagree.

Rotation (docs/security.md): the verifiers accept every public key they are given; auth
signs with one. Add the new public key everywhere, then give auth the new private key,
then, once the last token signed with the old key has expired (15 m), drop the old
public key.

Only EdDSA is accepted, and only with a key of the set, chosen by `kid`: a token claiming
`alg: none`, HS256 (say keyed with a public key: algorithm confusion) or any other
algorithm, or naming a key we do not hold, is refused before its claims are read. What a
401 says is generic ("invalid token", "token expired"); the reason goes to the logs.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from courseredis import keys
from courseredis.patterns.sessions import ROLE

ALGORITHM = "EdDSA"
log = logging.getLogger(__name__)
_PUBLIC_PEM = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


class InvalidToken(ValueError):
    """Malformed, expired, wrongly signed or incomplete: answer 401.

    `str(error)` is what the client is told; `reason` (logs only) says what was wrong.
    """

    def __init__(self, detail: str, reason: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason or detail


class InvalidKey(ValueError):
    """A key setting holds something other than the Ed25519 PEM key(s) it should."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key's RFC 7638 JWK thumbprint (SHA-256, base64url): its `kid`."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"crv": "Ed25519", "kty": "OKP", "x": _b64(raw)}
    canonical = json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()
    return _b64(hashlib.sha256(canonical).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    """The private key auth signs with, and its `kid`."""

    private_key: Ed25519PrivateKey
    kid: str

    @classmethod
    def from_pem(cls, pem: str) -> SigningKey:
        return _signing_key(pem)


@functools.lru_cache(maxsize=4)
def _signing_key(pem: str) -> SigningKey:
    try:
        private_key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as error:
        raise InvalidKey(f"not a PEM private key without a passphrase: {error}") from None
    if not isinstance(private_key, Ed25519PrivateKey):
        raise InvalidKey(f"the private key must be Ed25519, not {type(private_key).__name__}")
    return SigningKey(private_key, key_id(private_key.public_key()))


@dataclass(frozen=True)
class VerifyingKeys:
    """The public keys tokens may be signed with, by `kid` (two during a rotation)."""

    by_kid: Mapping[str, Ed25519PublicKey]

    @classmethod
    def from_pem(cls, pems: str) -> VerifyingKeys:
        """One or more PEM public keys, one after the other (a PEM bundle)."""
        return _verifying_keys(pems)

    def __contains__(self, kid: object) -> bool:
        return kid in self.by_kid


@functools.lru_cache(maxsize=4)
def _verifying_keys(pems: str) -> VerifyingKeys:
    blocks = _PUBLIC_PEM.findall(pems)
    if not blocks:
        raise InvalidKey("no PEM public key (-----BEGIN PUBLIC KEY-----) found")
    if _PUBLIC_PEM.sub("", pems).strip():
        raise InvalidKey("something other than PEM public keys is in the bundle")
    by_kid: dict[str, Ed25519PublicKey] = {}
    for block in blocks:
        try:
            public_key = serialization.load_pem_public_key(block.encode())
        except ValueError as error:
            raise InvalidKey(f"not a PEM public key: {error}") from None
        if not isinstance(public_key, Ed25519PublicKey):
            raise InvalidKey(f"public keys must be Ed25519, not {type(public_key).__name__}")
        by_kid[key_id(public_key)] = public_key
    return VerifyingKeys(by_kid)


@dataclass(frozen=True)
class KeyPair:
    """A private key and its public key, both PEM: what an operator (or the local stack)
    generates, as `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` would."""

    private_pem: str
    public_pem: str

    @classmethod
    def generate(cls) -> KeyPair:
        private_key = Ed25519PrivateKey.generate()
        private_pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        public_pem = (
            private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        return cls(private_pem, public_pem)


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
    signing: SigningKey, issuer: str, *, user_id: int, roles: tuple[str, ...], session_id: str
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
        signing.private_key,
        algorithm=ALGORITHM,
        headers={"kid": signing.kid},
    )
    return token, claims


_INVALID = "invalid token"


def decode_access_token(verifying: VerifyingKeys, issuer: str, token: str) -> AccessClaims:
    if len(token) > 4096:
        raise InvalidToken(_INVALID, "token too long")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as error:
        raise InvalidToken(_INVALID, f"unreadable header: {error}") from None
    # Checked before PyJWT is given a key: the key is chosen by `kid`, and only for EdDSA.
    if header.get("alg") != ALGORITHM:
        raise InvalidToken(_INVALID, f"algorithm {str(header.get('alg'))[:20]!r} refused")
    kid = header.get("kid")
    public_key = verifying.by_kid.get(kid) if isinstance(kid, str) else None
    if public_key is None:
        raise InvalidToken(_INVALID, f"unknown key id {str(kid)[:50]!r}")
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=[ALGORITHM],
            issuer=issuer,
            options={"require": ["exp", "sub", "jti", "sid", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except jwt.InvalidTokenError as error:
        raise InvalidToken(_INVALID, str(error)) from None
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
    except (ValueError, TypeError, keys.InvalidIdentifier) as error:
        raise InvalidToken(_INVALID, f"invalid claims: {error}") from None
    return AccessClaims(user_id, tuple(roles), jti, session_id, expires_at)


class TokenVerifier:
    """`decode_access_token` for one key set and issuer, remembering the tokens it accepted.

    The same string under the same keys always verifies alike, so a token seen before only
    needs its expiry checked again; whether it was revoked is not decided here (the gateway
    asks Redis on every request). Only accepted tokens are kept: one refused for a reason
    that time can lift (an `nbf` or `iat` in the future) is verified anew each time. The
    oldest entry makes room for a new one.
    """

    def __init__(self, verifying: VerifyingKeys, issuer: str, max_tokens: int = 4096) -> None:
        self._verifying = verifying
        self._issuer = issuer
        self._max_tokens = max_tokens
        self._accepted: dict[str, AccessClaims] = {}

    def verify(self, token: str) -> AccessClaims:
        claims = self._accepted.get(token)
        if claims is None:
            claims = decode_access_token(self._verifying, self._issuer, token)
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

"""Login, refresh rotation and logout, through the gateway, on real Redis."""

from __future__ import annotations

import time
import uuid

import jwt

from courseredis import keys
from courseredis.ops.chaos.hostile import hand_made_jws
from courseredis.services.tokens import KeyPair, SigningKey
from tests.services.flows import login
from tests.services.platform import JWT_KEYS
from tests.support import assert_follows_schema


async def test_login_issues_tokens_and_a_session_that_follow_the_schema(
    platform, credentials, admin_client
):
    username, password = credentials.students[0]
    session = await login(platform.gateway, username, password)
    claims = jwt.decode(
        session.access_token, JWT_KEYS.public_pem, algorithms=["EdDSA"], issuer="course-platform"
    )
    assert {"sub", "roles", "jti", "exp", "sid"} <= claims.keys()
    assert claims["exp"] - time.time() <= keys.ACCESS_TOKEN_LIFETIME.total_seconds()
    assert claims["roles"] == ["student"]
    assert_follows_schema(admin_client, keys.session(claims["sid"]))
    assert_follows_schema(admin_client, keys.refresh_token(claims["sid"]))
    assert session.refresh_token.startswith(claims["sid"] + ".")


async def test_a_wrong_password_is_401_and_writes_nothing(platform, credentials):
    username, _ = credentials.students[0]
    response = await platform.gateway.post(
        "/auth/login", json={"username": username, "password": "wrong"}
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "wrong username or password"


async def test_refresh_rotates_and_a_reused_token_revokes_the_family(
    platform, credentials, admin_client
):
    session = await login(platform.gateway, *credentials.students[1])
    family = session.refresh_token.split(".")[0]
    rotated = await platform.gateway.post(
        "/auth/refresh", json={"refresh_token": session.refresh_token}
    )
    assert rotated.status_code == 200
    successor = rotated.json()["refresh_token"]
    assert successor != session.refresh_token
    # Within the grace window the same old token gets the same successor back.
    retried = await platform.gateway.post(
        "/auth/refresh", json={"refresh_token": session.refresh_token}
    )
    assert retried.json()["refresh_token"] == successor
    # A token older than the previous one is a theft signal: the whole family goes.
    newer = await platform.gateway.post("/auth/refresh", json={"refresh_token": successor})
    assert newer.status_code == 200
    reused = await platform.gateway.post(
        "/auth/refresh", json={"refresh_token": session.refresh_token}
    )
    assert reused.status_code == 401
    assert "reused" in reused.json()["detail"]
    assert admin_client.exists(keys.refresh_token(family), keys.session(family)) == 0
    latest = await platform.gateway.post(
        "/auth/refresh", json={"refresh_token": newer.json()["refresh_token"]}
    )
    assert latest.status_code == 401
    # ... and the access token of that session is refused at once: its session is gone.
    courses = await platform.gateway.get(
        "/courses", headers={"Authorization": f"Bearer {newer.json()['access_token']}"}
    )
    assert courses.status_code == 401


async def test_a_forged_refresh_secret_for_a_known_family_is_401_and_logs_nobody_out(
    platform, credentials, admin_client
):
    session = await login(platform.gateway, *credentials.students[3])
    # The family id is the `sid` of every access token: an attacker has it, not the secret.
    family = session.refresh_token.split(".")[0]
    record = admin_client.get(keys.refresh_token(family))
    forged = await platform.gateway.post(
        "/auth/refresh", json={"refresh_token": f"{family}.{'A' * 43}"}
    )
    assert forged.status_code == 401
    assert "reused" not in forged.json()["detail"]
    assert admin_client.get(keys.refresh_token(family)) == record
    owner = await platform.gateway.post(
        "/auth/refresh", json={"refresh_token": session.refresh_token}
    )
    assert owner.status_code == 200
    assert session.refresh_token.split(".")[1] not in admin_client.get(keys.refresh_token(family))


async def test_after_logout_the_old_access_token_is_refused_at_once(
    platform, credentials, admin_client
):
    session = await login(platform.gateway, *credentials.students[2])
    assert (await platform.gateway.get("/courses", headers=session.headers)).status_code == 200
    before_logout = time.time()
    out = await platform.gateway.post("/auth/logout", headers=session.headers)
    assert out.status_code == 204
    again = await platform.gateway.get("/courses", headers=session.headers)
    assert again.status_code == 401
    claims = jwt.decode(
        session.access_token, JWT_KEYS.public_pem, algorithms=["EdDSA"], issuer="course-platform"
    )
    ttl_ms = assert_follows_schema(admin_client, keys.jwt_revoked(claims["jti"]))
    remaining_ms = (claims["exp"] - before_logout) * 1000
    assert ttl_ms <= remaining_ms + keys.REVOCATION_SKEW.total_seconds() * 1000
    refresh = await platform.gateway.post(
        "/auth/refresh", json={"refresh_token": session.refresh_token}
    )
    assert refresh.status_code == 401


def forged(claims: dict[str, object], *, keys: KeyPair = JWT_KEYS) -> str:
    """Signed as auth signs, with `keys` (by default the platform's own)."""
    signing = SigningKey.from_pem(keys.private_pem)
    return jwt.encode(claims, signing.private_key, algorithm="EdDSA", headers={"kid": signing.kid})


async def test_hostile_tokens_get_401(platform):
    now = int(time.time())
    good = {
        "sub": "1",
        "roles": ["admin"],
        "jti": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "iss": "course-platform",
        "iat": now,
        "exp": now + 600,
    }
    unsigned = hand_made_jws({"alg": "none"}, good, None)
    tokens = {
        "alg none": unsigned,
        "another key": forged(good, keys=KeyPair.generate()),
        "HS256 keyed with the public key": hand_made_jws(
            {"alg": "HS256", "kid": SigningKey.from_pem(JWT_KEYS.private_pem).kid},
            good,
            JWT_KEYS.public_pem.encode(),
        ),
        "expired": forged({**good, "exp": now - 10}),
        "no jti": forged({k: v for k, v in good.items() if k != "jti"}),
        "bad sub": forged({**good, "sub": "1; DROP"}),
        "hash tag jti": forged({**good, "jti": "{x}"}),
        "garbage": "not.a.token",
        "huge": "a" * 5000,
    }
    for name, token in tokens.items():
        response = await platform.gateway.get(
            "/courses", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, name
        # PyJWT's reason (which check failed) is for the logs, not for the client.
        assert response.json()["detail"] in ("invalid token", "token expired"), name
    assert (await platform.gateway.get("/courses")).status_code == 401
    basic = await platform.gateway.get("/courses", headers={"Authorization": "Basic eDp5"})
    assert basic.status_code == 401

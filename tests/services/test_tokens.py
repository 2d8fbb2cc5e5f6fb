"""Access tokens: EdDSA under a named key (`kid`), verified against the public keys only.

The gateway's verifier trusts a token it checked once until it expires, and never past
it; anything not byte for byte the token it accepted is checked afresh. A key rotation
accepts the old key and the new one side by side. Forgeries are tried as an attacker
would make them.
"""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from courseredis.ops.chaos.hostile import b64url, hand_made_jws
from courseredis.services.tokens import (
    AccessClaims,
    InvalidKey,
    InvalidToken,
    KeyPair,
    SigningKey,
    TokenVerifier,
    VerifyingKeys,
    decode_access_token,
    issue_access_token,
)

ISSUER = "course-platform"
KEYS = KeyPair.generate()
SIGNING = SigningKey.from_pem(KEYS.private_pem)
VERIFYING = VerifyingKeys.from_pem(KEYS.public_pem)


def token_for(user_id: int, signing: SigningKey = SIGNING) -> tuple[str, AccessClaims]:
    return issue_access_token(
        signing, ISSUER, user_id=user_id, roles=("student",), session_id=str(uuid.uuid4())
    )


def ed25519_by_hand(header: dict[str, object], claims: dict[str, object]) -> str:
    """Signed with our private key, with a header PyJWT would not write."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(SIGNING.private_key.sign(signing_input.encode()))}"


def good_claims() -> dict[str, object]:
    now = int(time.time())
    return {
        "sub": "1",
        "roles": ["admin"],
        "jti": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "iss": ISSUER,
        "iat": now,
        "exp": now + 600,
    }


# --- the signature and the key ---------------------------------------------------------------


def test_a_token_is_signed_with_eddsa_and_names_its_key():
    token, claims = token_for(7)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["kid"] == SIGNING.kid
    assert decode_access_token(VERIFYING, ISSUER, token) == claims


def test_the_key_id_is_the_public_keys_thumbprint_so_both_halves_agree():
    assert SIGNING.kid in VERIFYING
    assert SigningKey.from_pem(KeyPair.generate().private_pem).kid not in VERIFYING


def test_during_a_rotation_old_and_new_tokens_verify_until_they_expire():
    old, new = KeyPair.generate(), KeyPair.generate()
    before, _ = token_for(1, SigningKey.from_pem(old.private_pem))
    # Step 1: every verifier gets both public keys. Step 2: auth signs with the new key.
    both = VerifyingKeys.from_pem(old.public_pem + new.public_pem)
    after, _ = token_for(2, SigningKey.from_pem(new.private_pem))
    assert jwt.get_unverified_header(after)["kid"] == SigningKey.from_pem(new.private_pem).kid
    assert decode_access_token(both, ISSUER, before).user_id == 1
    assert decode_access_token(both, ISSUER, after).user_id == 2
    # Step 3, after the access-token lifetime: the old key goes; its tokens expired anyway.
    only_new = VerifyingKeys.from_pem(new.public_pem)
    with pytest.raises(InvalidToken):
        decode_access_token(only_new, ISSUER, before)
    assert decode_access_token(only_new, ISSUER, after).user_id == 2
    # Valid until it expires, not a second longer, whichever key signed it.
    old_signing = SigningKey.from_pem(old.private_pem)
    expired = jwt.encode(
        {**good_claims(), "exp": int(time.time()) - 1},
        old_signing.private_key,
        algorithm="EdDSA",
        headers={"kid": old_signing.kid},
    )
    with pytest.raises(InvalidToken, match="expired"):
        decode_access_token(both, ISSUER, expired)


def test_a_token_under_an_unknown_kid_or_none_is_refused():
    stranger = SigningKey.from_pem(KeyPair.generate().private_pem)
    claims = good_claims()
    forged = {
        "a stranger's key and kid": jwt.encode(
            claims, stranger.private_key, algorithm="EdDSA", headers={"kid": stranger.kid}
        ),
        "a stranger's key under our kid": jwt.encode(
            claims, stranger.private_key, algorithm="EdDSA", headers={"kid": SIGNING.kid}
        ),
        "our key, no kid": jwt.encode(claims, SIGNING.private_key, algorithm="EdDSA"),
        "our key, a kid we do not hold": jwt.encode(
            claims, SIGNING.private_key, algorithm="EdDSA", headers={"kid": "other"}
        ),
        "our key, a kid that is not a string": ed25519_by_hand({"alg": "EdDSA", "kid": 5}, claims),
    }
    for name, token in forged.items():
        with pytest.raises(InvalidToken, match=r"^invalid token$"):
            decode_access_token(VERIFYING, ISSUER, token)
        assert name


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "HS256", "typ": "JWT", "kid": SIGNING.kid},
        {"alg": "HS256", "typ": "JWT"},
        {"alg": "RS256", "kid": SIGNING.kid},
    ],
    ids=["HS256 with our kid", "HS256 without kid", "RS256 header"],
)
def test_an_hmac_token_keyed_with_the_public_key_is_refused(header):
    """Algorithm confusion: a verifier that let the token pick the algorithm would check
    an HMAC with the (public) key as secret, and anyone could sign."""
    token = hand_made_jws(header, good_claims(), KEYS.public_pem.encode())
    with pytest.raises(InvalidToken, match=r"^invalid token$"):
        decode_access_token(VERIFYING, ISSUER, token)


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_an_unsigned_token_is_refused(alg):
    with pytest.raises(InvalidToken, match=r"^invalid token$"):
        decode_access_token(VERIFYING, ISSUER, hand_made_jws({"alg": alg}, good_claims(), None))


def test_a_refusal_tells_the_client_nothing_and_the_logs_why():
    token, _ = token_for(7)
    header, payload, signature = token.split(".")
    altered = f"{header}.{payload}.{signature[:-4]}AAAA"
    with pytest.raises(InvalidToken) as refused:
        decode_access_token(VERIFYING, ISSUER, altered)
    assert str(refused.value) == "invalid token"
    assert "Signature verification failed" in refused.value.reason


@pytest.mark.parametrize(
    "bundle",
    [
        "",
        "not a key",
        KeyPair.generate().private_pem,
        KeyPair.generate().public_pem + "trailing text",
        X25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    ],
    ids=["empty", "text", "a private key", "trailing text", "an X25519 key"],
)
def test_a_public_key_bundle_that_is_not_ed25519_pem_is_refused(bundle):
    with pytest.raises(InvalidKey):
        VerifyingKeys.from_pem(bundle)


def test_a_private_key_that_is_not_ed25519_pem_is_refused():
    with pytest.raises(InvalidKey):
        SigningKey.from_pem(KEYS.public_pem)


# --- the gateway's verifier -------------------------------------------------------------------


def test_a_token_accepted_once_is_accepted_again_with_the_same_claims():
    verifier = TokenVerifier(VERIFYING, ISSUER)
    token, claims = token_for(7)
    assert verifier.verify(token) == claims
    assert verifier.verify(token) == claims


def test_a_token_signed_with_another_key_or_altered_is_refused_even_after_a_good_one():
    verifier = TokenVerifier(VERIFYING, ISSUER)
    token, _ = token_for(7)
    verifier.verify(token)
    forged, _ = token_for(7, SigningKey.from_pem(KeyPair.generate().private_pem))
    with pytest.raises(InvalidToken):
        verifier.verify(forged)
    with pytest.raises(InvalidToken):
        verifier.verify(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))


def test_an_accepted_token_is_refused_once_it_expires(monkeypatch):
    verifier = TokenVerifier(VERIFYING, ISSUER)
    token, claims = token_for(7)
    verifier.verify(token)
    monkeypatch.setattr(time, "time", lambda: float(claims.expires_at))
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)


def test_a_token_forgotten_to_make_room_is_verified_anew():
    verifier = TokenVerifier(VERIFYING, ISSUER, max_tokens=2)
    issued = [token_for(user_id) for user_id in (1, 2, 3)]
    for token, claims in issued:
        assert verifier.verify(token) == claims
    for token, claims in issued:  # the first, forgotten, is simply verified anew
        assert verifier.verify(token) == claims

"""The gateway's token verifier: a token checked once is trusted until it expires, and
never past it; anything not byte for byte the token it accepted is checked afresh."""

from __future__ import annotations

import time
import uuid

import pytest

from courseredis.services.tokens import (
    AccessClaims,
    InvalidToken,
    TokenVerifier,
    issue_access_token,
)

SECRET = "verifier-secret-" + "k" * 40
ISSUER = "course-platform"


def token_for(user_id: int, secret: str = SECRET) -> tuple[str, AccessClaims]:
    return issue_access_token(
        secret, ISSUER, user_id=user_id, roles=("student",), session_id=str(uuid.uuid4())
    )


def test_a_token_accepted_once_is_accepted_again_with_the_same_claims():
    verifier = TokenVerifier(SECRET, ISSUER)
    token, claims = token_for(7)
    assert verifier.verify(token) == claims
    assert verifier.verify(token) == claims


def test_a_token_signed_with_another_key_or_altered_is_refused_even_after_a_good_one():
    verifier = TokenVerifier(SECRET, ISSUER)
    token, _ = token_for(7)
    verifier.verify(token)
    forged, _ = token_for(7, secret="another-secret-" + "k" * 40)
    with pytest.raises(InvalidToken):
        verifier.verify(forged)
    with pytest.raises(InvalidToken):
        verifier.verify(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))


def test_an_accepted_token_is_refused_once_it_expires(monkeypatch):
    verifier = TokenVerifier(SECRET, ISSUER)
    token, claims = token_for(7)
    verifier.verify(token)
    monkeypatch.setattr(time, "time", lambda: float(claims.expires_at))
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)


def test_a_token_forgotten_to_make_room_is_verified_anew():
    verifier = TokenVerifier(SECRET, ISSUER, max_tokens=2)
    issued = [token_for(user_id) for user_id in (1, 2, 3)]
    for token, claims in issued:
        assert verifier.verify(token) == claims
    for token, claims in issued:  # the first, forgotten, is simply verified anew
        assert verifier.verify(token) == claims

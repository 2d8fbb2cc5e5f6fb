"""Password hashing: a round trip, and False, never an exception, for anything else."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from courseredis.services.passwords import hash_password, needs_rehash, verify_password


def test_round_trip() -> None:
    password_hash = hash_password("correct horse battery staple")
    assert password_hash.startswith("$argon2id$")
    assert verify_password(password_hash, "correct horse battery staple")
    assert not verify_password(password_hash, "correct horse battery stapler")
    assert not needs_rehash(password_hash)


def test_hashes_are_salted() -> None:
    assert hash_password("same password") != hash_password("same password")


@pytest.mark.parametrize(
    "bad_hash",
    [
        "",
        "not a hash",
        "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$truncated",
        "$argon2id$v=19$m=65536,t=3,p=4$",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        "pbkdf2_sha256$600000$salt$hash",
    ],
)
def test_a_malformed_hash_verifies_false(bad_hash: str) -> None:
    assert verify_password(bad_hash, "anything") is False
    assert needs_rehash(bad_hash)


def test_a_hash_with_weaker_parameters_needs_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw")
    assert verify_password(weak, "pw")
    assert needs_rehash(weak)

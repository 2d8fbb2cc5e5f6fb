"""Password hashes: argon2id through argon2-cffi, with its RFC 9106 default parameters.

`verify_password` answers yes or no and never raises for a wrong password or a hash it
cannot read (a truncated column, a hash from another scheme): a login handler then has one
failure path, and a malformed row cannot turn a login into a 500 that tells an attacker
which accounts are odd.

Each hash costs about 0.1 s of CPU and 64 MiB of memory by design; hash off the event loop
(`asyncio.to_thread`) where many logins may arrive at once.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id PHC string (`$argon2id$v=19$m=...`) with a fresh random salt."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches `password_hash`; False for a malformed hash too."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than today's, or is unreadable.

    Call it after a successful `verify_password`, while the password is at hand, and store
    `hash_password(password)` if it says so.
    """
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True

"""The key schema: every key the platform writes, declared once.

Services build keys only through the builders below; the keyspace audit and the smoke
suite map keys back with `classify`; the ACL rules (with the services' patterns from
`courseredis.services.registry`) and the table in docs/architecture.md (`key_table`) are
generated from `PATTERNS`. A builder validates every identifier before it reaches a key, so no
user-controlled string can create a key outside this schema.

Hash tags: none. In Redis Cluster a literal `{...}` pins a key to a slot; no pattern here
needs two keys in one slot, because each multi-part operation keeps its state in one key:
the several windows of a rate-limit policy share the key of their (identity, route), and a
refresh-token family is one key whose record holds the digests of its secrets. Braces
are therefore refused in every identifier.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from courseredis import ratelimit_algorithms

RedisType = Literal["string", "hash", "zset", "stream"]

# The lifetimes the patterns use by default; TTL rules below are derived from them.
ACCESS_TOKEN_LIFETIME = timedelta(minutes=15)
REVOCATION_SKEW = timedelta(seconds=30)
REFRESH_TOKEN_TTL = timedelta(days=7)
LOCK_LEASE = timedelta(seconds=30)
COURSE_CACHE_TTL = timedelta(minutes=5)
SESSION_TTL = timedelta(hours=24)
IDEMPOTENCY_TTL = timedelta(hours=24)
# The longest rate-limit window a policy may use, and the longest a key may live: as many
# of those windows as the algorithm that keeps its key longest needs.
RATE_LIMIT_MAX_WINDOW = timedelta(hours=1)
RATE_LIMIT_KEY_MAX_TTL = ratelimit_algorithms.key_ttl_windows() * RATE_LIMIT_MAX_WINDOW
# An event stream has no TTL (it is the queue); it is trimmed to about this many entries.
EVENT_STREAM_MAX_LENGTH = 100_000

MAX_IDENTIFIER_LENGTH = 64


class InvalidIdentifier(ValueError):
    """An identifier may not be part of a key: wrong type, wrong shape, or too long."""


# --- identifier validators: each returns the canonical text that goes into the key ---------


def _positive_int(name: str, value: object) -> str:
    # bool is an int in Python; True must not become user 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidIdentifier(f"{name} must be an int, not {type(value).__name__}")
    if not 0 < value < 2**63:
        raise InvalidIdentifier(f"{name} must be between 1 and 2**63-1, not {value}")
    return str(value)


# Canonical form: what `str(uuid.UUID(...))` prints. Most ids arrive in it, and a match
# proves both validity and canonicity without building a UUID object.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid(name: str, value: object) -> str:
    if type(value) is str and _CANONICAL_UUID.fullmatch(value):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise InvalidIdentifier(f"{name} must be a UUID, not {type(value).__name__}")
    if len(value) != 36:
        raise InvalidIdentifier(f"{name} must be a canonical UUID (36 characters): {value!r:.80}")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise InvalidIdentifier(f"{name} is not a UUID: {value!r:.80}") from None
    if str(parsed) != value.lower():
        raise InvalidIdentifier(f"{name} must be a canonical UUID: {value!r:.80}")
    return str(parsed)


def _ip(name: str, value: object) -> str:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value.compressed
    if not isinstance(value, str):
        raise InvalidIdentifier(f"{name} must be an IP address, not {type(value).__name__}")
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidIdentifier(f"{name} is not an IP address: {value!r:.80}") from None
    # One client, one key: ::ffff:1.2.3.4 and 1.2.3.4 are the same client.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.compressed
    return address.compressed


_NAME = re.compile(r"[a-z][a-z0-9_.-]*")
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def _matching(regex: re.Pattern[str], what: str) -> Callable[[str, object], str]:
    def validate(name: str, value: object) -> str:
        if not isinstance(value, str):
            raise InvalidIdentifier(f"{name} must be a str, not {type(value).__name__}")
        if not 0 < len(value) <= MAX_IDENTIFIER_LENGTH:
            raise InvalidIdentifier(
                f"{name} must be 1 to {MAX_IDENTIFIER_LENGTH} characters, not {len(value)}"
            )
        if not regex.fullmatch(value):
            raise InvalidIdentifier(f"{name} must be {what}: {value!r:.80}")
        return value

    return validate


_name = _matching(_NAME, "lowercase letters, digits, '_', '.', '-', starting with a letter")
_token = _matching(_TOKEN, "letters, digits, '_' or '-'")

# A username, as the auth service accepts it at login (its `Login` model uses this rule).
USERNAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
_USERNAME = re.compile(USERNAME_PATTERN.strip("^$"))
_username_shape = _matching(_USERNAME, "letters, digits, '_', '.' or '-'")


def _account(name: str, value: object) -> str:
    """A username, in the one form its key takes: lower case. "Alice" and "alice" share a
    limit, so letter case buys an attacker no second budget."""
    return _username_shape(name, value).lower()


# The same shapes as regular expressions, to map keys back to their pattern.
_FIELD_REGEX = {
    "int": r"[1-9][0-9]{0,18}",
    "uuid": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    # An IPv6 address has colons: the route after it has none, so the last colon splits.
    "ip": r"[0-9a-f.:]{2,45}",
    "name": r"[a-z][a-z0-9_.-]{0,63}",
    "token": r"[A-Za-z0-9_-]{1,64}",
    "account": r"[a-z0-9_.-]{1,64}",
}
# Regexes that admit exactly the canonical values their validator accepts, so a match
# needs no validation: an int of at most 18 digits (below 2**63), and the kinds whose regex
# is their validator's. An IP's regex admits a superset, and 19 digits may exceed
# 2**63 - 1: those go to the validators.
_EXACT_REGEX = {
    "int": r"[1-9][0-9]{0,17}",
    "uuid": _FIELD_REGEX["uuid"],
    "name": _FIELD_REGEX["name"],
    "token": _FIELD_REGEX["token"],
    "account": _FIELD_REGEX["account"],
}


def _compile(template: str, regexes: dict[str, str]) -> re.Pattern[str]:
    out = []
    for part in re.split(r"(<[a-z_]+:[a-z]+>)", template):
        field = re.fullmatch(r"<([a-z_]+):([a-z]+)>", part)
        if field:
            out.append(f"(?P<{field.group(1)}>{regexes[field.group(2)]})")
        else:
            out.append(re.escape(part))
    return re.compile("".join(out))


_VALIDATORS: dict[str, Callable[[str, object], str]] = {
    "int": _positive_int,
    "uuid": _uuid,
    "ip": _ip,
    "name": _name,
    "token": _token,
    "account": _account,
}
# One valid identifier of each kind, unlike any real one: what the smoke suite's access
# probes and the tests build example keys from (`KeyPattern.example`). A new kind needs one.
EXAMPLE_IDS: dict[str, object] = {
    "int": 9_223_372_036_854_775_807,
    "uuid": "5e0c0000-0000-4000-8000-00000000cafe",
    "ip": "192.0.2.1",  # TEST-NET-1: never a client's address
    "name": "smoke-check",
    "token": "smoke-check",
    "account": "smoke-check",
}


def duration_text(span: timedelta) -> str:
    """A duration as the schema's descriptions write it: `7 d`, `24 h`, `15 m 30 s`.

    Descriptions derive their numbers from the TTL constants through this, so changing a
    TTL changes its description too. Days only from two on: "24 h" reads better than "1 d".
    """
    seconds = int(span.total_seconds())
    if seconds < 0 or span != timedelta(seconds=seconds):
        raise ValueError(f"a TTL is a whole, non-negative number of seconds, not {span}")
    units = [("h", 3600), ("m", 60), ("s", 1)]
    if seconds >= 2 * 86400:
        units.insert(0, ("d", 86400))
    parts = []
    for unit, size in units:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}")
    return " ".join(parts) or "0 s"


@dataclass(frozen=True)
class TtlRule:
    """How long a key of a pattern may live.

    Every key has a TTL, except event streams (`max` None): a stream is the queue itself
    and is bounded by length instead.
    """

    max: timedelta | None
    description: str


@dataclass(frozen=True)
class KeyMatch:
    pattern: KeyPattern
    ids: dict[str, str]


@dataclass(frozen=True)
class KeyPattern:
    name: str
    title: str
    template: str  # placeholders as <name:kind>, kind one of _FIELD_REGEX
    redis_types: tuple[RedisType, ...]
    ttl: TtlRule
    purpose: str
    # The Redis commands the patterns send on these keys, directly or from Lua (ACLs check
    # both); the per-service ACL users are generated from them.
    write_commands: tuple[str, ...] = ()
    read_commands: tuple[str, ...] = ()

    # What follows derives from the template once per pattern: builders and key checks sit
    # on the request path. (cached_property writes the instance's __dict__ directly, which
    # a frozen dataclass allows.)

    @functools.cached_property
    def fields(self) -> tuple[tuple[str, str], ...]:
        return tuple(
            (m.group(1), m.group(2)) for m in re.finditer(r"<([a-z_]+):([a-z]+)>", self.template)
        )

    @functools.cached_property
    def display_template(self) -> str:
        """The template as people write it: `course:<id>`."""
        return re.sub(r"<([a-z_]+):[a-z]+>", r"<\1>", self.template)

    @functools.cached_property
    def prefix(self) -> str:
        """The literal text every key of the pattern starts with (for ACL key patterns)."""
        return self.template.split("<", 1)[0]

    @functools.cached_property
    def regex(self) -> re.Pattern[str]:
        return _compile(self.template, _FIELD_REGEX)

    @functools.cached_property
    def _exact_regex(self) -> re.Pattern[str] | None:
        """A regex whose match alone proves a key valid and canonical; None with an IP."""
        if any(kind not in _EXACT_REGEX for _, kind in self.fields):
            return None
        return _compile(self.template, _EXACT_REGEX)

    @functools.cached_property
    def _layout(self) -> tuple[tuple[tuple[str, str, Callable[[str, object], str]], ...], str]:
        """The template as (literal text, field name, validator) steps and a literal tail."""
        parts = re.split(r"<([a-z_]+):([a-z]+)>", self.template)
        steps = tuple(
            (parts[i], parts[i + 1], _VALIDATORS[parts[i + 2]]) for i in range(0, len(parts) - 1, 3)
        )
        return steps, parts[-1]

    def example(self, **ids: object) -> str:
        """A key of this pattern from `EXAMPLE_IDS`, with any of its ids given instead."""
        return self.build(**({name: EXAMPLE_IDS[kind] for name, kind in self.fields} | ids))

    def build(self, **ids: object) -> str:
        steps, tail = self._layout
        if len(ids) != len(steps) or any(name not in ids for _, name, _ in steps):
            expected = sorted(name for name, _ in self.fields)
            raise InvalidIdentifier(f"{self.name} key takes {expected}, got {sorted(ids)}")
        out = []
        for literal, name, validate in steps:
            out.append(literal)
            out.append(validate(name, ids[name]))
        out.append(tail)
        return "".join(out)

    def admits(self, key: str) -> bool:
        """Whether `key` is a key of this pattern (`match`, without collecting the ids)."""
        exact = self._exact_regex
        if exact is not None and exact.fullmatch(key) is not None:
            return True
        return self.match(key) is not None

    def match(self, key: str) -> KeyMatch | None:
        """The key's identifiers when it is a key of this pattern, in canonical form."""
        exact = self._exact_regex
        if exact is not None:
            found = exact.fullmatch(key)
            if found is not None:
                return KeyMatch(self, found.groupdict())
        found = self.regex.fullmatch(key)
        if found is None:
            return None
        ids = found.groupdict()
        # The regex admits a superset (e.g. '1.2.3' as an IP); the validator is the judge,
        # and a key that is not in canonical form (an uncompressed IPv6) is not ours.
        steps, tail = self._layout
        out = []
        try:
            for (literal, name, validate), (_, kind) in zip(steps, self.fields, strict=True):
                value = ids[name]
                out.append(literal)
                out.append(validate(name, int(value) if kind == "int" else value))
        except InvalidIdentifier:
            return None
        out.append(tail)
        return KeyMatch(self, ids) if "".join(out) == key else None


JWT_REVOKED = KeyPattern(
    name="jwt_revoked",
    title="JWT blacklist",
    template="jwt:revoked:<jti:uuid>",
    redis_types=("string",),
    ttl=TtlRule(
        ACCESS_TOKEN_LIFETIME + REVOCATION_SKEW,
        "remaining access-token lifetime + skew (at most "
        f"{duration_text(ACCESS_TOKEN_LIFETIME + REVOCATION_SKEW)})",
    ),
    purpose="a revoked access token's jti; the gateway refuses the token while it exists",
    write_commands=("set",),
    read_commands=("exists", "get"),
)
REFRESH_TOKEN = KeyPattern(
    name="refresh_token",
    title="Refresh token",
    template="refresh:<family:uuid>",
    redis_types=("string",),
    ttl=TtlRule(REFRESH_TOKEN_TTL, f"{duration_text(REFRESH_TOKEN_TTL)} from the last rotation"),
    purpose=(
        "one refresh-token family (JSON: userId, scope, createdAt, family, SHA-256 digests "
        "of the current and rotated-out secrets, never a secret); one key per family makes "
        "rotation and reuse detection atomic"
    ),
    write_commands=("set", "del"),
    read_commands=("get",),
)
_RATE_LIMIT_TTL = TtlRule(RATE_LIMIT_KEY_MAX_TTL, ratelimit_algorithms.key_ttl_description())
RATE_LIMIT_IP = KeyPattern(
    name="ratelimit_ip",
    title="Rate limit (per IP)",
    template="ratelimit:ip:<ip:ip>:<route:name>",
    # Types, TTL and commands: those of every algorithm (ratelimit_algorithms), since a
    # route's policy picks one and may change it.
    redis_types=ratelimit_algorithms.key_types(),
    ttl=_RATE_LIMIT_TTL,
    purpose="hits of one client IP on one route, as its policy's algorithm keeps them",
    write_commands=ratelimit_algorithms.key_write_commands(),
    read_commands=ratelimit_algorithms.key_read_commands(),
)
RATE_LIMIT_USER = KeyPattern(
    name="ratelimit_user",
    title="Rate limit (per user)",
    template="ratelimit:user:<user_id:int>:<route:name>",
    # Types, TTL and commands: those of every algorithm (ratelimit_algorithms), since a
    # route's policy picks one and may change it.
    redis_types=ratelimit_algorithms.key_types(),
    ttl=_RATE_LIMIT_TTL,
    purpose="hits of one user on one route, as its policy's algorithm keeps them",
    write_commands=ratelimit_algorithms.key_write_commands(),
    read_commands=ratelimit_algorithms.key_read_commands(),
)
RATE_LIMIT_ACCOUNT = KeyPattern(
    name="ratelimit_account",
    title="Rate limit (per account)",
    template="ratelimit:account:<username:account>:<route:name>",
    # Types, TTL and commands: those of every algorithm (ratelimit_algorithms), since a
    # route's policy picks one and may change it.
    redis_types=ratelimit_algorithms.key_types(),
    ttl=_RATE_LIMIT_TTL,
    purpose=(
        "attempts on one account (the username a login names, lower case) on one route, "
        "from any IP: password guessing spread over many addresses"
    ),
    write_commands=ratelimit_algorithms.key_write_commands(),
    read_commands=ratelimit_algorithms.key_read_commands(),
)
ENROLLMENT_LOCK = KeyPattern(
    name="enrollment_lock",
    title="Enrollment lock",
    template="lock:enrollment:<course_id:int>:<user_id:int>",
    redis_types=("string",),
    ttl=TtlRule(
        LOCK_LEASE, f"the lease ({duration_text(LOCK_LEASE)}), renewed while the work runs"
    ),
    purpose="owner token of the process enrolling one user in one course",
    write_commands=("set", "del", "pexpire"),
    read_commands=("get",),
)
COURSE_CACHE = KeyPattern(
    name="course_cache",
    title="Course cache",
    template="course:<id:int>",
    redis_types=("string",),
    ttl=TtlRule(
        COURSE_CACHE_TTL,
        f"{duration_text(COURSE_CACHE_TTL)}; deleted on CourseUpdated / CourseDeleted",
    ),
    purpose="a course as JSON (or a short-lived not-found or loading marker)",
    write_commands=("set", "del"),
    read_commands=("get",),
)
SESSION = KeyPattern(
    name="session",
    title="Session",
    template="session:<session_id:uuid>",
    redis_types=("hash",),
    ttl=TtlRule(SESSION_TTL, f"{duration_text(SESSION_TTL)} from the last recorded activity"),
    purpose="user_id, roles, created_at, last_activity of one login (the gateway touches it)",
    write_commands=("hset", "pexpire", "del"),
    read_commands=("hgetall",),
)
IDEMPOTENCY = KeyPattern(
    name="idempotency",
    title="Idempotency",
    template="idem:<consumer:name>:<event_id:token>",
    redis_types=("string",),
    ttl=TtlRule(
        IDEMPOTENCY_TTL,
        f"{duration_text(IDEMPOTENCY_TTL)} after processing (a short lease while processing)",
    ),
    purpose="a consumer's claim on one event, then its done marker",
    write_commands=("set", "del"),
    read_commands=("get",),
)

EVENT_STREAM = KeyPattern(
    name="event_stream",
    title="Event stream",
    template="events:<topic:name>",
    redis_types=("stream",),
    ttl=TtlRule(None, f"none: trimmed to about {EVENT_STREAM_MAX_LENGTH:,} entries"),
    purpose="domain events (CourseUpdated, CourseDeleted, EnrollmentCreated), consumer groups",
    write_commands=("xadd", "xgroup", "xreadgroup", "xack", "xautoclaim", "xtrim"),
    read_commands=("xlen", "xinfo", "xpending", "xrange"),
)

PATTERNS: tuple[KeyPattern, ...] = (
    JWT_REVOKED,
    REFRESH_TOKEN,
    RATE_LIMIT_IP,
    RATE_LIMIT_USER,
    RATE_LIMIT_ACCOUNT,
    ENROLLMENT_LOCK,
    COURSE_CACHE,
    SESSION,
    IDEMPOTENCY,
    EVENT_STREAM,
)
_BY_NAME = {p.name: p for p in PATTERNS}


def pattern(name: str) -> KeyPattern:
    return _BY_NAME[name]


# --- builders: the only way services make keys ---------------------------------------------


def jwt_revoked(jti: str | uuid.UUID) -> str:
    return JWT_REVOKED.build(jti=jti)


def refresh_token(family: str | uuid.UUID) -> str:
    return REFRESH_TOKEN.build(family=family)


def ratelimit_ip(ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address, route: str) -> str:
    return RATE_LIMIT_IP.build(ip=ip, route=route)


def ratelimit_user(user_id: int, route: str) -> str:
    return RATE_LIMIT_USER.build(user_id=user_id, route=route)


def ratelimit_account(username: str, route: str) -> str:
    """The key of a username's attempts on a route; the username is lower-cased."""
    return RATE_LIMIT_ACCOUNT.build(username=username, route=route)


def valid_username(name: str, value: object) -> str:
    """A username by the login rule, in its key form (lower case)."""
    return _account(name, value)


def enrollment_lock(course_id: int, user_id: int) -> str:
    return ENROLLMENT_LOCK.build(course_id=course_id, user_id=user_id)


def course(course_id: int) -> str:
    return COURSE_CACHE.build(id=course_id)


def session(session_id: str | uuid.UUID) -> str:
    return SESSION.build(session_id=session_id)


def idempotency(consumer: str, event_id: str | uuid.UUID) -> str:
    return IDEMPOTENCY.build(consumer=consumer, event_id=str(event_id))


def event_stream(topic: str) -> str:
    return EVENT_STREAM.build(topic=topic)


def valid_int_id(name: str, value: object) -> int:
    """Validate an integer identifier (a user or course id) by the schema's rule."""
    return int(_positive_int(name, value))


def valid_uuid(name: str, value: object) -> str:
    """Validate a UUID identifier by the schema's rule; returns its canonical text."""
    return _uuid(name, value)


# --- mapping keys back ------------------------------------------------------------------------


def classify(key: str | bytes) -> KeyMatch | None:
    """The pattern a key belongs to, with its identifiers; None when it belongs to none."""
    if isinstance(key, bytes):
        try:
            key = key.decode()
        except UnicodeDecodeError:
            return None
    for candidate in PATTERNS:
        found = candidate.match(key)
        if found is not None:
            return found
    return None


def require(key: str | bytes, *allowed: KeyPattern) -> KeyMatch:
    """Check that `key` is a key of one of `allowed`; patterns use it on keys they are given."""
    text = _text(key)
    # Only the allowed patterns need trying: no pattern's literal prefix starts another's
    # (a test holds the schema to that), so a key matches one pattern at most.
    for candidate in allowed:
        if text.startswith(candidate.prefix):
            match = candidate.match(text)
            if match is not None:
                return match
    raise _not_a_key_of(key, allowed)


def check(key: str | bytes, *allowed: KeyPattern) -> None:
    """`require` for a caller that only needs the verdict (no KeyMatch built)."""
    text = _text(key)
    for candidate in allowed:
        if text.startswith(candidate.prefix) and candidate.admits(text):
            return
    raise _not_a_key_of(key, allowed)


def _text(key: object) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bytes):
        try:
            return key.decode()
        except UnicodeDecodeError:
            pass
    return ""  # no key of any pattern


def _not_a_key_of(key: object, allowed: tuple[KeyPattern, ...]) -> InvalidIdentifier:
    names = ", ".join(p.display_template for p in allowed)
    return InvalidIdentifier(f"{key!r:.100} is not a key of {names}")

"""The key schema: builders validate, classify maps every built key back, nothing else."""

from __future__ import annotations

import ipaddress
import re
import uuid
from datetime import timedelta

import pytest

from courseredis import keys

U = "0b6f3c1e-8f8e-4c36-9d3e-2f6a1b2c3d4e"


@pytest.mark.parametrize(
    ("built", "pattern"),
    [
        (keys.jwt_revoked(U), keys.JWT_REVOKED),
        (keys.refresh_token(uuid.UUID(U)), keys.REFRESH_TOKEN),
        (keys.ratelimit_ip("203.0.113.9", "login"), keys.RATE_LIMIT_IP),
        (keys.ratelimit_ip("2001:db8::1", "course.read"), keys.RATE_LIMIT_IP),
        (keys.ratelimit_user(42, "enroll"), keys.RATE_LIMIT_USER),
        (keys.enrollment_lock(7, 42), keys.ENROLLMENT_LOCK),
        (keys.course(7), keys.COURSE_CACHE),
        (keys.session(U), keys.SESSION),
        (keys.idempotency("enrollments", "evt_01-X"), keys.IDEMPOTENCY),
        (keys.event_stream("courses"), keys.EVENT_STREAM),
    ],
)
def test_every_built_key_maps_back_to_its_pattern(built, pattern):
    match = keys.classify(built)
    assert match is not None and match.pattern is pattern
    assert (
        match.pattern.build(
            **{
                n: int(v) if k == "int" else v
                for (n, k), v in zip(pattern.fields, match.ids.values(), strict=True)
            }
        )
        == built
    )


def test_the_templates_read_as_in_the_design():
    assert [p.display_template for p in keys.PATTERNS] == [
        "jwt:revoked:<jti>",
        "refresh:<family>",
        "ratelimit:ip:<ip>:<route>",
        "ratelimit:user:<user_id>:<route>",
        "ratelimit:account:<username>:<route>",
        "lock:enrollment:<course_id>:<user_id>",
        "course:<id>",
        "session:<session_id>",
        "idem:<consumer>:<event_id>",
        "events:<topic>",
    ]


def test_every_pattern_has_a_ttl():
    for pattern in keys.PATTERNS:
        if pattern.ttl.max is None:  # only streams live without a TTL
            assert pattern.redis_types == ("stream",)
        else:
            assert pattern.ttl.max.total_seconds() > 0


def test_ips_are_canonical_so_one_client_has_one_key():
    assert keys.ratelimit_ip("::ffff:198.51.100.1", "r") == "ratelimit:ip:198.51.100.1:r"
    assert keys.ratelimit_ip("2001:DB8:0::1", "r") == "ratelimit:ip:2001:db8::1:r"
    assert keys.ratelimit_ip(ipaddress.ip_address("10.0.0.1"), "r") == "ratelimit:ip:10.0.0.1:r"


@pytest.mark.parametrize(
    ("builder", "args"),
    [
        (keys.course, ("7",)),
        (keys.course, (True,)),
        (keys.course, (0,)),
        (keys.course, (-1,)),
        (keys.course, (2**63,)),
        (keys.course, (1.0,)),
        (keys.jwt_revoked, ("{tag}",)),
        (keys.jwt_revoked, ("*",)),
        (keys.jwt_revoked, (U + "\n",)),
        (keys.jwt_revoked, (U.upper() + "x",)),
        (keys.session, ("0b6f3c1e8f8e4c369d3e2f6a1b2c3d4e",)),
        (keys.ratelimit_ip, ("1.2.3", "login")),
        (keys.ratelimit_ip, ("1.2.3.4", "Login")),
        (keys.ratelimit_ip, ("1.2.3.4", "lo:gin")),
        (keys.ratelimit_ip, ("1.2.3.4", "a" * 65)),
        (keys.ratelimit_user, (1, "")),
        (keys.idempotency, ("courses", "a*b")),
        (keys.idempotency, ("courses", "a b")),
        (keys.idempotency, ("courses", "é")),
        (keys.idempotency, ("co:urses", "e")),
        (keys.enrollment_lock, (1, None)),
    ],
)
def test_a_bad_identifier_never_reaches_a_key(builder, args):
    with pytest.raises(keys.InvalidIdentifier):
        builder(*args)


@pytest.mark.parametrize(
    "key",
    [
        "course:07",
        "course:{7}",
        "course:7:extra",
        "course:",
        "jwt:revoked:abc",
        "ratelimit:ip:999.1.1.1:login",
        "ratelimit:ip:2001:0db8::1:login",  # not canonical: not a key we would write
        "ratelimit:user:1:Login",
        "session:" + U.upper(),
        "refresh:" + U + ":x",
        "foo",
        "",
        b"\xff\xfe",
    ],
)
def test_keys_outside_the_schema_belong_to_no_pattern(key):
    assert keys.classify(key) is None


def test_a_key_can_belong_to_one_pattern_only():
    # `require` tries only the patterns it allows: that is sound because no pattern's
    # literal prefix starts another's.
    prefixes = [p.prefix for p in keys.PATTERNS]
    for a in prefixes:
        assert a
        assert [b for b in prefixes if b.startswith(a)] == [a]


@pytest.mark.parametrize("verdict", [keys.require, keys.check])
def test_require_and_check_refuse_a_key_of_a_pattern_they_do_not_allow(verdict):
    with pytest.raises(keys.InvalidIdentifier, match="is not a key of"):
        verdict(keys.course(7), keys.SESSION, keys.ENROLLMENT_LOCK)
    for bad in ("course:07", f"course:{2**63}", "ratelimit:ip:2001:0db8::1:login", 7, None):
        with pytest.raises(keys.InvalidIdentifier):
            verdict(bad, keys.COURSE_CACHE, keys.RATE_LIMIT_IP)
    verdict(b"course:7", keys.COURSE_CACHE)
    verdict(keys.ratelimit_ip("2001:db8::1", "login"), keys.RATE_LIMIT_IP)
    verdict(f"course:{2**63 - 1}", keys.COURSE_CACHE)
    assert keys.require(b"course:7", keys.COURSE_CACHE).ids == {"id": "7"}


def test_a_key_read_back_holds_identifiers_its_builder_accepts():
    assert keys.classify(keys.course(2**63 - 1)) is not None
    assert keys.classify(f"course:{2**63}") is None
    assert keys.classify(keys.idempotency("a" * 64, "B" * 64)) is not None
    assert keys.classify("idem:" + "a" * 65 + ":b") is None
    # Where a regex alone decides, it must admit only what the validator would keep as is.
    samples = {
        "int": [str(10**18 - 1), "1"],
        "uuid": [U],
        "name": ["a" + "b_.-9" * 12 + "cde", "a"],
        "token": ["A-_z9" * 12 + "Zz-_", "_"],
        "account": ["0a._-" * 12 + "z9_.", "."],
    }
    assert set(keys._EXACT_REGEX) == set(samples)
    for kind, regex in keys._EXACT_REGEX.items():
        for sample in samples[kind]:
            assert re.fullmatch(regex, sample)
            value: object = int(sample) if kind == "int" else sample
            assert keys._VALIDATORS[kind]("x", value) == sample
        assert not re.fullmatch(regex, samples[kind][0] + "0")  # one longer is refused


def test_a_username_goes_into_its_key_in_lower_case_and_nothing_else_does():
    assert keys.ratelimit_account("Student.One_2-x", "login") == (
        "ratelimit:account:student.one_2-x:login"
    )
    for bad in ("", "a b", "{x}", "a:b", "*", "\u00e9l\u00e8ve", "x\r\n", "a" * 65, 5, None):
        with pytest.raises(keys.InvalidIdentifier):
            keys.ratelimit_account(bad, "login")  # type: ignore[arg-type]
    assert keys.classify("ratelimit:account:Student:login") is None  # not its key form


def test_uuids_go_into_keys_in_canonical_form():
    assert keys.session(U.upper()) == "session:" + U
    assert keys.session(uuid.UUID(U)) == "session:" + U
    assert keys.jwt_revoked(U) == "jwt:revoked:" + U


def test_require_names_the_patterns_it_expected():
    with pytest.raises(keys.InvalidIdentifier, match=r"course:<id>"):
        keys.require("session:x", keys.COURSE_CACHE)
    assert keys.require("course:9", keys.COURSE_CACHE).ids == {"id": "9"}


def test_no_identifier_can_carry_a_hash_tag():
    for validate in (keys.valid_uuid, keys.valid_int_id):
        with pytest.raises(keys.InvalidIdentifier):
            validate("x", "{1}")
    assert "{" not in "".join(p.template for p in keys.PATTERNS)


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (timedelta(days=7), "7 d"),
        (timedelta(hours=24), "24 h"),
        (timedelta(minutes=15, seconds=30), "15 m 30 s"),
        (timedelta(seconds=30), "30 s"),
        (timedelta(hours=49), "2 d 1 h"),
        (timedelta(0), "0 s"),
    ],
)
def test_durations_are_written_as_the_schema_table_shows_them(span, text):
    assert keys.duration_text(span) == text


def test_a_fraction_of_a_second_is_not_a_ttl():
    with pytest.raises(ValueError, match="whole"):
        keys.duration_text(timedelta(milliseconds=1500))


@pytest.mark.parametrize(
    ("pattern", "ttl"),
    [
        (keys.REFRESH_TOKEN, keys.REFRESH_TOKEN_TTL),
        (keys.ENROLLMENT_LOCK, keys.LOCK_LEASE),
        (keys.COURSE_CACHE, keys.COURSE_CACHE_TTL),
        (keys.SESSION, keys.SESSION_TTL),
        (keys.IDEMPOTENCY, keys.IDEMPOTENCY_TTL),
        (keys.JWT_REVOKED, keys.ACCESS_TOKEN_LIFETIME + keys.REVOCATION_SKEW),
    ],
)
def test_a_ttl_description_takes_its_number_from_the_ttl_itself(pattern, ttl):
    # Changing a TTL constant must not leave a stale number in the docs' table.
    assert pattern.ttl.max == ttl
    assert keys.duration_text(ttl) in pattern.ttl.description


def test_every_identifier_kind_has_an_example_its_validator_accepts():
    kinds = {kind for p in keys.PATTERNS for _, kind in p.fields}
    assert kinds <= set(keys.EXAMPLE_IDS)
    for pattern in keys.PATTERNS:
        match = keys.classify(pattern.example())
        assert match is not None and match.pattern is pattern

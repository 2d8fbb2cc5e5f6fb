"""Key patterns and TTLs: the flows driven through the gateway, and every key they wrote
read back: its name is of its pattern, its type right, its TTL within its rule."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from courseredis import keys
from courseredis.ops.audit import check_key
from smoke.flows import RATE_LIMITED_ROUTE, FlowRecord, KeyState, rate_limit_max_ttl
from smoke.gate import skip_for_state

_MS = timedelta(milliseconds=1)
# How far below its full TTL a key just written may already be (the time between the write
# and the read back, on a slow network).
FRESH = timedelta(seconds=60)


def ms(delta: timedelta) -> int:
    return int(delta / _MS)


def follows_schema(state: KeyState, expected: keys.KeyPattern) -> None:
    """Exists, is a key of `expected`, of a type the schema allows, with a TTL in its rule."""
    assert state.exists, f"{state.describe()}: expected a {expected.title} key"
    match = keys.classify(state.key)
    assert match is not None, f"{state.key} is outside the key schema"
    assert match.pattern is expected, (
        f"{state.key} is a {match.pattern.title} key, expected {expected.title}"
    )
    assert state.redis_type is not None
    _, problems = check_key(state.key, state.redis_type, state.pttl_ms, node="-")
    assert not problems, "; ".join(p.message() for p in problems)


def fresh(state: KeyState, full: timedelta) -> None:
    """The TTL was just set to `full`: within `FRESH` below it, never above."""
    assert state.pttl_ms is not None, f"{state.describe()}: no TTL"
    assert ms(full - FRESH) < state.pttl_ms <= ms(full), (
        f"{state.describe()}: expected a TTL of {full} (just written)"
    )


def rate_limited(state: KeyState, route: str) -> None:
    follows_schema(state, keys.RATE_LIMIT_IP if ":ip:" in state.key else keys.RATE_LIMIT_USER)
    limit = rate_limit_max_ttl(route)
    assert state.pttl_ms is not None and 0 < state.pttl_ms <= ms(limit), (
        f"{state.describe()}: a {route} rate-limit key lives at most {limit}"
    )


def test_login_writes_a_session_and_a_refresh_family(flows: FlowRecord) -> None:
    flows.require("login")
    assert flows.session_id is not None and flows.client_ip is not None
    session = flows.state("login", keys.session(flows.session_id))
    follows_schema(session, keys.SESSION)
    fresh(session, keys.SESSION_TTL)
    family = flows.state("login", keys.refresh_token(flows.session_id))
    follows_schema(family, keys.REFRESH_TOKEN)
    fresh(family, keys.REFRESH_TOKEN_TTL)
    rate_limited(flows.state("login", keys.ratelimit_ip(flows.client_ip, "login")), "login")


def test_refresh_rotates_in_the_same_family_for_7_days(flows: FlowRecord) -> None:
    flows.require("refresh")
    assert flows.session_id is not None and flows.client_ip is not None
    assert len(flows.jtis) == 2 and flows.jtis[0] != flows.jtis[1], flows.jtis
    family = flows.state("refresh", keys.refresh_token(flows.session_id))
    follows_schema(family, keys.REFRESH_TOKEN)
    fresh(family, keys.REFRESH_TOKEN_TTL)
    session = flows.state("refresh", keys.session(flows.session_id))
    follows_schema(session, keys.SESSION)
    rate_limited(flows.state("refresh", keys.ratelimit_ip(flows.client_ip, "refresh")), "refresh")


def test_course_read_is_cached_for_at_most_5_minutes(flows: FlowRecord) -> None:
    flows.require("read_course")
    assert flows.course_id is not None and flows.user_id is not None
    assert flows.client_ip is not None
    cached = flows.state("read_course", keys.course(flows.course_id))
    follows_schema(cached, keys.COURSE_CACHE)
    assert cached.pttl_ms is not None and cached.pttl_ms <= ms(keys.COURSE_CACHE_TTL)
    assert cached.value is not None
    assert json.loads(cached.value).get("id") == flows.course_id, (
        f"{cached.key} holds {cached.value[:200]!r}, not course {flows.course_id}"
    )
    first, second = flows.replies["read_course"], flows.replies["read_course_again"]
    assert first.headers.get("x-cache") in ("miss", "hit"), first.headers
    assert second.headers.get("x-cache") == "hit", (
        f"the second read of course {flows.course_id} was not served from the cache: "
        f"X-Cache {second.headers.get('x-cache')}"
    )
    ip_key = keys.ratelimit_ip(flows.client_ip, "courses.read")
    rate_limited(flows.state("read_course", ip_key), "courses.read")
    user_key = keys.ratelimit_user(flows.user_id, "courses.read")
    rate_limited(flows.state("read_course", user_key), "courses.read")


def test_enrollment_releases_its_lock(flows: FlowRecord) -> None:
    flows.require("enroll")
    assert flows.course_id is not None and flows.user_id is not None
    lock = flows.state("enroll", keys.enrollment_lock(flows.course_id, flows.user_id))
    assert not lock.exists, f"the enrollment lock is still there: {lock.describe()}"
    key = keys.ratelimit_user(flows.user_id, "enrollments.create")
    rate_limited(flows.state("enroll", key), "enrollments.create")


def test_enrollment_event_is_consumed_once_with_a_24h_marker(
    flows: FlowRecord, request: pytest.FixtureRequest
) -> None:
    """Its skips are the environment's state (an enrollment cannot be taken back, so the
    marker is there within 24 h of the smoke student's first run only): they never gate."""
    flows.require("enroll")
    if flows.event_id is None:
        skip_for_state(
            request.node,
            "the idempotency marker was NOT checked: the student was enrolled by an earlier run "
            "whose event is no longer in the stream's recent entries",
        )
    marker = flows.state("event_processed", keys.idempotency("courses", flows.event_id))
    if flows.enrollment_status != 201 and not marker.exists:
        skip_for_state(
            request.node,
            f"the idempotency marker was NOT checked: the earlier run's ({marker.key}) has "
            "expired after its 24 h",
        )
    follows_schema(marker, keys.IDEMPOTENCY)
    if flows.enrollment_status == 201:  # marked done just now
        fresh(marker, keys.IDEMPOTENCY_TTL)
    stream = flows.state("event_processed", keys.event_stream("enrollments"))
    follows_schema(stream, keys.EVENT_STREAM)


def test_the_enrollment_is_read_back(flows: FlowRecord) -> None:
    """By the app admin when one is given, else by the student: never skipped."""
    flows.require("enroll")
    flows.require("read_enrollment_back")
    seen = flows.enrollment_users_seen
    assert seen is not None and flows.user_id in seen, (
        f"{flows.enrollment_reader} does not see user {flows.user_id}'s enrollment in course "
        f"{flows.course_id} (shown: users {seen})"
    )
    if flows.enrollment_reader == "the student itself":
        # Students see their own enrollment only.
        assert set(seen) == {flows.user_id}, (
            f"the student is shown other users' enrollments: {seen}"
        )
    for state in flows.states("admin_logout"):
        assert not state.exists, f"the admin's logout left {state.describe()}"


def test_rate_limit_answers_429_with_retry_after(flows: FlowRecord) -> None:
    flows.require("rate_limit")
    assert flows.user_id is not None
    refused = flows.replies["rate_limit"]
    assert refused.status == 429
    retry_after = refused.headers.get("retry-after", "")
    window = rate_limit_max_ttl(RATE_LIMITED_ROUTE)
    assert retry_after.isdigit() and 1 <= int(retry_after) <= window.total_seconds(), (
        f"the 429 after {flows.burst_sent} requests has Retry-After {retry_after!r} "
        f"(wants whole seconds, 1 to {window.total_seconds():g})"
    )
    missing = [
        h
        for h in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")
        if h not in refused.headers
    ]
    assert not missing, f"the 429 lacks {missing}"
    assert refused.headers["ratelimit-remaining"] == "0", refused.headers
    key = keys.ratelimit_user(flows.user_id, RATE_LIMITED_ROUTE)
    rate_limited(flows.state("rate_limit", key), RATE_LIMITED_ROUTE)


def test_logout_revokes_the_token_for_its_remaining_lifetime(flows: FlowRecord) -> None:
    flows.require("logout")
    assert flows.session_id is not None and flows.user_id is not None
    jti = flows.jtis[-1]
    revoked = flows.state("logout", keys.jwt_revoked(jti))
    follows_schema(revoked, keys.JWT_REVOKED)
    remaining_ms = flows.token_expiry[jti] * 1000 - revoked.now_ms
    limit = remaining_ms + ms(keys.REVOCATION_SKEW) + 1000  # exp has whole seconds
    assert revoked.pttl_ms is not None and 0 < revoked.pttl_ms <= limit, (
        f"{revoked.describe()}: the token has {remaining_ms} ms left; the revocation may "
        f"live that long plus {keys.REVOCATION_SKEW}"
    )
    for key in (keys.session(flows.session_id), keys.refresh_token(flows.session_id)):
        state = flows.state("logout", key)
        assert not state.exists, f"logout left {state.describe()}"
    rate_limited(flows.state("logout", keys.ratelimit_user(flows.user_id, "logout")), "logout")
    assert flows.replies["revoked_token_used"].status == 401, flows.replies[
        "revoked_token_used"
    ].describe()
    assert flows.replies["ended_refresh_used"].status == 401, flows.replies[
        "ended_refresh_used"
    ].describe()


def test_every_key_the_flows_wrote_follows_the_schema(flows: FlowRecord) -> None:
    """Whatever step wrote it: a key of its pattern, its type, a TTL within its rule."""
    problems = []
    for state in flows.observed:
        if not state.exists or state.redis_type is None:
            continue
        _, found = check_key(state.key, state.redis_type, state.pttl_ms, node="-")
        problems += [f"after {state.step}: {p.message()}" for p in found]
    assert not problems, "; ".join(problems)
    assert flows.observed, "the flows read nothing back"


def test_no_server_error_during_the_flows(flows: FlowRecord) -> None:
    """Every answer of the gateway in the flows, the burst included, was not a 5xx."""
    errors = flows.server_errors
    more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
    assert not errors, f"{len(errors)} server error(s): " + "; ".join(errors[:10]) + more

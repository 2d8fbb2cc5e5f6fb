"""Rate limiting, on the real single node and the real cluster."""

from __future__ import annotations

import asyncio
import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
)

from courseredis import keys
from courseredis.patterns.ratelimit import (
    Algorithm,
    AsyncRateLimiter,
    Decision,
    Policy,
    RateLimiter,
    RateLimitUnavailable,
    decision_of,
    degraded_decision,
)
from courseredis.ratelimit_algorithms import spec
from tests.support import assert_follows_schema

_ids = itertools.count(1000)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def fresh_key() -> str:
    return keys.ratelimit_user(next(_ids), "enroll")


def away_from_a_window_edge(algorithm: Algorithm, window: timedelta = MINUTE) -> None:
    """A fixed window admits a second full quota right after its edge, by design; tests
    that count admissions start where no edge falls within the next two seconds (the
    loopback Redis shares this machine's clock)."""
    if algorithm is not Algorithm.FIXED_WINDOW:
        return
    window_s = window.total_seconds()
    into = time.time() % window_s
    if into > window_s - 2:
        time.sleep(window_s - into + 0.05)


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_100_concurrent_hits_on_a_limit_of_n_admit_exactly_n(client, algorithm):
    away_from_a_window_edge(algorithm)
    key, policy = fresh_key(), Policy.of((17, MINUTE), algorithm=algorithm)
    limiter = RateLimiter(client)
    with ThreadPoolExecutor(max_workers=25) as pool:
        decisions = list(pool.map(lambda _: limiter.hit(key, policy), range(100)))
    assert sum(d.allowed for d in decisions) == 17
    refused = [d for d in decisions if not d.allowed]
    assert all(d.retry_after_ms > 0 and d.remaining == 0 for d in refused)


@pytest.mark.parametrize("algorithm", list(Algorithm))
async def test_100_concurrent_async_hits_admit_exactly_n(aclient, algorithm):
    away_from_a_window_edge(algorithm)
    key, policy = fresh_key(), Policy.of((23, MINUTE), algorithm=algorithm)
    limiter = AsyncRateLimiter(aclient)
    decisions = await asyncio.gather(*(limiter.hit(key, policy) for _ in range(100)))
    assert sum(d.allowed for d in decisions) == 23


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_a_decision_reports_remaining_then_retry_after_within_the_window(client, algorithm):
    away_from_a_window_edge(algorithm)
    key, policy = fresh_key(), Policy.of((3, MINUTE), algorithm=algorithm)
    limiter = RateLimiter(client)
    first, second, third, refused = (limiter.hit(key, policy) for _ in range(4))
    assert (first.remaining, second.remaining, third.remaining) == (2, 1, 0)
    assert first.allowed and third.allowed and not refused.allowed
    assert first.retry_after_ms == 0
    # The counter weighs the previous window as if its hits were spread evenly, so a burst
    # may wait past one window; the exact algorithms wait at most one.
    windows = 2 if algorithm is Algorithm.SLIDING_COUNTER else 1
    assert 0 < refused.retry_after_ms <= windows * 60_000
    assert refused.retry_after_ms <= refused.reset_ms <= 120_000
    assert refused.headers()["Retry-After"] == str(-(-refused.retry_after_ms // 1000))
    assert refused.headers()["RateLimit-Remaining"] == "0"


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_two_limits_are_decided_together_and_the_tighter_one_binds(client, algorithm):
    away_from_a_window_edge(algorithm, timedelta(seconds=10))
    key = fresh_key()
    policy = Policy.of((5, timedelta(seconds=10)), (7, MINUTE), algorithm=algorithm)
    limiter = RateLimiter(client)
    decisions = [limiter.hit(key, policy) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert decisions[0].limit == 5 and decisions[0].remaining == 4
    # A refused hit is not counted against the minute window either.
    minute_only = Policy.of((7, MINUTE), algorithm=algorithm)
    assert limiter.hit(key, minute_only).remaining == 1


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_a_key_lives_no_longer_than_its_rule(client, algorithm):
    key, policy = fresh_key(), Policy.of((5, MINUTE), (100, HOUR), algorithm=algorithm)
    longest = spec(algorithm).ttl_windows * HOUR
    limiter = RateLimiter(client)
    limiter.hit(key, policy)
    assert_follows_schema(client, key, max_ttl=longest)
    # Later hits in the same windows keep the expiry set when they started.
    limiter.hit(key, policy)
    assert_follows_schema(client, key, max_ttl=longest)


RECORD_KEEPING = [a for a in Algorithm if spec(a).redis_type == "string"]


@pytest.mark.parametrize(("before", "after"), list(itertools.permutations(Algorithm, 2)))
def test_a_route_that_changes_algorithm_starts_afresh(client, before, after):
    # The key of the one before may be of another type (the log's sorted set) or hold
    # records the one after does not read: either way, a fresh start.
    key = fresh_key()
    limiter = RateLimiter(client)
    for _ in range(3):
        limiter.hit(key, Policy.of((3, MINUTE), algorithm=before))
    decision = limiter.hit(key, Policy.of((3, MINUTE), algorithm=after))
    assert decision.allowed and decision.remaining == 2
    assert client.type(key) == spec(after).redis_type
    assert_follows_schema(client, key)


@pytest.mark.parametrize("algorithm", RECORD_KEEPING)
def test_a_key_keeps_the_windows_of_another_policy_it_does_not_decide(client, algorithm):
    away_from_a_window_edge(algorithm)
    key, limiter = fresh_key(), RateLimiter(client)
    per_minute = Policy.of((3, MINUTE), algorithm=algorithm)
    per_hour = Policy.of((10, HOUR), algorithm=algorithm)
    limiter.hit(key, per_minute)
    limiter.hit(key, per_minute)
    assert limiter.hit(key, per_hour).remaining == 9
    assert limiter.hit(key, per_minute).remaining == 0
    assert limiter.hit(key, per_hour).remaining == 8


def test_hits_in_the_same_millisecond_are_distinct_log_entries(client):
    key, policy = fresh_key(), Policy.of((50, MINUTE), algorithm=Algorithm.SLIDING_LOG)
    limiter = RateLimiter(client)
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda _: limiter.hit(key, policy), range(40)))
    assert client.zcard(key) == 40


def test_the_sliding_log_admits_again_when_the_oldest_hit_leaves(client):
    key = fresh_key()
    policy = Policy.of((2, timedelta(milliseconds=300)), algorithm=Algorithm.SLIDING_LOG)
    limiter = RateLimiter(client)
    limiter.hit(key, policy)
    limiter.hit(key, policy)
    refused = limiter.hit(key, policy)
    assert not refused.allowed
    # Sleep exactly as long as the limiter said; the request is then admitted.
    time.sleep(refused.retry_after_ms / 1000 + 0.01)
    assert limiter.hit(key, policy).allowed


def test_the_sliding_log_times_each_hit_to_the_microsecond_of_redis_time(client):
    # Millisecond scores let a hit late in its millisecond leave the window up to 1 ms
    # early: limit + 1 hits could pass within a span just under the window.
    key, policy = fresh_key(), Policy.of((5, MINUTE), algorithm=Algorithm.SLIDING_LOG)
    before = client.time()
    RateLimiter(client).hit(key, policy)
    after = client.time()
    [(_, score)] = client.zrange(key, 0, -1, withscores=True)
    assert before[0] * 1_000_000 + before[1] <= score <= after[0] * 1_000_000 + after[1]


def test_the_sliding_log_counts_a_shorter_window_among_two(client):
    key = fresh_key()
    short = timedelta(milliseconds=300)
    policy = Policy.of((2, short), (10, MINUTE), algorithm=Algorithm.SLIDING_LOG)
    limiter = RateLimiter(client)
    assert limiter.hit(key, policy).allowed
    assert limiter.hit(key, policy).allowed
    refused = limiter.hit(key, policy)
    assert not refused.allowed
    assert (refused.limit, refused.remaining) == (2, 0)
    assert 0 < refused.retry_after_ms <= 300
    time.sleep(refused.retry_after_ms / 1000 + 0.01)
    admitted = limiter.hit(key, policy)
    assert admitted.allowed
    assert client.zcard(key) == 3  # the long window still holds every hit


def test_cost_counts_several_hits_at_once(client):
    key, policy = fresh_key(), Policy.of((10, MINUTE), algorithm=Algorithm.GCRA)
    limiter = RateLimiter(client)
    assert limiter.hit(key, policy, cost=7).remaining == 3
    assert not limiter.hit(key, policy, cost=4).allowed
    assert limiter.hit(key, policy, cost=3).allowed


@pytest.mark.parametrize(
    "bad_key",
    ["course:1", "ratelimit:user:1:{enroll}", "ratelimit:user:0:enroll", "ratelimit:ip:x:login"],
)
def test_a_key_outside_the_rate_limit_patterns_is_refused(client, bad_key):
    with pytest.raises(ValueError, match="is not a key of"):
        RateLimiter(client).hit(bad_key, Policy.of((1, MINUTE)))


def test_policies_refuse_what_could_never_work():
    with pytest.raises(ValueError, match="share a window"):
        Policy.of((1, MINUTE), (2, MINUTE))
    with pytest.raises(ValueError, match="window"):
        Policy.of((1, timedelta(hours=2)))
    with pytest.raises(ValueError, match="positive int"):
        Policy.of((0, MINUTE))
    with pytest.raises(ValueError, match="exceeds a limit"):
        RateLimiter(None).hit(fresh_key(), Policy.of((2, MINUTE)), cost=3)  # type: ignore[arg-type]


def test_redis_down_follows_the_policy():
    open_policy = Policy.of((5, MINUTE), on_redis_error="open")
    closed_policy = Policy.of((5, MINUTE), on_redis_error="closed")
    decision = degraded_decision(open_policy)
    assert decision.allowed and decision.degraded
    with pytest.raises(RateLimitUnavailable):
        degraded_decision(closed_policy)


def test_an_unreachable_redis_is_a_degraded_decision_not_an_error():
    from courseredis.connection import create_client
    from courseredis.settings import RedisSettings

    dead = create_client(
        RedisSettings.for_nodes(["127.0.0.1:1"], cluster=False, retries=0, connect_timeout_s=0.2)
    )
    decision = RateLimiter(dead).hit(fresh_key(), Policy.of((5, MINUTE)))
    assert decision == Decision(True, 5, 60_000, 5, 0, 0, degraded=True)
    with pytest.raises(RateLimitUnavailable):
        RateLimiter(dead).hit(fresh_key(), Policy.of((5, MINUTE), on_redis_error="closed"))


def test_an_outage_follows_the_policy_and_any_other_error_is_raised():
    open_ = Policy.of((5, MINUTE))
    closed = Policy.of((5, MINUTE), on_redis_error="closed")
    outages = [
        ConnectionError("down"),
        TimeoutError("slow"),
        ClusterDownError("CLUSTERDOWN"),
        ReadOnlyError("READONLY"),
        OutOfMemoryError("OOM"),
    ]
    for outage in outages:
        assert decision_of(open_, outage).degraded
        with pytest.raises(RateLimitUnavailable):
            decision_of(closed, outage)
    # A wrong ACL or a script error is a fault: an open policy must not swallow it.
    for fault in (NoPermissionError("NOPERM"), ResponseError("ERR script")):
        with pytest.raises(type(fault)):
            decision_of(open_, fault)
    assert decision_of(open_, [1, 4, 0, 60000, 1]).remaining == 4

"""The GCRA script against a reference GCRA in exact arithmetic, on the real single node.

The script reads Redis `TIME`. To compare it with the model at chosen times, the tests run
its source with that one call replaced by the time they pass in ARGV[2] (which GCRA
ignores); everything else is the production script, evaluated by the real server.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from courseredis import keys
from courseredis.connection import SyncClient, create_client
from courseredis.local import LocalStack
from courseredis.patterns.lua import load
from courseredis.patterns.ratelimit import Algorithm, Policy, RateLimiter
from courseredis.ratelimit_algorithms import spec
from tests.support import settings_for

_ids = itertools.count(1)
# Redis TIME in microseconds around 2024: the magnitudes the script computes with.
EPOCH_US = 1_700_000_000_000_000


def fresh_key() -> str:
    return keys.ratelimit_user(next(_ids), "gcra-model")


@dataclass(frozen=True)
class Outcome:
    allowed: bool
    remaining: int
    retry_after_ms: int
    reset_ms: int


@dataclass
class ReferenceGcra:
    """GCRA as defined, in exact rational arithmetic: a hit of `cost` is admitted when the
    theoretical arrival time it would set is at most one window ahead of now."""

    limit: int
    window_us: int
    tat: Fraction | None = None

    def hit(self, now_us: int, cost: int) -> Outcome:
        interval = Fraction(self.window_us, self.limit)
        tat = max(self.tat if self.tat is not None else Fraction(now_us), Fraction(now_us))
        new_tat = tat + cost * interval
        ahead = new_tat - self.window_us - now_us
        allowed = ahead <= 0
        if allowed:
            self.tat = tat = new_tat
        left = math.floor((self.window_us - (tat - now_us)) / interval)
        return Outcome(
            allowed,
            max(left, 0),
            0 if allowed else math.ceil(ahead / 1000),
            math.ceil((tat - now_us) / 1000),
        )


class GcraAt:
    """The production script, told the time instead of reading it."""

    def __init__(self, client: SyncClient) -> None:
        source = load(spec(Algorithm.GCRA).script).source
        assert source.count("redis.call('TIME')") == 1
        self.source = source.replace("redis.call('TIME')", "{0, ARGV[2]}")
        self.client = client

    def run(
        self, key: str, limit: int, window_ms: int, hits: list[tuple[int, int]]
    ) -> list[Outcome]:
        """Each (now_us, cost) in turn, in one transaction; the key is kept whatever its TTL,
        since the times passed in run ahead of the server's clock."""
        pipe = self.client.pipeline(transaction=True)
        for now_us, cost in hits:
            pipe.eval(self.source, 1, key, cost, now_us, limit, window_ms)
            pipe.persist(key)
        replies = pipe.execute()[::2]
        outcomes = []
        for allowed, remaining, retry_after, reset, binding in replies:
            assert binding == 1
            outcomes.append(Outcome(allowed == 1, remaining, retry_after, reset))
        return outcomes


@pytest.fixture(scope="module")
def gcra_at(single_node: LocalStack) -> Iterator[GcraAt]:
    client = create_client(settings_for(single_node))
    yield GcraAt(client)
    client.close()


def test_three_per_second_counts_down_from_two(gcra_at: GcraAt) -> None:
    # A third of a second is no whole number of microseconds: a TAT rounded up to one left
    # remaining one too low, [1, 1, 0, 0].
    for gap_us in (0, 1, 1000):
        hits = [(EPOCH_US + i * gap_us, 1) for i in range(4)]
        outcomes = gcra_at.run(fresh_key(), 3, 1000, hits)
        assert [o.remaining for o in outcomes] == [2, 1, 0, 0]
        assert [o.allowed for o in outcomes] == [True, True, True, False]


def test_a_burst_of_a_full_bucket_in_one_microsecond_is_admitted(gcra_at: GcraAt) -> None:
    # 7 per second: rounding each TAT up to the microsecond summed to more than the window.
    outcomes = gcra_at.run(fresh_key(), 7, 1000, [(EPOCH_US, 1)] * 8)
    assert [o.allowed for o in outcomes] == [True] * 7 + [False]
    assert [o.remaining for o in outcomes] == [6, 5, 4, 3, 2, 1, 0, 0]


def test_a_remainder_that_does_not_fit_another_limit_rounds_up_to_a_microsecond(
    gcra_at: GcraAt,
) -> None:
    # 998 hits of 999 per second leave the TAT 998_998 + 998/999 us ahead. Read under 3 per
    # second, the remainder 998 is no number of thirds: the TAT is 998_999, not 998_998
    # + 332.7 (nor ever earlier than written).
    key = fresh_key()
    gcra_at.run(key, 999, 1000, [(EPOCH_US, 1)] * 998)
    [refused] = gcra_at.run(key, 3, 1000, [(EPOCH_US, 1)])
    assert not refused.allowed
    assert refused.reset_ms == 999


def test_the_limiter_counts_down_by_one_per_hit(client: SyncClient) -> None:
    # 7 per minute: an interval of 8_571_428.57 us, with Redis TIME.
    key = keys.ratelimit_user(next(_ids), "gcra")
    policy = Policy.of((7, timedelta(minutes=1)), algorithm=Algorithm.GCRA)
    limiter = RateLimiter(client)
    decisions = [limiter.hit(key, policy) for _ in range(8)]
    assert [d.remaining for d in decisions] == [6, 5, 4, 3, 2, 1, 0, 0]
    assert [d.allowed for d in decisions] == [True] * 7 + [False]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, int, list[tuple[int, int]]]:
    """A limit, a window, and hits at increasing times: bursts within one microsecond,
    steady trickles and long pauses, of costs up to the limit."""
    limit = draw(st.integers(1, 60))
    window_ms = draw(st.sampled_from([1, 7, 1000, 60_000, 3_600_000]) | st.integers(1, 10_000))
    window_us = window_ms * 1000
    gaps = (
        st.integers(0, 3) | st.integers(0, window_us // limit + 2) | st.integers(0, 2 * window_us)
    )
    costs = st.integers(1, limit) if limit > 1 else st.just(1)
    steps = draw(st.lists(st.tuples(gaps, st.just(1) | costs), max_size=30))
    now = EPOCH_US + draw(st.integers(0, 10**12))
    hits = []
    for gap, cost in steps:
        now += gap
        hits.append((now, cost))
    return limit, window_ms, hits


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_the_script_decides_as_the_reference_gcra(
    gcra_at: GcraAt, scenario: tuple[int, int, list[tuple[int, int]]]
) -> None:
    limit, window_ms, hits = scenario
    model = ReferenceGcra(limit, window_ms * 1000)
    expected = [model.hit(now_us, cost) for now_us, cost in hits]
    assert gcra_at.run(fresh_key(), limit, window_ms, hits) == expected

"""The figures the suites report, computed from what the clients recorded: pure functions.

Nothing here imports Locust (which monkey-patches the process with gevent), so the checks
can be unit-tested on their own and reused by the Redis-direct users.

Times are wall-clock seconds (`time.time()`), since records from several Locust workers
are compared with each other. A request is known only by when it was sent (`sent`) and
when its answer came back (`answered`): the server decided somewhere in between. Every
check below counts a violation only when it is certain for every placement of the server's
decisions inside those intervals, so network latency can hide a violation but never invent
one; `skew_s` widens the intervals further for clocks of different machines.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from courseredis import ratelimit_algorithms
from courseredis.ratelimit_algorithms import Algorithm

# --- rate limits ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Timed:
    """One request as the client saw it: sent, answered (wall-clock seconds)."""

    sent: float
    answered: float


def allowed_in_span(
    algorithm: Algorithm | str, limit: int, window_s: float, span_s: float
) -> float:
    """The most hits an algorithm may admit whose decisions lie within `span_s` of each other:
    the admission bound of its record (`courseredis.ratelimit_algorithms`). Beyond one window
    nothing is claimed (infinity): every limit is checked on its window.

    An algorithm without a record raises `UnknownAlgorithm`: a check that assumed some bound
    for it could pass a limiter that failed, or fail one that held.
    """
    bound = ratelimit_algorithms.spec(algorithm).admission
    if span_s >= window_s:
        return math.inf
    return bound.most(limit, window_s, span_s)


SERVER_CLOCK_TICK_S = 1e-6  # Redis TIME, as the rate-limit scripts read it


@dataclass(frozen=True)
class WindowCheck:
    """What one limit admitted to one identity, checked against what it may admit."""

    admitted: int
    max_in_window: int  # the most admitted requests certainly inside one window
    over_limit: int  # admitted beyond what the algorithm allows (0 when it held)


def check_window(
    admitted: Sequence[Timed],
    *,
    algorithm: Algorithm | str,
    limit: int,
    window_s: float,
    skew_s: float = 0.0,
) -> WindowCheck:
    """Check that the admitted requests of one key never exceed the limit.

    For every admitted request taken as the earliest of a group, and every later answer
    time as the group's end, the requests sent at or after the first and answered by the end
    were certainly decided within (end - first sent); their count must not exceed
    `allowed_in_span`. O(n k log k) with k the requests per window.
    """
    ratelimit_algorithms.spec(algorithm)  # refused even with nothing to check
    if not admitted:
        return WindowCheck(0, 0, 0)
    # The scripts read Redis TIME to the microsecond, so two decisions a span apart may be
    # up to one tick further apart on the server's clock: the span is widened by that tick.
    events = sorted((t.sent - skew_s, t.answered + skew_s) for t in admitted)
    starts = [e[0] for e in events]
    max_in_window = 0
    over = 0.0
    for i, (first, _) in enumerate(events):
        horizon = first + window_s
        hi = bisect.bisect_left(starts, horizon, lo=i)
        ends = sorted(e[1] for e in events[i:hi] if e[1] < horizon)
        max_in_window = max(max_in_window, len(ends))
        for count, end in enumerate(ends, start=1):
            span = max(0.0, end - first) + SERVER_CLOCK_TICK_S
            allowed = allowed_in_span(algorithm, limit, window_s, span)
            over = max(over, count - allowed)
    return WindowCheck(len(admitted), max_in_window, math.ceil(over) if over > 0 else 0)


def per_window(
    admitted: Sequence[Timed], window_s: float, start: float, most: int = 60
) -> list[int]:
    """Admitted requests per consecutive window from `start` (by answer time), at most
    `most` windows: the shape of what one limit let through over the run."""
    if not admitted:
        return []
    last = max(t.answered for t in admitted)
    count = min(most, int((last - start) // window_s) + 1)
    buckets = [0] * max(count, 1)
    for t in admitted:
        index = int((t.answered - start) // window_s)
        if 0 <= index < len(buckets):
            buckets[index] += 1
    return buckets


# --- cache ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    course_id: int
    sent: float
    answered: float
    status: str  # X-Cache: hit, miss or stale


@dataclass(frozen=True)
class Update:
    course_id: int
    sent: float
    answered: float  # the PUT invalidated the entry before it answered


@dataclass(frozen=True)
class IdealCache:
    """What a perfect cache of the same TTL would have done with the same trace."""

    reads: int
    hits: int
    compulsory_misses: int  # first read of a course that was not already cached
    invalidation_misses: int  # the course was updated since it was last loaded
    expiry_misses: int  # the entry was older than the TTL

    @property
    def hit_ratio(self) -> float | None:
        return self.hits / self.reads if self.reads else None


def ideal_hit_ratio(reads: Iterable[Read], updates: Iterable[Update], ttl_s: float) -> IdealCache:
    """Replay the trace through a perfect cache: one entry per course, loaded on a miss,
    dropped by an update (at the moment the update answered) or by the TTL.

    A perfect cache still misses a course's first read, unless the run started with the
    course already cached: a first read the service answered as a hit counts as a hit here
    too (loaded, at the latest, when the run started). Reads are replayed at the middle of
    their interval, updates at their answer.
    """
    timeline: list[tuple[float, int, int, str]] = []  # (time, order, course, status)
    for read in reads:
        timeline.append(((read.sent + read.answered) / 2, 1, read.course_id, read.status))
    for update in updates:
        timeline.append((update.answered, 0, update.course_id, ""))
    timeline.sort()
    start = timeline[0][0] if timeline else 0.0
    loaded_at: dict[int, float] = {}
    seen: set[int] = set()
    hits = compulsory = invalidation = expiry = total = 0
    for at, kind, course, status in timeline:
        if kind == 0:
            loaded_at.pop(course, None)
            seen.add(course)  # after an update nothing cached survives: not a warm start
            continue
        total += 1
        if course not in seen:
            seen.add(course)
            if status == "hit":
                hits += 1
                loaded_at[course] = start
            else:
                compulsory += 1
                loaded_at[course] = at
            continue
        cached = loaded_at.get(course)
        if cached is not None and at - cached < ttl_s:
            hits += 1
            continue
        if cached is None:
            invalidation += 1
        else:
            expiry += 1
        loaded_at[course] = at
    return IdealCache(total, hits, compulsory, invalidation, expiry)


class ZipfSampler:
    """Course ids 1..n with P(k) proportional to 1 / k**s: a few hot courses, a long tail."""

    def __init__(self, n: int, s: float, rng: random.Random) -> None:
        if n < 1:
            raise ValueError("a Zipf sampler needs at least one item")
        weights = [1.0 / (k**s) for k in range(1, n + 1)]
        total = sum(weights)
        running = 0.0
        self._cumulative: list[float] = []
        for w in weights:
            running += w / total
            self._cumulative.append(running)
        self._rng = rng
        self.n = n

    def sample(self) -> int:
        index = bisect.bisect_left(self._cumulative, self._rng.random())
        return min(index, self.n - 1) + 1


# --- Prometheus text ------------------------------------------------------------------------


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    """Prometheus text -> {(sample name, sorted labels): value}."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return out


def merge_samples(parts: Iterable[Samples]) -> Samples:
    """Sum the samples of several pods of one service."""
    total: Samples = defaultdict(float)
    for part in parts:
        for key, value in part.items():
            total[key] += value
    return dict(total)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much a counter grew between two scrapes (a restarted pod counts from zero)."""
    key = (name, tuple(sorted(labels.items())))
    grown = after.get(key, 0.0) - before.get(key, 0.0)
    return after.get(key, 0.0) if grown < 0 else grown


def histogram_quantile(q: float, before: Samples, after: Samples, name: str) -> float | None:
    """The q-quantile of a histogram's growth between two scrapes, as Prometheus computes
    it: linear within the bucket the rank falls in. None when nothing was observed."""
    bounds: list[tuple[float, float]] = []
    for key in after:
        sample, labels = key
        if sample != f"{name}_bucket":
            continue
        le = dict(labels).get("le")
        if le is None:
            continue
        bound = math.inf if le in ("+Inf", "inf") else float(le)
        bounds.append((bound, delta(before, after, f"{name}_bucket", le=le)))
    bounds.sort()
    if not bounds or bounds[-1][1] <= 0:
        return None
    rank = q * bounds[-1][1]
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in bounds:
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (
                count - previous_count
            )
        previous_bound, previous_count = bound, count
    return previous_bound


# --- enrollments ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DoubleEnrollments:
    courses_checked: int
    enrollments: int
    duplicates: int  # enrollments beyond the first of a (course, user)
    examples: list[dict[str, int]] = field(default_factory=list)


def double_enrollments(listings: Mapping[int, Sequence[int]]) -> DoubleEnrollments:
    """Given course -> the user ids of its enrollments, count any user enrolled twice."""
    duplicates = 0
    examples: list[dict[str, int]] = []
    total = 0
    for course, users in sorted(listings.items()):
        total += len(users)
        for user, times in Counter(users).items():
            if times > 1:
                duplicates += times - 1
                if len(examples) < 5:
                    examples.append({"course_id": course, "user_id": user, "times": times})
    return DoubleEnrollments(len(listings), total, duplicates, examples)


# --- locks (Redis-direct) -------------------------------------------------------------------


@dataclass(frozen=True)
class Holding:
    """One owner's hold of a lock: acquired (answer received) to release (request sent).

    Redis held the lock for the owner at least over that interval, so two holdings of one
    key by different owners that overlap are a certain breach of mutual exclusion.
    """

    key: str
    owner: str
    acquired: float
    released: float


def exclusion_violations(holdings: Iterable[Holding], skew_s: float = 0.0) -> int:
    by_key: dict[str, list[Holding]] = defaultdict(list)
    for holding in holdings:
        by_key[holding.key].append(holding)
    violations = 0
    for held in by_key.values():
        held.sort(key=lambda h: h.acquired)
        latest_end, latest_owner = -math.inf, ""
        for h in held:
            # Narrowed by the skew: only an overlap that survives any clock error counts.
            if h.acquired + skew_s < latest_end - skew_s and h.owner != latest_owner:
                violations += 1
            if h.released > latest_end:
                latest_end, latest_owner = h.released, h.owner
    return violations


def ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def rounded(value: Any, digits: int = 4) -> Any:
    """Floats rounded for the summary, recursively; other values as they are."""
    if isinstance(value, float):
        return value if math.isinf(value) or math.isnan(value) else round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    return value


def per_second(events: Iterable[tuple[float, bool]]) -> list[list[int]]:
    """[[second from the first event, events, flagged]]: a time series for the reports."""
    ordered = sorted(events)
    if not ordered:
        return []
    start = ordered[0][0]
    buckets: dict[int, list[int]] = {}
    for at, flagged in ordered:
        bucket = buckets.setdefault(int(at - start), [0, 0])
        bucket[0] += 1
        bucket[1] += int(flagged)
    return [[second, *buckets[second]] for second in sorted(buckets)]

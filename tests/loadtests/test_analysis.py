"""The suites' checks and figures on traces built by hand (no Locust, no stack)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from courseredis.ratelimit_algorithms import UnknownAlgorithm
from courseredis.stack_file import StackFile
from loadtests import run as load_run
from loadtests.analysis import (
    Holding,
    Read,
    Timed,
    Update,
    ZipfSampler,
    check_window,
    double_enrollments,
    exclusion_violations,
    histogram_quantile,
    ideal_hit_ratio,
    parse_metrics,
    per_window,
)
from loadtests.gates import Gate, build_summary, check_summary, failure_message, write_summary
from loadtests.target import TargetError, accounts, service_metrics_urls


def at(*times: float, latency: float = 0.001) -> list[Timed]:
    return [Timed(t, t + latency) for t in times]


# --- rate limits ----------------------------------------------------------------------------


def test_a_sliding_log_limit_that_held_passes_and_one_more_is_caught():
    held = check_window(
        at(*(i * 0.05 for i in range(10))), algorithm="sliding_log", limit=10, window_s=1.0
    )
    assert (held.admitted, held.max_in_window, held.over_limit) == (10, 10, 0)
    breached = check_window(
        at(*(i * 0.05 for i in range(11))), algorithm="sliding_log", limit=10, window_s=1.0
    )
    assert breached.over_limit == 1


def test_requests_spread_over_more_than_a_window_are_no_violation():
    spread = at(*(i * 0.11 for i in range(20)))  # 10 per 1.1 s
    assert check_window(spread, algorithm="sliding_log", limit=10, window_s=1.0).over_limit == 0


def test_latency_can_hide_a_violation_but_never_invent_one():
    # 11 hits, but each took 2 s to answer: the server may have decided them over 2 s.
    slow = [Timed(i * 0.01, 2.0 + i * 0.01) for i in range(11)]
    assert check_window(slow, algorithm="sliding_log", limit=10, window_s=1.0).over_limit == 0
    # Clock skew between generators widens every interval the same way.
    fast = at(*(i * 0.05 for i in range(11)))
    skewed = check_window(fast, algorithm="sliding_log", limit=10, window_s=1.0, skew_s=0.5)
    assert skewed.over_limit == 0


def test_gcra_may_admit_a_full_bucket_plus_the_refill():
    # 10 at once, then one every 0.1 s: 19 within 0.9 s is exactly what GCRA allows.
    bucket = [0.0] * 10 + [0.1 * k for k in range(1, 10)]
    timed = at(*bucket, latency=0.0)
    assert check_window(timed, algorithm="gcra", limit=10, window_s=1.0).over_limit == 0
    too_many = at(*bucket, 0.9, 0.9, latency=0.0)
    assert check_window(too_many, algorithm="gcra", limit=10, window_s=1.0).over_limit >= 1


def test_fixed_windows_may_admit_twice_the_limit_across_an_edge():
    edge = at(*([0.95] * 10 + [1.05] * 10), latency=0.0)
    assert check_window(edge, algorithm="fixed_window", limit=10, window_s=1.0).over_limit == 0
    assert check_window(edge, algorithm="sliding_log", limit=10, window_s=1.0).over_limit == 10


def test_an_algorithm_without_a_bound_is_refused_not_guessed():
    # Any bound assumed for it could pass a limiter that failed, or fail one that held.
    timed = at(0.0, 0.1)
    with pytest.raises(UnknownAlgorithm, match="leaky_bucket"):
        check_window(timed, algorithm="leaky_bucket", limit=10, window_s=1.0)
    with pytest.raises(UnknownAlgorithm, match="leaky_bucket"):
        check_window([], algorithm="leaky_bucket", limit=10, window_s=1.0)


def test_admitted_requests_per_window_over_the_run():
    timed = at(0.1, 0.2, 1.5, 3.9, latency=0.0)
    assert per_window(timed, 1.0, start=0.0) == [2, 1, 0, 1]
    assert per_window(timed, 60.0, start=0.0) == [4]
    assert per_window([], 1.0, start=0.0) == []
    assert len(per_window(at(*range(100), latency=0.0), 1.0, start=0.0, most=10)) == 10


# --- cache ----------------------------------------------------------------------------------


def test_the_ideal_cache_misses_first_reads_invalidations_and_expiries():
    reads = [
        Read(1, 0.0, 0.01, "miss"),
        Read(1, 1.0, 1.01, "hit"),
        Read(2, 1.5, 1.51, "hit"),  # warm: cached before the run
        Read(1, 3.0, 3.01, "miss"),  # after the update
        Read(1, 3.5, 3.51, "miss"),  # the service missed again (its event): the gap
        Read(2, 20.0, 20.01, "miss"),  # past the TTL
    ]
    updates = [Update(1, 2.0, 2.05)]
    ideal = ideal_hit_ratio(reads, updates, ttl_s=10.0)
    assert (ideal.reads, ideal.hits) == (6, 3)
    assert (ideal.compulsory_misses, ideal.invalidation_misses, ideal.expiry_misses) == (1, 1, 1)
    assert ideal.hit_ratio == pytest.approx(0.5)
    observed = sum(r.status == "hit" for r in reads) / len(reads)
    assert ideal.hit_ratio is not None and ideal.hit_ratio > observed


def test_zipf_reads_favour_the_first_courses():
    sampler = ZipfSampler(200, 1.1, random.Random(7))
    draws = [sampler.sample() for _ in range(5000)]
    assert min(draws) >= 1 and max(draws) <= 200
    assert draws.count(1) > draws.count(2) > draws.count(50)


# --- metrics, enrollments, locks ------------------------------------------------------------

HISTOGRAM = """\
# TYPE lock_wait_seconds histogram
lock_wait_seconds_bucket{{le="0.005"}} {a}
lock_wait_seconds_bucket{{le="0.01"}} {b}
lock_wait_seconds_bucket{{le="+Inf"}} {c}
lock_wait_seconds_count {c}
lock_wait_seconds_sum 0.1
# TYPE cache_requests_total counter
cache_requests_total{{result="hit"}} {c}
"""


def test_histogram_quantiles_and_counter_growth_from_two_scrapes():
    before = parse_metrics(HISTOGRAM.format(a=10, b=10, c=10))
    after = parse_metrics(HISTOGRAM.format(a=60, b=100, c=110))
    # Grown: 50 under 5 ms, 40 between 5 and 10 ms, 10 above.
    assert histogram_quantile(0.5, before, after, "lock_wait_seconds") == pytest.approx(0.005)
    assert histogram_quantile(0.7, before, after, "lock_wait_seconds") == pytest.approx(0.0075)
    assert histogram_quantile(0.99, before, after, "lock_wait_seconds") == pytest.approx(0.01)
    assert histogram_quantile(0.5, after, after, "lock_wait_seconds") is None


def test_a_user_enrolled_twice_is_counted():
    result = double_enrollments({7: [1, 2, 3], 8: [4, 4, 4, 5]})
    assert (result.courses_checked, result.enrollments, result.duplicates) == (2, 7, 2)
    assert result.examples == [{"course_id": 8, "user_id": 4, "times": 3}]
    assert double_enrollments({7: [1, 2]}).duplicates == 0


def test_two_owners_holding_one_lock_at_once_is_a_violation():
    fine = [Holding("k", "a", 0.0, 1.0), Holding("k", "b", 1.1, 2.0), Holding("j", "c", 0.5, 0.9)]
    assert exclusion_violations(fine) == 0
    overlap = [*fine, Holding("k", "d", 1.5, 1.6)]
    assert exclusion_violations(overlap) == 1
    assert exclusion_violations(overlap, skew_s=0.5) == 0


# --- gates and summaries --------------------------------------------------------------------


def test_a_gate_says_what_missed_and_by_how_much():
    ratio = Gate("hit_ratio", "min", 0.9, 0.75, "--min-hit-ratio", "LOAD_MIN_HIT_RATIO")
    p95 = Gate("p95_ms", "max", 500, 120, "--max-p95-ms", "LOAD_MAX_P95_MS")
    unmeasured = Gate("p99_ms", "max", 500, None, "--max-p99-ms", "LOAD_MAX_P99_MS")
    assert (ratio.passed, p95.passed, unmeasured.passed) == (False, True, False)
    assert ratio.miss == pytest.approx(0.15)
    message = failure_message([ratio, p95, unmeasured])
    assert message is not None
    assert "hit_ratio = 0.75 (gate >= 0.9): MISSED by 0.15" in message
    assert "p99_ms: not measured" in message and "p95_ms" not in message
    assert failure_message([p95]) is None


def test_a_summary_is_written_whole_and_checked(tmp_path: Path):
    gates = [Gate("hit_ratio", "min", 0.9, 0.95, "--min-hit-ratio", "LOAD_MIN_HIT_RATIO")]
    requests = {"total": 10, "failures": 0, "error_ratio": 0.0, "p95_ms": 12.0}
    summary = build_summary(
        suite="cache_hit_ratio", run={}, requests=requests, figures={"x": 1 / 3}, gates=gates
    )
    path = write_summary(tmp_path / "cache", summary)
    loaded = json.loads(path.read_text())
    assert check_summary(loaded) == []
    assert loaded["passed"] is True and loaded["figures"]["x"] == 0.3333
    assert check_summary({**loaded, "passed": False}) == ["passed does not match the gates"]
    assert "missing gates" in check_summary({"suite": "x"})


def test_the_one_screen_summary_names_missed_gates_with_their_options():
    gate = Gate("hit_ratio", "min", 0.9, 0.5, "--min-hit-ratio", "LOAD_MIN_HIT_RATIO")
    summary = build_summary(
        suite="cache_hit_ratio",
        run={},
        requests={"total": 10, "failures": 0, "error_ratio": 0.0, "p95_ms": 12.0},
        figures={"hit_ratio": {"observed": 0.5, "server": 0.5, "ideal": 0.8}},
        gates=[gate],
    )
    screen = load_run.render(
        [{"suite": "cache_hit_ratio", "summary": summary, "passed": False}],
        "http://x",
        "10s",
        Path("reports/load"),
    )
    assert "cache_hit_ratio  FAILED" in screen
    assert (
        "hit_ratio = 0.5 (gate >= 0.9, missed by 0.4) [--min-hit-ratio / LOAD_MIN_HIT_RATIO]"
        in (screen)
    )
    assert load_run._seconds("1m30s") == 90 and load_run._seconds("20s") == 20


# --- targets --------------------------------------------------------------------------------


def test_accounts_come_from_a_stack_file_or_the_seed_output(tmp_path: Path):
    demo = {
        "students": [{"username": "student1", "password": "pw-12345"}],
        "admin": {"username": "admin", "password": "pw-admin1"},
    }
    stack = StackFile.model_validate(
        {
            "demo": demo,
            "services": {"courses": "http://127.0.0.1:9"},
            "metrics": {"courses": "http://127.0.0.1:10/metrics"},
        }
    )
    from_stack = accounts(None, stack)
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(demo))
    assert accounts(str(seed_file), None) == from_stack
    assert from_stack.admin is not None and from_stack.admin.username == "admin"
    with pytest.raises(TargetError, match="--credentials-file"):
        accounts(None, StackFile())
    # The service's own metrics port, not its URL: /metrics is not served there.
    assert service_metrics_urls(None, stack, "courses") == ["http://127.0.0.1:10/metrics"]
    assert service_metrics_urls("http://a/metrics, http://b/metrics", stack, "courses") == [
        "http://a/metrics",
        "http://b/metrics",
    ]
    assert service_metrics_urls(None, None, "courses") == []


def test_per_second_buckets_events_from_the_first_one() -> None:
    from loadtests.analysis import per_second

    events = [(10.2, True), (10.9, False), (12.5, True), (10.0, False)]
    assert per_second(events) == [[0, 3, 1], [2, 1, 1]]
    assert per_second([]) == []

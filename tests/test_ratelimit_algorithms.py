"""The records of the rate-limit algorithms, and what the rest of the bundle reads from them."""

from __future__ import annotations

import re

import pytest

from courseredis import keys
from courseredis.patterns.lua import load
from courseredis.ratelimit_algorithms import (
    SPECS,
    AdmissionBound,
    Algorithm,
    UnknownAlgorithm,
    spec,
)

RATE_LIMIT_PATTERNS = (keys.RATE_LIMIT_IP, keys.RATE_LIMIT_USER, keys.RATE_LIMIT_ACCOUNT)


def test_every_algorithm_has_one_record_found_by_member_or_name():
    assert set(SPECS) == set(Algorithm)
    for algorithm in Algorithm:
        assert spec(algorithm) is spec(algorithm.value) is SPECS[algorithm]
        assert spec(algorithm).algorithm is algorithm


def test_a_name_without_a_record_is_refused_by_name():
    with pytest.raises(UnknownAlgorithm, match=r"'token_bucket'.*known: sliding_log"):
        spec("token_bucket")


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_every_script_opens_with_its_contract(algorithm):
    source = load(spec(algorithm).script).source
    assert source.startswith("--[[")
    contract = source.split("]]", 1)[0]
    for part in ("KEYS[1]", "ARGV[1]", "Returns"):
        assert part in contract


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_every_script_sends_only_the_commands_its_record_grants(algorithm):
    record = spec(algorithm)
    sent = {
        name.lower()
        for name in re.findall(r"redis\.p?call\('([A-Z]+)'", load(record.script).source)
    }
    keyless = {"time"}  # granted to every service (acl.BASE_COMMANDS)
    assert sent - keyless == set(record.write_commands) | set(record.read_commands)


def test_the_rate_limit_keys_take_their_types_commands_and_ttl_from_the_records():
    longest = max(s.ttl_windows for s in SPECS.values())
    for pattern in RATE_LIMIT_PATTERNS:
        assert set(pattern.redis_types) == {s.redis_type for s in SPECS.values()}
        granted = set(pattern.write_commands + pattern.read_commands)
        assert granted == {c for s in SPECS.values() for c in s.write_commands + s.read_commands}
        assert pattern.ttl.max == longest * keys.RATE_LIMIT_MAX_WINDOW
        assert "2 windows for sliding_counter" in pattern.ttl.description


def test_admission_bounds_are_the_documented_guarantees():
    window_s, span_s = 1.0, 0.25
    assert spec(Algorithm.SLIDING_LOG).admission.most(10, window_s, span_s) == 10
    assert spec(Algorithm.FIXED_WINDOW).admission.most(10, window_s, span_s) == 20
    assert spec(Algorithm.SLIDING_COUNTER).admission.most(10, window_s, span_s) == 20
    assert spec(Algorithm.GCRA).admission.most(10, window_s, span_s) == 12.5
    assert AdmissionBound(limits=1, refills=True).most(3, 60.0, 30.0) == 4.5

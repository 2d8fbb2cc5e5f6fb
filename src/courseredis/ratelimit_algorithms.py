"""The rate-limit algorithms, one record each: all the bundle knows of an algorithm.

The limiter (`patterns.ratelimit`) takes the script and its ARGV from the record; the key
schema (`keys`) the types of the key, the commands the script sends on it (from which the
ACL users are generated) and how long it may live; the smoke suite the TTL of a route's
keys; the load analysis the most a limit may admit, and its report the guarantee. Adding an
algorithm is its record here, its Lua file and its tests.

Apart from `patterns` because `keys` reads it, and every pattern imports `keys`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from courseredis.keys import RedisType


class Algorithm(enum.StrEnum):
    SLIDING_LOG = "sliding_log"  # exact; memory grows with the limit
    SLIDING_COUNTER = "sliding_counter"  # approximate; O(1) memory
    FIXED_WINDOW = "fixed_window"  # cheapest; allows up to 2x at a window edge
    GCRA = "gcra"  # token bucket: smooth refill, bursts up to the limit


class UnknownAlgorithm(ValueError):
    """A name no record answers to: nothing may be assumed about what it admits."""


@dataclass(frozen=True)
class AdmissionBound:
    """The most hits one limit may admit within a span shorter than its window: `limits`
    full limits, plus, for a bucket that refills, what refills during the span."""

    limits: int
    refills: bool = False

    def most(self, limit: int, window_s: float, span_s: float) -> float:
        refill = limit * span_s / window_s if self.refills else 0.0
        return self.limits * limit + refill


@dataclass(frozen=True)
class AlgorithmSpec:
    algorithm: Algorithm
    script: str  # its Lua file in courseredis/patterns/lua, without `.lua`
    guarantee: str  # what it promises about any window, as the docs and load reports say
    admission: AdmissionBound  # what the load analysis holds it to
    # A key lives at most this many of its policy's longest window: the counter keeps the
    # previous window's count until the current one ends.
    ttl_windows: int
    redis_type: RedisType  # of its key
    # What its script sends on the key, directly or through pcall: the ACL grants these.
    write_commands: tuple[str, ...]
    read_commands: tuple[str, ...]
    nonce: bool = False  # its script needs a random ARGV[2] (the others ignore it)


# The scripts of the string algorithms read with GET (pcall) and write with SET, which
# replaces a key of another type: the sorted set the log left before a route changed.
_STRING_WRITES = ("set",)
_STRING_READS = ("get",)

SPECS: Mapping[Algorithm, AlgorithmSpec] = MappingProxyType(
    {
        spec.algorithm: spec
        for spec in (
            AlgorithmSpec(
                Algorithm.SLIDING_LOG,
                script="ratelimit_sliding_log",
                guarantee="at most limit in any window",
                admission=AdmissionBound(limits=1),
                ttl_windows=1,
                redis_type="zset",
                # del: a string left by another algorithm before the route changed.
                write_commands=("zremrangebyscore", "del", "zadd", "pexpire"),
                read_commands=("zcard", "zcount", "zrangebyscore", "zrange"),
                # Hits become members, and two hits in one microsecond must stay two.
                nonce=True,
            ),
            AlgorithmSpec(
                Algorithm.SLIDING_COUNTER,
                script="ratelimit_sliding_counter",
                guarantee="at most 2 * limit in any window (an estimate)",
                # Any span shorter than the window meets two counting windows at most.
                admission=AdmissionBound(limits=2),
                ttl_windows=2,
                redis_type="string",
                write_commands=_STRING_WRITES,
                read_commands=_STRING_READS,
            ),
            AlgorithmSpec(
                Algorithm.FIXED_WINDOW,
                script="ratelimit_fixed_window",
                guarantee="at most 2 * limit in any window (two counting windows)",
                admission=AdmissionBound(limits=2),
                ttl_windows=1,
                redis_type="string",
                write_commands=_STRING_WRITES,
                read_commands=_STRING_READS,
            ),
            AlgorithmSpec(
                Algorithm.GCRA,
                script="ratelimit_gcra",
                guarantee=(
                    "at most limit + limit * span / window within any span (a full bucket + refill)"
                ),
                admission=AdmissionBound(limits=1, refills=True),
                ttl_windows=1,
                redis_type="string",
                write_commands=_STRING_WRITES,
                read_commands=_STRING_READS,
            ),
        )
    }
)
_missing = set(Algorithm) - set(SPECS)
if _missing:
    raise RuntimeError(f"rate-limit algorithms without a record: {sorted(_missing)}")


def spec(algorithm: Algorithm | str) -> AlgorithmSpec:
    """The record of an algorithm, by member or by name (as policy tables and reports
    spell it); `UnknownAlgorithm` for a name without one."""
    try:
        return SPECS[Algorithm(algorithm)]
    except ValueError:
        known = ", ".join(SPECS)
        raise UnknownAlgorithm(
            f"no rate-limit algorithm {algorithm!r} (known: {known}): "
            "nothing is known of what it admits"
        ) from None


# --- what the key schema reads ----------------------------------------------------------------


def key_ttl_windows() -> int:
    """The most windows any algorithm's key outlives its policy's longest window by."""
    return max(s.ttl_windows for s in SPECS.values())


def key_ttl_description() -> str:
    longer = [
        f"{s.ttl_windows} windows for {s.algorithm}" for s in SPECS.values() if s.ttl_windows > 1
    ]
    return "the policy's longest window" + (f" ({', '.join(longer)})" if longer else "")


def key_types() -> tuple[RedisType, ...]:
    return tuple(dict.fromkeys(s.redis_type for s in SPECS.values()))


def key_write_commands() -> tuple[str, ...]:
    return tuple(dict.fromkeys(c for s in SPECS.values() for c in s.write_commands))


def key_read_commands() -> tuple[str, ...]:
    return tuple(dict.fromkeys(c for s in SPECS.values() for c in s.read_commands))

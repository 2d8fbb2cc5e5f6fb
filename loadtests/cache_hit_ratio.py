"""Cache hit ratio: Zipf-distributed course reads with a trickle of admin updates, and the
hit ratio three ways, so the gap between them is visible.

    locust -f loadtests/cache_hit_ratio.py --headless -u 20 -r 10 -t 30s

- `CourseReader`s read `/courses/{id}` with ids drawn from a Zipf law (--zipf-s) over the
  seeded courses, at a pace under the per-user limit, and keep every answer's `X-Cache`.
- One `CourseEditor` (the admin) updates a course (also Zipf-chosen: the hot ones change
  most) --update-rate times a second: `PUT /courses/{id}` invalidates its cache entry and
  publishes CourseUpdated, whose consumer invalidates it again.

At the end:
- observed: hits / reads as the clients saw them (`X-Cache: hit`; miss and stale are not);
- server: the courses service's own count (`cache_requests_total{result}` on its /metrics,
  the growth over the run, summed over the pods given);
- ideal: the same trace replayed through a perfect cache with the same TTL and the same
  invalidations (`loadtests.analysis.ideal_hit_ratio`): what no cache could beat.
The gates: the observed ratio (--min-hit-ratio) and the gap to the ideal (--max-hit-ratio-gap).
"""

from __future__ import annotations

from typing import Any

from locust import constant_throughput, task

from courseredis import keys
from loadtests.analysis import (
    Read,
    Update,
    ZipfSampler,
    delta,
    ideal_hit_ratio,
    per_second,
    ratio,
)
from loadtests.common.findings import Finding, gate
from loadtests.common.metrics import metrics_option, scrape
from loadtests.common.options import Option, courses_option, option
from loadtests.common.platform_user import PlatformUser
from loadtests.common.run_state import RunState
from loadtests.common.shapes import Stage, StageShape
from loadtests.common.suite import Suite

READ = "/courses/{id}"
READS_PER_USER_PER_S = 4.0  # under courses.read's 300 per minute per user


def sampler(run: RunState) -> ZipfSampler:
    found: ZipfSampler | None = run.extras.get("zipf")
    if found is None:
        found = ZipfSampler(
            int(option(run.environment, "courses")),
            float(option(run.environment, "zipf_s")),
            run.rng,
        )
        run.extras["zipf"] = found
    return found


class CourseReader(PlatformUser):
    weight = 20
    wait_time = constant_throughput(READS_PER_USER_PER_S)

    @task
    def read(self) -> None:
        course = sampler(self.ctx).sample()
        outcome = self.call("GET", f"/courses/{course}", name=READ, expect=(200, 429))
        if outcome.status == 200:
            status = outcome.header("X-Cache") or "none"
            self.ctx.collector.add("read", [course, outcome.sent, outcome.answered, status])
        elif outcome.status == 429:
            self.ctx.collector.count("reads_limited")


class CourseEditor(PlatformUser):
    """The admin: read a course, then write it back with its description touched."""

    account_kind = "admin"
    fixed_count = 1

    def wait_time(self) -> float:
        rate = float(option(self.environment, "update_rate"))
        return 1.0 / rate if rate > 0 else 3600.0

    @task
    def update(self) -> None:
        if float(option(self.environment, "update_rate")) <= 0:
            return
        course = sampler(self.ctx).sample()
        current = self.call("GET", f"/courses/{course}", name=READ + " (editor)", expect=(200, 429))
        if current.status != 200 or not isinstance(current.body, dict):
            return
        self.ctx.collector.add(
            "read", [course, current.sent, current.answered, current.header("X-Cache") or "none"]
        )
        self.edits = getattr(self, "edits", 0) + 1
        description = str(current.body.get("description", "")).split(" [edit ")[0]
        body = {
            "title": current.body["title"],
            "description": f"{description} [edit {self.edits}]"[:4000],
            "capacity": current.body["capacity"],
        }
        outcome = self.call("PUT", f"/courses/{course}", name=READ, json=body, expect=(200, 429))
        if outcome.status == 200:
            self.ctx.collector.add("update", [course, outcome.sent, outcome.answered])


class CacheShape(StageShape):
    """A quarter of the users for the first tenth of the run, then all: a cache warming up
    under growing load, as after a deploy."""

    stages = (Stage(until=0.1, users=0.25), Stage(until=1.0, users=1.0))


def analyse(run: RunState) -> Finding:
    environment = run.environment
    reads = [
        Read(int(r[0]), float(r[1]), float(r[2]), str(r[3])) for r in run.collector.get("read")
    ]
    updates = [Update(int(u[0]), float(u[1]), float(u[2])) for u in run.collector.get("update")]
    ttl_s = float(option(environment, "cache_ttl_s"))
    statuses: dict[str, int] = {}
    for read in reads:
        statuses[read.status] = statuses.get(read.status, 0) + 1
    observed = ratio(statuses.get("hit", 0), len(reads))
    ideal = ideal_hit_ratio(reads, updates, ttl_s)

    before = run.metrics_before.get("courses", {})
    after = scrape(run, "courses")
    server: dict[str, Any]
    if after:
        counted = {
            result: delta(before, after, "cache_requests_total", result=result)
            for result in ("hit", "miss", "stale", "bypass")
        }
        server = {
            "counts": counted,
            "hit_ratio": ratio(counted["hit"], sum(counted.values())),
            "loads": delta(before, after, "cache_loads_total"),
        }
    else:
        server = {"hit_ratio": None, "unavailable": "no /metrics (pass --courses-metrics-url)"}

    gap = None if observed is None or ideal.hit_ratio is None else ideal.hit_ratio - observed
    figures = {
        "hit_ratio": {
            "observed": observed,
            "server": server["hit_ratio"],
            "ideal": ideal.hit_ratio,
            "gap_ideal_minus_observed": gap,
        },
        "reads": len(reads),
        # [second, reads, hits] as the clients saw them: the demo report plots it
        "over_time": per_second((read.answered, read.status == "hit") for read in reads),
        "x_cache": statuses,
        "reads_limited": run.collector.counters.get("reads_limited", 0),
        "updates": len(updates),
        "distinct_courses_read": len({r.course_id for r in reads}),
        "ideal_cache": {
            "hits": ideal.hits,
            "compulsory_misses": ideal.compulsory_misses,
            "invalidation_misses": ideal.invalidation_misses,
            "expiry_misses": ideal.expiry_misses,
            "ttl_s": ttl_s,
        },
        "server": server,
        "zipf_s": float(option(environment, "zipf_s")),
        "courses": int(option(environment, "courses")),
    }
    gates = [
        gate(environment, "hit_ratio", "min", "min_hit_ratio", observed),
        gate(environment, "hit_ratio_gap", "max", "max_hit_ratio_gap", gap),
    ]
    notes = [
        "ideal = the same trace through a perfect cache (TTL and the run's own updates); a "
        "first read counts as a hit there only if it was one here (a warm start)",
        "server = every read the courses service counted during the run, other clients' too",
    ]
    return Finding(figures, gates, notes)


SUITE = Suite(
    name="cache_hit_ratio",
    p95_ms=1000.0,
    metrics_services=("courses",),
    options=[
        metrics_option("courses"),
        courses_option(),
        Option("--zipf-s", "LOAD_ZIPF_S", 1.1, "the Zipf exponent of the course reads"),
        Option(
            "--update-rate",
            "LOAD_UPDATE_RATE",
            0.2,
            "admin updates per second (each invalidates a course)",
        ),
        Option(
            "--cache-ttl-s",
            "LOAD_CACHE_TTL_S",
            keys.COURSE_CACHE_TTL.total_seconds(),
            "the cache's TTL, for the ideal ratio",
        ),
        Option(
            "--min-hit-ratio",
            "LOAD_MIN_HIT_RATIO",
            0.6,
            "gate: the hit ratio the clients saw (X-Cache) at least this",
        ),
        Option(
            "--max-hit-ratio-gap",
            "LOAD_MAX_HIT_RATIO_GAP",
            0.1,
            "gate: ideal minus observed hit ratio at most this",
        ),
    ],
    analyse=analyse,
)
SUITE.install()

"""The cache under contention, from 4 processes at once (each its own client, as services
are): a stampede of misses on one course, and a Zipf-distributed read trace.

- Stampede: 500 concurrent `get_or_load` of one uncached course, 125 tasks in each of 4
  processes, all released at one instant; the loader (a 50 ms "database read") must run
  once in all.
- Zipf trace: reads drawn from a Zipf law over the catalogue, dealt round-robin to the 4
  processes (8 tasks each), so popular courses are read concurrently from several
  processes. The ideal hit ratio of a trace is 1 - distinct/reads: with an unbounded cache
  and no expiry every course misses once, on its first read. Target: 0.97 of it.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import multiprocessing
import random
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from benchmarks.operations import Topology
from courseredis import keys
from courseredis.connection import open_async_client
from courseredis.patterns import AsyncCourseCache
from courseredis.settings import RedisSettings

PROCESSES = 4
STAMPEDE_READERS = 500
STAMPEDE_LOAD_S = 0.05
ZIPF_S = 1.0
ZIPF_TASKS_PER_PROCESS = 8
HIT_RATIO_TARGET = 0.97
_run_ids = itertools.count(1)


@dataclass(frozen=True)
class Stampede:
    topology: Topology
    readers: int
    processes: int
    loads: int
    hits: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "topology": self.topology,
            "readers": self.readers,
            "processes": self.processes,
            "loads": self.loads,
            "hits": self.hits,
            "seconds": round(self.seconds, 3),
            "met": self.loads == 1,
        }


@dataclass(frozen=True)
class ZipfTrace:
    topology: Topology
    reads: int
    courses: int
    distinct: int
    hits: int
    loads: int

    @property
    def ideal(self) -> float:
        return 1 - self.distinct / self.reads

    @property
    def achieved(self) -> float:
        return self.hits / self.reads

    def to_json(self) -> dict[str, Any]:
        return {
            "topology": self.topology,
            "reads": self.reads,
            "courses": self.courses,
            "zipf_s": ZIPF_S,
            "distinct": self.distinct,
            "hits": self.hits,
            "loads": self.loads,
            "hit_ratio": round(self.achieved, 4),
            "ideal_hit_ratio": round(self.ideal, 4),
            "ratio_to_ideal": round(self.achieved / self.ideal, 4),
            "target": HIT_RATIO_TARGET,
            "met": self.achieved / self.ideal >= HIT_RATIO_TARGET,
        }


def zipf_trace(reads: int, courses: int, seed: int) -> list[int]:
    """`reads` course ids in 1..courses, P(rank k) proportional to 1 / k**ZIPF_S."""
    weights = [1 / k**ZIPF_S for k in range(1, courses + 1)]
    cumulative = list(itertools.accumulate(weights))
    rng = random.Random(seed)
    ranks = list(range(1, courses + 1))
    rng.shuffle(ranks)  # popularity independent of the id (and so of the node it lives on)
    total = cumulative[-1]
    return [ranks[bisect.bisect_left(cumulative, rng.random() * total)] for _ in range(reads)]


# --- in the worker processes ----------------------------------------------------------------


def _warm(_: int) -> int:
    time.sleep(0.3)  # keep this worker busy so that each of the 4 gets one
    return multiprocessing.current_process().pid or 0


def _stampede_worker(
    settings: RedisSettings, course_id: int, readers: int, start_at: float
) -> dict[str, int]:
    async def main() -> dict[str, int]:
        client = await open_async_client(settings)
        cache = AsyncCourseCache(client)
        loads = 0

        async def loader() -> dict[str, Any]:
            nonlocal loads
            loads += 1
            await asyncio.sleep(STAMPEDE_LOAD_S)
            return {"id": course_id, "title": "stampede"}

        key = keys.course(course_id)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(*(cache.get_or_load(key, loader) for _ in range(readers)))
        await client.aclose()
        return {"loads": loads, "hits": cache.stats.hits}

    return asyncio.run(main())


def _zipf_worker(settings: RedisSettings, trace: list[int], tasks: int) -> dict[str, int]:
    async def main() -> dict[str, int]:
        client = await open_async_client(settings)
        cache = AsyncCourseCache(client)
        reads: Iterator[int] = iter(trace)

        async def reader() -> None:
            for course_id in reads:

                async def load(course_id: int = course_id) -> dict[str, Any]:
                    await asyncio.sleep(0.002)  # the database read
                    return {"id": course_id}

                await cache.get_or_load(keys.course(course_id), load)

        await asyncio.gather(*(reader() for _ in range(tasks)))
        await client.aclose()
        return {"hits": cache.stats.hits, "loads": cache.stats.loads}

    return asyncio.run(main())


# --- driver -----------------------------------------------------------------------------------


def run(
    settings: RedisSettings, topology: Topology, *, reads: int, courses: int
) -> tuple[Stampede, ZipfTrace]:
    run_id = next(_run_ids)
    # fork: the workers start in milliseconds; each builds its own client after the fork.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
        list(pool.map(_warm, range(PROCESSES)))  # all 4 started before the clock runs

        course_id = 50_000_000 + run_id * 1000
        start_at = time.time() + 0.5
        per_process = STAMPEDE_READERS // PROCESSES
        futures = [
            pool.submit(_stampede_worker, settings, course_id, per_process, start_at)
            for _ in range(PROCESSES)
        ]
        results = [f.result() for f in futures]
        stampede = Stampede(
            topology,
            per_process * PROCESSES,
            PROCESSES,
            sum(r["loads"] for r in results),
            sum(r["hits"] for r in results),
            time.time() - start_at,
        )

        base = 60_000_000 + run_id * 1_000_000
        trace = [base + c for c in zipf_trace(reads, courses, seed=run_id)]
        parts = [trace[i::PROCESSES] for i in range(PROCESSES)]
        futures = [
            pool.submit(_zipf_worker, settings, part, ZIPF_TASKS_PER_PROCESS) for part in parts
        ]
        zipf_results = [f.result() for f in futures]
        zipf = ZipfTrace(
            topology,
            reads,
            courses,
            len(set(trace)),
            sum(r["hits"] for r in zipf_results),
            sum(r["loads"] for r in zipf_results),
        )
    return stampede, zipf

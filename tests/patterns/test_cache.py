"""Course cache: get-or-load, negative caching, one loader under a stampede, no stale fill."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from courseredis import keys
from courseredis.patterns.cache import AsyncCourseCache, CacheOptions, CacheStatus, CourseCache
from tests.support import assert_follows_schema, memory_full

# Far above the seeded courses the service tests cache in the same Redis.
_ids = itertools.count(10_000_000)


def fresh_key() -> str:
    return keys.course(next(_ids))


def test_a_miss_loads_and_caches_json_then_hits(client):
    key, cache = fresh_key(), CourseCache(client)
    course = {"id": 1, "title": "Redis", "tags": ["db"]}
    assert cache.get_or_load(key, lambda: course).status is CacheStatus.MISS
    hit = cache.get_or_load(key, lambda: pytest.fail("loaded twice"))
    assert hit.status is CacheStatus.HIT and hit.value == course
    assert client.get(key) == '{"id":1,"title":"Redis","tags":["db"]}'
    assert_follows_schema(client, key)
    assert (cache.stats.hits, cache.stats.misses, cache.stats.loads) == (1, 1, 1)


def test_a_missing_course_is_cached_briefly(client):
    key = fresh_key()
    cache = CourseCache(client, CacheOptions(negative_ttl=timedelta(seconds=30)))
    assert cache.get_or_load(key, lambda: None).value is None
    again = cache.get_or_load(key, lambda: pytest.fail("loaded twice"))
    assert again.status is CacheStatus.HIT and again.value is None
    assert_follows_schema(client, key, max_ttl=timedelta(seconds=30))


def test_200_concurrent_misses_on_one_key_load_once(client):
    key, cache = fresh_key(), CourseCache(client)
    loads = []

    def slow_loader() -> dict[str, int]:
        loads.append(1)
        time.sleep(0.2)
        return {"id": 7}

    with ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(lambda _: cache.get_or_load(key, slow_loader), range(200)))
    assert len(loads) == 1
    assert all(r.value == {"id": 7} for r in results)
    assert sorted({r.status for r in results}) == [CacheStatus.HIT, CacheStatus.MISS]


async def test_200_concurrent_async_misses_load_once_across_instances(aclient):
    key = fresh_key()
    # Separate cache objects stand for separate processes: the guard is in Redis.
    caches = [AsyncCourseCache(aclient) for _ in range(4)]
    loads = 0

    async def slow_loader() -> dict[str, int]:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.2)
        return {"id": 8}

    results = await asyncio.gather(
        *(caches[i % 4].get_or_load(key, slow_loader) for i in range(200))
    )
    assert loads == 1
    assert all(r.value == {"id": 8} for r in results)


def test_an_invalidation_during_a_slow_load_is_never_undone(client):
    key, cache = fresh_key(), CourseCache(client)
    loading, invalidated = threading.Event(), threading.Event()

    def slow_old_read() -> dict[str, str]:
        loading.set()
        invalidated.wait(5)
        return {"title": "old"}  # read from the database before the update

    with ThreadPoolExecutor(max_workers=1) as pool:
        reader = pool.submit(cache.get_or_load, key, slow_old_read)
        loading.wait(5)
        cache.invalidate(key)  # CourseUpdated arrives while the read is in flight
        invalidated.set()
        late = reader.result(5)
    assert late.status is CacheStatus.STALE and late.value == {"title": "old"}
    assert client.exists(key) == 0
    fresh = cache.get_or_load(key, lambda: {"title": "new"})
    assert fresh.status is CacheStatus.MISS and fresh.value == {"title": "new"}
    assert cache.stats.stale == 1


def test_a_failing_loader_releases_its_claim(client):
    key, cache = fresh_key(), CourseCache(client)

    def broken() -> None:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError, match="database down"):
        cache.get_or_load(key, broken)
    assert client.exists(key) == 0
    assert cache.get_or_load(key, lambda: {"ok": True}).status is CacheStatus.MISS


def test_redis_down_falls_back_to_the_loader():
    from courseredis.connection import create_client
    from courseredis.settings import RedisSettings

    dead = create_client(
        RedisSettings.for_nodes(["127.0.0.1:1"], cluster=False, retries=0, connect_timeout_s=0.2)
    )
    cache = CourseCache(dead)
    result = cache.get_or_load(keys.course(1), lambda: {"id": 1})
    assert result.status is CacheStatus.BYPASS and result.value == {"id": 1}
    assert cache.stats.bypasses == 1


def test_the_cache_only_takes_course_keys(client):
    with pytest.raises(ValueError, match="is not a key of"):
        CourseCache(client).get_or_load("session:x", dict)
    with pytest.raises(ValueError, match="is not a key of"):
        CourseCache(client).invalidate("course:*")


def test_an_async_loader_in_the_sync_api_is_a_clear_error(client):
    async def loader() -> int:
        return 1

    with pytest.raises(TypeError, match="async loader"):
        CourseCache(client).get_or_load(fresh_key(), loader)


def test_when_redis_is_out_of_memory_a_miss_reads_the_database_without_caching(client):
    key = fresh_key()
    cache = CourseCache(client)
    with memory_full(client):
        result = cache.get_or_load(key, lambda: {"id": 1, "title": "from the database"})
    assert result.value == {"id": 1, "title": "from the database"}
    assert result.status is CacheStatus.BYPASS
    assert client.exists(key) == 0  # nothing half-written: no lease left behind

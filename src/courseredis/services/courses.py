"""The courses service: course reads through the cache, admin writes that publish events,
and the consumer that keeps the cache and the enrollment counts in step with the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from sqlalchemy import func, select, update

from courseredis import keys
from courseredis.patterns.cache import AsyncCourseCache, CacheStatus
from courseredis.services.app import Served, ServeOptions
from courseredis.services.db.models import Course
from courseredis.services.events import (
    COURSE_DELETED,
    COURSE_UPDATED,
    ENROLLMENT_CREATED,
    TOPIC_COURSES,
    TOPIC_ENROLLMENTS,
    Event,
    RedisStreamsPublisher,
    RedisStreamsSubscriber,
)
from courseredis.services.identity import AdminDep, ClaimsDep, CourseId
from courseredis.services.runtime import Runtime, RuntimeDep, part_of

log = logging.getLogger(__name__)
router = APIRouter(prefix="/courses", tags=["courses"])
# What the client saw: a value loaded while an invalidation raced it is 'stale'; a read
# served straight from the database because Redis did not answer is a 'miss'.
_X_CACHE = {
    CacheStatus.HIT: "hit",
    CacheStatus.MISS: "miss",
    CacheStatus.STALE: "stale",
    CacheStatus.BYPASS: "miss",
}


class CourseUpdate(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    capacity: int = Field(gt=0, le=100_000)


@dataclass(frozen=True)
class CoursesState:
    """What the courses service builds at start-up (`start_consumer`)."""

    cache: AsyncCourseCache
    publisher: RedisStreamsPublisher


CoursesStateDep = Annotated[CoursesState, Depends(part_of(CoursesState))]


def _loader(runtime: Runtime, course_id: int) -> Callable[[], Awaitable[dict[str, Any] | None]]:
    async def load() -> dict[str, Any] | None:
        async with runtime.db() as db:
            course = await db.get(Course, course_id)
            return course.to_dict() if course else None

    return load


@router.get("")
async def list_courses(
    runtime: RuntimeDep,
    _claims: ClaimsDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    async with runtime.db() as db:
        total = (await db.execute(select(func.count()).select_from(Course))).scalar_one()
        rows = await db.execute(
            select(Course).order_by(Course.id).offset((page - 1) * size).limit(size)
        )
        items = [course.to_dict() for course in rows.scalars()]
    return {"items": items, "page": page, "size": size, "total": total}


@router.get("/{course_id}", responses={404: {"description": "no such course"}})
async def read_course(
    course_id: CourseId,
    runtime: RuntimeDep,
    state: CoursesStateDep,
    _claims: ClaimsDep,
    response: Response,
) -> dict[str, Any]:
    result = await state.cache.get_or_load(keys.course(course_id), _loader(runtime, course_id))
    runtime.metrics.cache.labels(result.status.value).inc()
    if result.status is not CacheStatus.HIT:
        runtime.metrics.cache_loads.inc()
    if result.status is CacheStatus.BYPASS:
        runtime.metrics.redis_errors.labels("cache").inc()
    response.headers["X-Cache"] = _X_CACHE[result.status]
    if result.value is None:
        raise HTTPException(
            404, f"no course {course_id}", headers={"X-Cache": response.headers["X-Cache"]}
        )
    value: dict[str, Any] = result.value
    return value


@router.put("/{course_id}", responses={404: {"description": "no such course"}})
async def update_course(
    course_id: CourseId,
    body: CourseUpdate,
    runtime: RuntimeDep,
    state: CoursesStateDep,
    _admin: AdminDep,
) -> dict[str, Any]:
    async with runtime.db() as db, db.begin():
        course = await db.get(Course, course_id, with_for_update=True)
        if course is None:
            raise HTTPException(404, f"no course {course_id}")
        course.title, course.description, course.capacity = (
            body.title,
            body.description,
            body.capacity,
        )
        course.version += 1
        course.updated_at = func.now()
    async with runtime.db() as db:
        fresh = await db.get(Course, course_id)
        assert fresh is not None
        data = fresh.to_dict()
    await _after_write(
        runtime,
        state,
        course_id,
        Event(COURSE_UPDATED, {"course_id": course_id, "version": data["version"]}),
    )
    return data


@router.delete("/{course_id}", status_code=204, responses={404: {"description": "no such course"}})
async def delete_course(
    course_id: CourseId, runtime: RuntimeDep, state: CoursesStateDep, _admin: AdminDep
) -> Response:
    async with runtime.db() as db, db.begin():
        course = await db.get(Course, course_id)
        if course is None:
            raise HTTPException(404, f"no course {course_id}")
        await db.delete(course)
    await _after_write(runtime, state, course_id, Event(COURSE_DELETED, {"course_id": course_id}))
    return Response(status_code=204)


async def _after_write(runtime: Runtime, state: CoursesState, course_id: int, event: Event) -> None:
    """Invalidate here for read-your-writes; the event does it for every other instance.

    The database write has happened: if Redis fails now, answering 503 would tell the
    client its write failed. The write stands, the cache's TTL bounds the staleness, and
    the failure is logged and counted.
    """
    try:
        await state.cache.invalidate(keys.course(course_id))
        await state.publisher.publish(TOPIC_COURSES, event)
    except RedisError as error:
        runtime.metrics.redis_errors.labels("events").inc()
        log.warning(
            "course written but not invalidated or announced",
            extra={"course_id": course_id, "event": event.type, "error": str(error)},
        )


def _event_course_id(event: Event) -> int:
    return keys.valid_int_id("course_id", event.payload.get("course_id"))


async def start_consumer(runtime: Runtime) -> Callable[[], Awaitable[None]]:
    """Start-up hook: the cache, the publisher and the event consumer of this service."""
    state = CoursesState(AsyncCourseCache(runtime.redis), RedisStreamsPublisher(runtime.redis))
    runtime.attach(state)

    async def on_course_event(event: Event) -> None:
        if event.type in (COURSE_UPDATED, COURSE_DELETED):
            await state.cache.invalidate(keys.course(_event_course_id(event)))

    async def on_enrollment_event(event: Event) -> None:
        if event.type != ENROLLMENT_CREATED:
            return
        course_id = _event_course_id(event)
        # Applied once per event: the subscriber runs this under the idempotency claim.
        async with runtime.db() as db, db.begin():
            await db.execute(
                update(Course).where(Course.id == course_id).values(enrolled=Course.enrolled + 1)
            )
        await state.cache.invalidate(keys.course(course_id))

    subscriber = RedisStreamsSubscriber(
        runtime.redis,
        service="courses",
        topics={TOPIC_COURSES: on_course_event, TOPIC_ENROLLMENTS: on_enrollment_event},
        metrics=runtime.metrics,
        reclaim_idle_ms=runtime.settings.event_reclaim_idle_ms,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(subscriber.run(stop), name="courses-events")

    async def shutdown() -> None:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    return shutdown


def serve(options: ServeOptions) -> Served:
    """This service's routes and start-up hooks (`courseredis.services.app.Served`)."""
    return Served(router, (start_consumer,))

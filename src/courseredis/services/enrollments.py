"""The enrollments service: enroll under the enrollment lock, list enrollments.

The lock keeps two requests for the same (course, user) from doing the work at once and
answers the loser 409 at once; the unique constraint in the database is what makes a
double enrollment impossible, even if a lease expires under a paused process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from courseredis import keys
from courseredis.patterns.lock import AsyncLock, LockLost, LockNotAcquired, LockOptions
from courseredis.services.app import Served, ServeOptions
from courseredis.services.db.models import Course, Enrollment
from courseredis.services.events import (
    ENROLLMENT_CREATED,
    TOPIC_ENROLLMENTS,
    Event,
    RedisStreamsPublisher,
)
from courseredis.services.identity import ClaimsDep, CourseId
from courseredis.services.runtime import Runtime, RuntimeDep, part_of

log = logging.getLogger(__name__)
router = APIRouter(prefix="/courses/{course_id}/enrollments", tags=["enrollments"])
# No waiting: a second request for the same enrollment is a duplicate, answered 409 now.
_NO_WAIT = LockOptions()  # wait 0: one attempt


@dataclass(frozen=True)
class EnrollmentsState:
    """What the enrollments service builds at start-up (`start_publisher`)."""

    publisher: RedisStreamsPublisher
    # One lock client for the service: each AsyncLock seeds its own jitter source.
    lock: AsyncLock


EnrollmentsStateDep = Annotated[EnrollmentsState, Depends(part_of(EnrollmentsState))]


@router.post(
    "",
    status_code=201,
    responses={
        404: {"description": "no such course"},
        409: {"description": "already enrolled, or an enrollment is in progress"},
        503: {"description": "the lock cannot be taken: Redis unavailable"},
    },
)
async def enroll(
    course_id: CourseId, runtime: RuntimeDep, state: EnrollmentsStateDep, claims: ClaimsDep
) -> JSONResponse:
    lock = state.lock
    key = keys.enrollment_lock(course_id, claims.user_id)
    started = time.perf_counter()
    try:
        lease = await lock.acquire(key, _NO_WAIT)
    except LockNotAcquired:
        runtime.metrics.lock.labels("contended").inc()
        raise HTTPException(409, "an enrollment in this course is already in progress") from None
    finally:
        runtime.metrics.lock_wait.observe(time.perf_counter() - started)
    runtime.metrics.lock.labels("acquired").inc()
    try:
        async with runtime.db() as db:
            if await db.get(Course, course_id) is None:
                raise HTTPException(404, f"no course {course_id}")
            enrollment = Enrollment(course_id=course_id, user_id=claims.user_id)
            db.add(enrollment)
            try:
                await db.commit()
            except IntegrityError:
                raise HTTPException(409, "already enrolled in this course") from None
            body = {"id": enrollment.id, "course_id": course_id, "user_id": claims.user_id}
        try:
            await state.publisher.publish(
                TOPIC_ENROLLMENTS,
                Event(ENROLLMENT_CREATED, {**body, "enrollment_id": body["id"]}),
            )
        except RedisError as error:
            # The enrollment is committed: a 503 would be a lie. The event is lost (an
            # outbox table would keep it); the failure is logged and counted.
            runtime.metrics.redis_errors.labels("events").inc()
            log.warning("enrolled but EnrollmentCreated not published", extra={"error": str(error)})
        return JSONResponse(body, status_code=201)
    finally:
        try:
            await lock.release(lease)
        except LockLost:
            log.warning("enrollment lock lost before release", extra={"key": key})


@router.get("")
async def list_enrollments(
    course_id: CourseId, runtime: RuntimeDep, claims: ClaimsDep
) -> dict[str, Any]:
    query = select(Enrollment).where(Enrollment.course_id == course_id)
    if not claims.is_admin:  # students see their own enrollment only
        query = query.where(Enrollment.user_id == claims.user_id)
    async with runtime.db() as db:
        rows = (await db.execute(query.order_by(Enrollment.id))).scalars()
        items = [
            {"id": e.id, "user_id": e.user_id, "created_at": e.created_at.isoformat()} for e in rows
        ]
    return {"course_id": course_id, "items": items}


async def start_publisher(runtime: Runtime) -> Callable[[], Awaitable[None]] | None:
    runtime.attach(EnrollmentsState(RedisStreamsPublisher(runtime.redis), AsyncLock(runtime.redis)))
    return None


def serve(options: ServeOptions) -> Served:
    """This service's routes and start-up hooks (`courseredis.services.app.Served`)."""
    return Served(router, (start_publisher,))

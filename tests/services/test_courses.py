"""Course reads through the cache, admin writes, invalidation by events."""

from __future__ import annotations

import asyncio

from courseredis import keys
from courseredis.services.courses import CoursesState
from courseredis.services.events import TOPIC_COURSES
from courseredis.waiting import wait_until_async
from tests.services.flows import login
from tests.support import assert_follows_schema


async def test_a_course_is_read_twice_miss_then_hit(platform, credentials, admin_client):
    session = await login(platform.gateway, *credentials.students[0])
    admin_client.delete(keys.course(3))
    first = await platform.gateway.get("/courses/3", headers=session.headers)
    second = await platform.gateway.get("/courses/3", headers=session.headers)
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")
    assert first.json() == second.json()
    assert first.json()["id"] == 3
    assert_follows_schema(admin_client, keys.course(3))


def _courses_consumer_caught_up(admin_client) -> bool:
    """The courses group has read and acknowledged every event of its stream."""
    stream = keys.event_stream(TOPIC_COURSES)
    last = admin_client.xinfo_stream(stream)["last-generated-id"]
    (group,) = [g for g in admin_client.xinfo_groups(stream) if g["name"] == "courses"]
    return bool(group["last-delivered-id"] == last and group["pending"] == 0)


async def test_an_update_is_visible_on_the_next_read(platform, credentials, admin_client):
    admin = await login(platform.gateway, *credentials.admin)
    student = await login(platform.gateway, *credentials.students[1])
    await platform.gateway.get("/courses/4", headers=student.headers)  # now cached
    update = {"title": "Redis in Depth", "description": "v2", "capacity": 50}
    written = await platform.gateway.put("/courses/4", json=update, headers=admin.headers)
    assert written.status_code == 200
    # The update's CourseUpdated event invalidates the course again when the consumer gets
    # to it; a read racing that second invalidation is rightly 'stale'. The read under test
    # comes after it, as "the next read" means on a loaded machine too.
    await wait_until_async(
        lambda: asyncio.to_thread(_courses_consumer_caught_up, admin_client),
        timeout_s=10,
        what="the courses consumer to handle the update's event",
    )
    after = await platform.gateway.get("/courses/4", headers=student.headers)
    assert after.json()["title"] == "Redis in Depth"
    assert after.headers["X-Cache"] == "miss"


async def test_the_event_consumer_invalidates_what_another_instance_cached(
    platform, credentials, admin_client
):
    from courseredis.services.events import COURSE_UPDATED, TOPIC_COURSES, Event

    student = await login(platform.gateway, *credentials.students[2])
    await platform.gateway.get("/courses/5", headers=student.headers)
    assert admin_client.exists(keys.course(5)) == 1
    # As if another courses instance had updated course 5.
    publisher = platform.runtime("courses").part(CoursesState).publisher
    await publisher.publish(TOPIC_COURSES, Event(COURSE_UPDATED, {"course_id": 5, "version": 99}))
    for _ in range(100):
        if admin_client.exists(keys.course(5)) == 0:
            break
        await asyncio.sleep(0.05)
    assert admin_client.exists(keys.course(5)) == 0


async def test_only_admins_write_and_bad_ids_are_422(platform, credentials):
    student = await login(platform.gateway, *credentials.students[3])
    update = {"title": "x", "description": "", "capacity": 1}
    assert (
        await platform.gateway.put("/courses/6", json=update, headers=student.headers)
    ).status_code == 403
    for bad in ["abc", "0", "-1", "99999999999999999999", "1.5", "%7B1%7D"]:
        response = await platform.gateway.get(f"/courses/{bad}", headers=student.headers)
        assert response.status_code == 422, bad
    missing = await platform.gateway.get("/courses/999999", headers=student.headers)
    assert missing.status_code == 404


async def test_an_oversized_body_is_refused(platform, credentials):
    admin = await login(platform.gateway, *credentials.admin)
    big = {"title": "x", "description": "y" * 100_000, "capacity": 1}
    response = await platform.gateway.put("/courses/7", json=big, headers=admin.headers)
    assert response.status_code == 413


async def test_a_redelivered_enrollment_event_is_applied_once(platform):
    from courseredis.services.db.models import Course
    from courseredis.services.events import ENROLLMENT_CREATED, TOPIC_ENROLLMENTS, Event

    runtime = platform.runtime("courses")

    async def enrolled() -> int:
        async with runtime.db() as db:
            course = await db.get(Course, 9)
            assert course is not None
            return int(course.enrolled)

    before = await enrolled()
    duplicates = runtime.metrics.events_duplicates.labels("courses")
    skipped_before = duplicates._value.get()
    event = Event(ENROLLMENT_CREATED, {"course_id": 9, "user_id": 1, "enrollment_id": 1})
    publisher = runtime.part(CoursesState).publisher
    await publisher.publish(TOPIC_ENROLLMENTS, event)
    await publisher.publish(TOPIC_ENROLLMENTS, event)  # delivered twice
    for _ in range(200):
        if duplicates._value.get() > skipped_before and await enrolled() > before:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # room for a wrong second increment to show
    assert await enrolled() == before + 1
    assert duplicates._value.get() > skipped_before

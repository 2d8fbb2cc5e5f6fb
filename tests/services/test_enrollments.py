"""Enrollments: the lock answers duplicates at once, the database makes them impossible."""

from __future__ import annotations

import asyncio

from courseredis import keys
from courseredis.services.settings import LimitSpec, RoutePolicy
from tests.services.conftest import redis_per_service
from tests.services.flows import login
from tests.services.platform import running_platform

UNLIMITED = {"enrollments.create": RoutePolicy(per_user=[LimitSpec(limit=10_000, window_s=60)])}


async def test_200_concurrent_enrollments_of_one_user_create_one_row(
    stack, seeded_database, credentials, admin_client
):
    async with running_platform(
        redis_per_service(stack), seeded_database[0], rate_limits=UNLIMITED
    ) as platform:
        student = await login(platform.gateway, *credentials.students[5])
        course = 11 if stack.mode == "cluster" else 12
        responses = await asyncio.gather(
            *(
                platform.gateway.post(f"/courses/{course}/enrollments", headers=student.headers)
                for _ in range(200)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses.count(201) == 1
        assert statuses.count(409) == 199
        listed = await platform.gateway.get(
            f"/courses/{course}/enrollments", headers=student.headers
        )
        assert len(listed.json()["items"]) == 1
        # The lock is gone once the enrollment is done.
        user_id = listed.json()["items"][0]["user_id"]
        assert admin_client.exists(keys.enrollment_lock(course, user_id)) == 0


async def test_enrolling_in_a_missing_course_is_404(platform, credentials):
    student = await login(platform.gateway, *credentials.students[6])
    response = await platform.gateway.post("/courses/999999/enrollments", headers=student.headers)
    assert response.status_code == 404

"""The flows that lean on the database, on PostgreSQL (the production database)."""

from __future__ import annotations

import asyncio

from courseredis.services.db.migrate import upgrade_async
from courseredis.services.db.seed import seed
from courseredis.services.settings import LimitSpec, RoutePolicy
from tests.services.conftest import demo_password, redis_per_service
from tests.services.db.postgres import fresh_database
from tests.services.flows import login
from tests.services.platform import running_platform

UNLIMITED = {"enrollments.create": RoutePolicy(per_user=[LimitSpec(limit=10_000, window_s=60)])}


async def test_login_read_and_200_concurrent_enrollments_on_postgresql(
    stack, postgres_url, admin_client
):
    async with fresh_database(postgres_url) as url:
        await upgrade_async(url)
        credentials = await seed(url, courses=5, students=2, password=demo_password)
        async with running_platform(
            redis_per_service(stack), url, rate_limits=UNLIMITED
        ) as platform:
            student = await login(platform.gateway, *credentials.students[0])
            read = await platform.gateway.get("/courses/1", headers=student.headers)
            assert read.status_code == 200
            responses = await asyncio.gather(
                *(
                    platform.gateway.post("/courses/2/enrollments", headers=student.headers)
                    for _ in range(200)
                )
            )
            statuses = [r.status_code for r in responses]
            assert statuses.count(201) == 1
            assert statuses.count(409) == 199

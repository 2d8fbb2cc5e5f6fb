"""The rules the schema itself enforces, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from courseredis.services.db.engine import create_engine, make_sessionmaker
from courseredis.services.db.models import Course, Enrollment, User

CONCURRENT_WRITERS = 200
# Writers spread over several engines, as over several service processes.
ENGINES = 4


async def _course_and_user(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    async with sessions() as session, session.begin():
        course = Course(title="Course 1: Distributed Systems", capacity=30)
        user = User(username="student1", password_hash="x", roles="student")
        session.add_all([course, user])
    return course.id, user.id


async def _count(sessions: async_sessionmaker[AsyncSession], model: type[object]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_second_enrollment_of_the_same_user_is_rejected(sessions) -> None:
    course_id, user_id = await _course_and_user(sessions)
    async with sessions() as session:
        session.add(Enrollment(course_id=course_id, user_id=user_id))
        await session.commit()
    async with sessions() as session:
        session.add(Enrollment(course_id=course_id, user_id=user_id))
        with pytest.raises(IntegrityError, match=r"(?i)unique|uq_enrollment_course_user"):
            await session.commit()
    assert await _count(sessions, Enrollment) == 1


async def test_concurrent_enrollments_of_one_user_create_one_row(migrated_url, sessions) -> None:
    """200 sessions insert the same (course, user) at once: one wins, the rest conflict.

    On SQLite none of them may fail with "database is locked": they wait for the lock.
    """
    course_id, user_id = await _course_and_user(sessions)
    engines = [create_engine(migrated_url) for _ in range(ENGINES)]
    makers = [make_sessionmaker(engine) for engine in engines]

    async def enroll(writer: int) -> bool:
        async with makers[writer % ENGINES]() as session:
            session.add(Enrollment(course_id=course_id, user_id=user_id))
            try:
                await session.commit()
            except IntegrityError:
                return False
            return True

    try:
        outcomes = await asyncio.gather(*(enroll(n) for n in range(CONCURRENT_WRITERS)))
    finally:
        await asyncio.gather(*(engine.dispose() for engine in engines))
    assert outcomes.count(True) == 1
    assert await _count(sessions, Enrollment) == 1


async def test_concurrent_read_then_write_transactions_all_commit(migrated_url, sessions) -> None:
    """Transactions that read before they write: the case `busy_timeout` alone cannot save.

    With SQLite's deferred BEGIN, such a transaction fails at once with "database is
    locked" when another committed since its read; `BEGIN IMMEDIATE` makes it wait instead.
    """
    course_id, _ = await _course_and_user(sessions)
    engines = [create_engine(migrated_url) for _ in range(ENGINES)]
    makers = [make_sessionmaker(engine) for engine in engines]

    async def increment(writer: int) -> None:
        async with makers[writer % ENGINES]() as session, session.begin():
            course = await session.get(Course, course_id)
            assert course is not None
            await session.execute(
                update(Course).where(Course.id == course_id).values(enrolled=Course.enrolled + 1)
            )

    try:
        await asyncio.gather(*(increment(n) for n in range(CONCURRENT_WRITERS)))
    finally:
        await asyncio.gather(*(engine.dispose() for engine in engines))
    async with sessions() as session:
        assert await session.scalar(select(Course.enrolled)) == CONCURRENT_WRITERS


async def test_deleting_a_course_or_a_user_deletes_their_enrollments(sessions) -> None:
    course_id, user_id = await _course_and_user(sessions)
    async with sessions() as session, session.begin():
        other_course = Course(title="Course 2: Operating Systems", capacity=5)
        other_user = User(username="student2", password_hash="x", roles="student")
        session.add_all([other_course, other_user])
        await session.flush()
        session.add_all(
            Enrollment(course_id=c, user_id=u)
            for c in (course_id, other_course.id)
            for u in (user_id, other_user.id)
        )
    async with sessions() as session, session.begin():
        await session.execute(delete(Course).where(Course.id == course_id))
    async with sessions() as session:
        left = (await session.execute(select(Enrollment.course_id, Enrollment.user_id))).all()
    assert sorted(left) == sorted([(other_course.id, user_id), (other_course.id, other_user.id)])

    async with sessions() as session, session.begin():
        await session.execute(delete(User).where(User.id == user_id))
    async with sessions() as session:
        left = (await session.execute(select(Enrollment.course_id, Enrollment.user_id))).all()
    assert left == [(other_course.id, other_user.id)]


async def test_an_enrollment_needs_an_existing_course_and_user(sessions) -> None:
    """On SQLite this holds only with `PRAGMA foreign_keys = ON`, which the engine sets."""
    course_id, user_id = await _course_and_user(sessions)
    for missing in (
        {"course_id": course_id + 100, "user_id": user_id},
        {"course_id": course_id, "user_id": user_id + 100},
    ):
        async with sessions() as session:
            session.add(Enrollment(**missing))
            with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
                await session.commit()


async def test_usernames_are_unique_and_capacity_not_negative(sessions) -> None:
    await _course_and_user(sessions)
    async with sessions() as session:
        session.add(User(username="student1", password_hash="y", roles="student"))
        with pytest.raises(IntegrityError):
            await session.commit()
    async with sessions() as session:
        session.add(Course(title="Course 3: Compilers", capacity=-1))
        with pytest.raises(IntegrityError, match=r"(?i)check|capacity"):
            await session.commit()


async def test_course_to_dict_is_json_ready_with_utc_timestamps(sessions) -> None:
    before = datetime.now(UTC)
    course_id, _ = await _course_and_user(sessions)
    async with sessions() as session:
        course = await session.get(Course, course_id)
        assert course is not None
        data = course.to_dict()
    assert data == {
        "id": course_id,
        "title": "Course 1: Distributed Systems",
        "description": "",
        "capacity": 30,
        "enrolled": 0,
        "version": 1,
        "updated_at": data["updated_at"],
    }
    updated_at = datetime.fromisoformat(data["updated_at"])
    assert data["updated_at"].endswith("+00:00") and updated_at.utcoffset() == timedelta(0)
    assert updated_at >= before

    async with sessions() as session, session.begin():
        course = await session.get(Course, course_id)
        assert course is not None
        course.title, course.version = "Course 1: Distributed Systems II", course.version + 1
    async with sessions() as session:
        reloaded = await session.get(Course, course_id)
        assert reloaded is not None
        assert reloaded.updated_at > updated_at and reloaded.to_dict()["version"] == 2


def test_user_roles_are_comma_separated() -> None:
    user = User(username="admin", password_hash="x", roles="admin,student")
    assert user.role_names == ("admin", "student")
    assert user.has_role("admin") and not User(
        username="s", password_hash="x", roles="student"
    ).has_role("admin")

"""Demo data: idempotent, and the credentials it returns always log in."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from courseredis.services.db.migrate import SchemaNotCurrent
from courseredis.services.db.models import Course, User
from courseredis.services.db.seed import DemoCredentials, course_title, seed
from courseredis.services.passwords import verify_password


async def _users(sessions) -> dict[str, User]:
    async with sessions() as session:
        return {user.username: user for user in await session.scalars(select(User))}


async def _course_count(sessions) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Course)) or 0)


async def test_seed_twice_adds_nothing_and_resets_the_passwords(migrated_url, sessions) -> None:
    first = await seed(migrated_url)
    second = await seed(migrated_url)

    expected = [f"student{n}" for n in range(1, 51)]
    assert [name for name, _ in first.students] == [name for name, _ in second.students] == expected
    assert first.admin[0] == second.admin[0] == "admin"
    assert await _course_count(sessions) == 200
    users = await _users(sessions)
    assert set(users) == {*expected, "admin"}
    assert users["admin"].roles == "admin" and users["student7"].roles == "student"
    # Every run sets the passwords it returns: the second run's log in, the first's no more.
    assert verify_password(users["student7"].password_hash, second.students[6][1])
    assert verify_password(users["admin"].password_hash, second.admin[1])
    assert not verify_password(users["admin"].password_hash, first.admin[1])
    assert second.admin[1] != second.students[0][1]


async def test_seed_with_more_adds_only_what_is_missing(migrated_url, sessions) -> None:
    await seed(migrated_url, courses=3, students=2)
    async with sessions() as session:
        first_ids = list(await session.scalars(select(Course.id).order_by(Course.id)))
    await seed(migrated_url, courses=5, students=4)
    async with sessions() as session:
        courses = list(await session.scalars(select(Course).order_by(Course.id)))
    assert [c.id for c in courses[:3]] == first_ids
    assert [c.title for c in courses] == [course_title(n) for n in range(1, 6)]
    assert courses[0].title == "Course 1: Distributed Systems"
    assert all(c.capacity > 0 and c.enrolled == 0 and c.version == 1 for c in courses)
    assert len(await _users(sessions)) == 5


async def test_one_hash_per_distinct_password(migrated_url, sessions) -> None:
    """What keeps a seed fast: 50 students who share a password cost one argon2 hash."""
    credentials = await seed(migrated_url, courses=1, students=50)
    users = await _users(sessions)
    assert len({users[name].password_hash for name, _ in credentials.students}) == 1
    assert users["admin"].password_hash != users["student1"].password_hash


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_password_per_user(migrated_url, sessions) -> None:
    credentials = await seed(
        migrated_url, courses=1, students=8, password=lambda user: f"{user}-demo-password"
    )
    users = await _users(sessions)
    assert len({user.password_hash for user in users.values()}) == 9
    for username, password in [*credentials.students, credentials.admin]:
        assert password == f"{username}-demo-password"
    assert verify_password(users["student8"].password_hash, "student8-demo-password")
    assert not verify_password(users["student8"].password_hash, "student7-demo-password")


def test_credentials_to_json() -> None:
    credentials = DemoCredentials(students=[("student1", "pw-one-1")], admin=("admin", "pw-adm-1"))
    assert json.loads(json.dumps(credentials.to_json())) == {
        "students": [{"username": "student1", "password": "pw-one-1"}],
        "admin": {"username": "admin", "password": "pw-adm-1"},
    }


async def test_seed_refuses_an_unmigrated_database(database_url) -> None:
    with pytest.raises(SchemaNotCurrent, match="migrate"):
        await seed(database_url, courses=1, students=1)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_seed_refuses_short_passwords(migrated_url) -> None:
    with pytest.raises(ValueError, match=r"at least|shorter than 8"):
        await seed(migrated_url, courses=1, students=1, password=lambda _user: "short")

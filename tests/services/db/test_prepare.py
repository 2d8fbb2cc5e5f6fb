"""`prepare`: a blank database comes out migrated, with the smoke student and the smoke
course, the same ids in every fresh database, safely under concurrency and idempotently."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from courseredis.services.db.engine import create_engine, make_sessionmaker
from courseredis.services.db.migrate import current_revision, head_revision
from courseredis.services.db.models import Course, User
from courseredis.services.db.prepare import (
    PASSWORD_VARIABLE,
    SMOKE_COURSE_CAPACITY,
    SMOKE_COURSE_TITLE,
    SMOKE_USERNAME,
    USERNAME_VARIABLE,
    PrepareRefused,
    SmokeAccount,
    prepare,
    smoke_account,
)
from courseredis.services.db.seed import course_title, seed
from courseredis.services.passwords import verify_password
from tests.services.db.conftest import sqlite_url

ACCOUNT = SmokeAccount(SMOKE_USERNAME, "a-generated-smoke-password")


async def _contents(url: str) -> tuple[list[tuple[int, str, str, str]], list[tuple[int, str, int]]]:
    """Every user (id, name, roles, hash) and course (id, title, capacity), by id."""
    engine = create_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            users = [
                (u.id, u.username, u.roles, u.password_hash)
                for u in await session.scalars(select(User).order_by(User.id))
            ]
            courses = [
                (c.id, c.title, c.capacity)
                for c in await session.scalars(select(Course).order_by(Course.id))
            ]
    finally:
        await engine.dispose()
    return users, courses


async def _updated_at(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            return list(await session.scalars(select(Course.updated_at).order_by(Course.id)))
    finally:
        await engine.dispose()


async def test_a_blank_database_gets_the_schema_the_student_and_the_course(database_url) -> None:
    prepared = await prepare(database_url, ACCOUNT)

    engine = create_engine(database_url)
    try:
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()
    users, courses = await _contents(database_url)
    assert [(i, name, roles) for i, name, roles, _ in users] == [(1, SMOKE_USERNAME, "student")]
    assert verify_password(users[0][3], ACCOUNT.password)
    assert courses == [(1, SMOKE_COURSE_TITLE, SMOKE_COURSE_CAPACITY)]
    assert (prepared.user_id, prepared.course_id) == (1, 1)
    assert prepared.changes == ("created the account", "created the course")


async def test_a_second_run_changes_nothing(database_url) -> None:
    await prepare(database_url, ACCOUNT)
    before, updated = await _contents(database_url), await _updated_at(database_url)
    again = await prepare(database_url, ACCOUNT)
    assert again.changes == () and "nothing to change" in again.describe()
    # The very same hash: the stored one still verifies, so it is kept, not rehashed.
    assert await _contents(database_url) == before
    assert await _updated_at(database_url) == updated


async def test_a_changed_password_is_applied_and_the_old_one_no_longer_logs_in(
    database_url,
) -> None:
    await prepare(database_url, ACCOUNT)
    rotated = SmokeAccount(SMOKE_USERNAME, "the-next-generated-password")
    prepared = await prepare(database_url, rotated)
    assert prepared.changes == ("set its password",)
    users, courses = await _contents(database_url)
    assert len(users) == 1 and len(courses) == 1
    assert verify_password(users[0][3], rotated.password)
    assert not verify_password(users[0][3], ACCOUNT.password)


async def test_concurrent_prepares_end_with_one_account_and_one_course(database_url) -> None:
    """The replicas of three services start together on one PostgreSQL (or one file)."""
    results = await asyncio.gather(*(prepare(database_url, ACCOUNT) for _ in range(4)))
    users, courses = await _contents(database_url)
    assert [name for _, name, _, _ in users] == [SMOKE_USERNAME]
    assert [title for _, title, _ in courses] == [SMOKE_COURSE_TITLE]
    assert {(r.user_id, r.course_id) for r in results} == {(1, 1)}
    assert sum("created the account" in r.changes for r in results) == 1


async def test_ids_agree_across_fresh_databases(tmp_path: Path) -> None:
    """A dev stack's auth, courses and enrollments pods each prepare a SQLite file of their
    own; a token's `sub` and the course id must mean the same row in each."""
    urls = [sqlite_url(tmp_path / pod) for pod in ("auth", "courses", "enrollments")]
    # One after the other: Alembic keeps the running migration in module globals, so one
    # process migrates one database at a time (the pods are processes of their own).
    results = [await prepare(url, ACCOUNT) for url in urls]
    assert {(r.user_id, r.course_id) for r in results} == {(1, 1)}
    contents = [await _contents(url) for url in urls]
    assert {tuple((i, n) for i, n, _, _ in users) for users, _ in contents} == {
        ((1, SMOKE_USERNAME),)
    }
    assert {tuple(courses) for _, courses in contents} == {
        ((1, SMOKE_COURSE_TITLE, SMOKE_COURSE_CAPACITY),)
    }


async def test_without_an_account_it_only_migrates(database_url) -> None:
    prepared = await prepare(database_url, None)
    assert prepared.user_id is None and prepared.describe() == "no smoke account asked for"
    assert await _contents(database_url) == ([], [])


async def test_a_role_someone_widened_is_put_back_to_student_only(migrated_url) -> None:
    await prepare(migrated_url, ACCOUNT)
    engine = create_engine(migrated_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            user = await session.scalar(select(User).where(User.username == SMOKE_USERNAME))
            assert user is not None
            user.roles = "admin,student"
    finally:
        await engine.dispose()
    assert (await prepare(migrated_url, ACCOUNT)).changes == ("set its roles",)
    users, _ = await _contents(migrated_url)
    assert users[0][2] == "student"


async def test_seed_and_prepare_leave_each_others_data_alone(migrated_url) -> None:
    await prepare(migrated_url, ACCOUNT)
    before, _ = await _contents(migrated_url)
    await seed(migrated_url, courses=3, students=2)
    users, courses = await _contents(migrated_url)
    assert users[0] == before[0]  # seed neither renamed nor reset the smoke account
    assert [title for _, title, _ in courses] == [
        SMOKE_COURSE_TITLE,
        *(course_title(n) for n in range(1, 4)),
    ]
    assert (await prepare(migrated_url, ACCOUNT)).changes == ()
    engine = create_engine(migrated_url)
    try:
        async with make_sessionmaker(engine)() as session:
            assert await session.scalar(select(func.count()).select_from(User)) == 4
    finally:
        await engine.dispose()


# --- the settings, refused before anything is written ---------------------------------------


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({USERNAME_VARIABLE: "smoke"}, f"{PASSWORD_VARIABLE} is not"),
        ({PASSWORD_VARIABLE: "long enough password"}, f"{USERNAME_VARIABLE} is not"),
        ({USERNAME_VARIABLE: "smoke", PASSWORD_VARIABLE: "short"}, "shorter than 8"),
        ({USERNAME_VARIABLE: "admin", PASSWORD_VARIABLE: "long enough"}, "demo account"),
        ({USERNAME_VARIABLE: "student7", PASSWORD_VARIABLE: "long enough"}, "demo account"),
        ({USERNAME_VARIABLE: "smoke user", PASSWORD_VARIABLE: "long enough"}, "letters, digits"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(environ, says) -> None:
    with pytest.raises(PrepareRefused, match=says) as caught:
        smoke_account(environ)
    assert "long enough" not in str(caught.value)  # never the password


def test_the_account_comes_from_both_variables_or_none() -> None:
    assert smoke_account({}) is None
    assert smoke_account({USERNAME_VARIABLE: "", PASSWORD_VARIABLE: ""}) is None
    account = smoke_account({USERNAME_VARIABLE: "smoke", PASSWORD_VARIABLE: "p" * 40})
    assert account == SmokeAccount("smoke", "p" * 40)
    assert "p" * 40 not in repr(account)

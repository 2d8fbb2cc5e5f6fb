"""Make a database ready for the services: migrate it, then ensure the smoke account.

`python -m courseredis.services.db prepare` is what a deployment runs before each pod of a
database-using service starts (the services chart's `prepare-database` init container):

1. the schema is migrated to head (`upgrade_async`: concurrent pods queue on its lock);
2. when `SMOKE_ACCOUNT_USERNAME` and `SMOKE_ACCOUNT_PASSWORD` are set (the Pulumi program
   generates the password into a Secret), that account exists with the student role only
   and this password, and one dedicated course, `SMOKE_COURSE_TITLE`, exists with room for
   any number of smoke runs: the post-deploy smoke suite logs in, enrolls and reads its
   enrollment back as this student, in this course, and never takes a seat of a real one.

Idempotent: a second run with the same password changes nothing (the stored hash still
verifies, so it is kept); a new password replaces the hash. Step 2 runs in one transaction
under `seed`'s lock, so two pods preparing at once cannot both create the account or the
course. Bad input (one variable without the other, a short password, a username `seed`
owns or the login would refuse) is refused before anything is written, migrations included.

Ids are deterministic in a fresh database: nothing but this command writes before the
services start, and it creates the smoke user first, then the smoke course, each with the
first id of its table. That matters for a dev stack (`services.ephemeralDatabase`), where
every pod of auth, courses and enrollments has its own SQLite file: the user id auth puts
in an access token's `sub` is the one enrollments writes, under foreign keys to its own
users and courses tables, and the course id the smoke suite reads from courses is the one
it enrolls in; they agree because every pod prepared its file the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from courseredis import keys
from courseredis.services.db.engine import create_engine, make_sessionmaker, serialize_writers
from courseredis.services.db.migrate import upgrade_async
from courseredis.services.db.models import ROLE_STUDENT, Course, User
from courseredis.services.db.seed import (
    MIN_PASSWORD_LENGTH,
    SEED_LOCK,
    hash_each_once,
    is_demo_username,
    upsert_users,
)
from courseredis.services.passwords import needs_rehash, verify_password

# The account the Pulumi program writes into the smoke Secret; outside `seed`'s names.
SMOKE_USERNAME = "smoke"
USERNAME_VARIABLE = "SMOKE_ACCOUNT_USERNAME"
PASSWORD_VARIABLE = "SMOKE_ACCOUNT_PASSWORD"
# Matched by title, as `seed` matches its own ("Course <N>: ..."), which this never is.
SMOKE_COURSE_TITLE = "Smoke checks (post-deploy; not a real course)"
# Every smoke run's student enrolls once; no run may ever find the course full.
SMOKE_COURSE_CAPACITY = 1_000_000
SMOKE_COURSE_DESCRIPTION = (
    "The course the post-deploy smoke suite enrolls its student in, so that no smoke run "
    "takes a seat of a real course. Created by `python -m courseredis.services.db prepare`."
)


class PrepareRefused(ValueError):
    """The smoke account's settings cannot be used; the message says which and why."""


@dataclass(frozen=True)
class SmokeAccount:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Prepared:
    """What a `prepare` run found and did (no password)."""

    user_id: int | None = None
    course_id: int | None = None
    changes: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.user_id is None:
            return "no smoke account asked for"
        done = ", ".join(self.changes) or "nothing to change"
        return f"smoke account user {self.user_id}, smoke course {self.course_id}: {done}"


def smoke_account(environ: Mapping[str, str]) -> SmokeAccount | None:
    """The account the environment asks for, None when it names none; `PrepareRefused` for
    half of one, a short password, or a username `seed` owns or the login refuses."""
    username = environ.get(USERNAME_VARIABLE) or ""
    password = environ.get(PASSWORD_VARIABLE) or ""
    if not username and not password:
        return None
    if not username or not password:
        given, missing = (
            (USERNAME_VARIABLE, PASSWORD_VARIABLE)
            if username
            else (PASSWORD_VARIABLE, USERNAME_VARIABLE)
        )
        raise PrepareRefused(f"{given} is set but {missing} is not: set both, or neither")
    try:
        keys.valid_username(USERNAME_VARIABLE, username)
    except keys.InvalidIdentifier as exc:
        raise PrepareRefused(f"{exc} (the login accepts no other)") from None
    if is_demo_username(username):
        raise PrepareRefused(
            f"{USERNAME_VARIABLE} {username!r} is a demo account that `seed` resets: "
            f"use another name, such as {SMOKE_USERNAME!r}"
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PrepareRefused(
            f"{PASSWORD_VARIABLE} is shorter than {MIN_PASSWORD_LENGTH} characters"
        )
    return SmokeAccount(username=username, password=password)


async def prepare(url: str, account: SmokeAccount | None) -> Prepared:
    """Migrate the database at `url` to head, then ensure `account` and the smoke course."""
    await upgrade_async(url)
    if account is None:
        return Prepared()
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            await session.run_sync(lambda sync: serialize_writers(sync.connection(), SEED_LOCK))
            # One flush each, user first: the insert order the module docstring promises.
            user_change = await _ensure_user(session, account)
            await session.flush()
            course_id, course_change = await _ensure_course(session)
            await session.flush()
            user_id = await session.scalar(select(User.id).where(User.username == account.username))
    finally:
        await engine.dispose()
    assert user_id is not None
    changes = tuple(c for c in (user_change, course_change) if c)
    return Prepared(user_id=user_id, course_id=course_id, changes=changes)


async def _ensure_user(session: AsyncSession, account: SmokeAccount) -> str | None:
    """Create the account, or bring its password and role to what is asked; what changed."""
    mine = User.username == account.username
    user = await session.scalar(select(User).where(mine))
    keep = (
        user is not None
        and not needs_rehash(user.password_hash)
        and await asyncio.to_thread(verify_password, user.password_hash, account.password)
    )
    # Read before the upsert, which updates this very object (the session's identity map).
    changed: list[str] = []
    if user is not None:
        changed = [
            what
            for what, same in (("its password", keep), ("its roles", user.roles == ROLE_STUDENT))
            if not same
        ]
    if user is not None and keep:
        password_hash = user.password_hash
    else:
        password_hash = (await hash_each_once([account.password]))[account.password]
    await upsert_users(session, {account.username: (password_hash, ROLE_STUDENT)}, among=mine)
    if user is None:
        return "created the account"
    return f"set {' and '.join(changed)}" if changed else None


async def _ensure_course(session: AsyncSession) -> tuple[int, str | None]:
    """The smoke course's id (the first of that title), created if missing; what changed."""
    found = await session.scalar(
        select(Course.id).where(Course.title == SMOKE_COURSE_TITLE).order_by(Course.id).limit(1)
    )
    if found is not None:
        return found, None
    course = Course(
        title=SMOKE_COURSE_TITLE,
        description=SMOKE_COURSE_DESCRIPTION,
        capacity=SMOKE_COURSE_CAPACITY,
    )
    session.add(course)
    await session.flush()
    return course.id, "created the course"

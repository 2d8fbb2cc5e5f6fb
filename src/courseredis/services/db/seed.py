"""Demo data: courses, students `student1..studentN` and one `admin`, idempotently.

A second run adds nothing (a larger `courses` or `students` adds only what is missing) and
returns the same usernames. Passwords are a different matter: a stored hash cannot be
turned back into the password a load test needs, so every run sets the demo accounts'
passwords to the ones it returns. `password` maps a username to its password; without
it, each run draws one random password for the students and one for the admin.

Hashing: demo passwords get the same argon2id parameters as real ones (see
`courseredis.services.passwords`), so a demo login costs what a real one does, which is
what a load test of logins must measure. One hash costs about 0.1 s of CPU, so each
distinct password is hashed once and its hash shared by the accounts that use it: the
default (one password for the students, one for the admin) and `--password-file` cost two
hashes, a quarter of a second, however many students. A `password` function that gives
every account its own password pays per account (about 0.1 s per password and CPU core,
on up to four threads).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from courseredis.services.db.engine import create_engine, make_sessionmaker, serialize_writers
from courseredis.services.db.migrate import check_schema_current
from courseredis.services.db.models import ROLE_ADMIN, ROLE_STUDENT, Course, User
from courseredis.services.passwords import hash_password

ADMIN_USERNAME = "admin"
STUDENT_PREFIX = "student"
MIN_PASSWORD_LENGTH = 8
# argon2 takes 64 MiB per hash in flight; a few at a time keep a seed's memory modest.
_HASHING_THREADS = min(4, os.cpu_count() or 1)
# Whatever writes accounts or courses it first found missing takes this lock (seed, prepare).
SEED_LOCK = "courseredis.services.db.seed"
_DEMO_USERNAME = re.compile(rf"{ADMIN_USERNAME}|{STUDENT_PREFIX}[0-9]+")

# Titles cycle through these; the number keeps each title distinct ("Course 41: ...").
TOPICS = (
    "Distributed Systems",
    "Operating Systems",
    "Database Internals",
    "Computer Networks",
    "Algorithms and Data Structures",
    "Compilers",
    "Machine Learning",
    "Computer Security",
    "Cloud Infrastructure",
    "Functional Programming",
    "Computer Architecture",
    "Software Testing",
    "Human-Computer Interaction",
    "Information Retrieval",
    "Concurrency and Parallelism",
    "Cryptography",
    "Linear Algebra",
    "Probability and Statistics",
    "Web Development",
    "Site Reliability Engineering",
    "Programming Languages",
    "Computer Graphics",
    "Natural Language Processing",
    "Formal Methods",
    "Embedded Systems",
    "Data Visualization",
    "Stream Processing",
    "Mobile Development",
    "Numerical Methods",
    "Technical Writing",
)
# Seats per course, cycled: mostly roomy, with some small courses that fill up under load.
CAPACITIES = (30, 50, 120, 25, 80, 10, 200, 40, 60, 5)
DEFAULT_COURSES = 200  # what `seed` makes unless told: the load suites' course ids 1..n


@dataclass(frozen=True)
class DemoCredentials:
    """The demo accounts and the passwords the seed run that returned them set."""

    students: list[tuple[str, str]]
    admin: tuple[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "students": [{"username": u, "password": p} for u, p in self.students],
            "admin": {"username": self.admin[0], "password": self.admin[1]},
        }


def course_title(number: int) -> str:
    return f"Course {number}: {TOPICS[(number - 1) % len(TOPICS)]}"


def student_username(number: int) -> str:
    return f"{STUDENT_PREFIX}{number}"


def is_demo_username(username: str) -> bool:
    """Whether `seed` owns this account (`admin`, `student<N>`): it resets their passwords."""
    return _DEMO_USERNAME.fullmatch(username) is not None


async def seed(
    url: str,
    *,
    courses: int = DEFAULT_COURSES,
    students: int = 50,
    password: Callable[[str], str] | None = None,
) -> DemoCredentials:
    """Create what is missing of the demo data at `url`; (re)set the demo passwords.

    The schema must be migrated first (`SchemaNotCurrent` otherwise). Runs in one
    transaction that concurrent seeds queue on, so two at once cannot both add a course.
    Raises ValueError for a negative count or a password shorter than 8 characters.
    """
    if courses < 0 or students < 0:
        raise ValueError(f"counts must not be negative: courses={courses}, students={students}")
    choose = password or _random_passwords()
    usernames = [student_username(n) for n in range(1, students + 1)]
    credentials = DemoCredentials(
        students=[(name, choose(name)) for name in usernames],
        admin=(ADMIN_USERNAME, choose(ADMIN_USERNAME)),
    )
    accounts = [*credentials.students, credentials.admin]
    for username, secret in accounts:
        if len(secret) < MIN_PASSWORD_LENGTH:
            raise ValueError(
                f"the password for {username} is shorter than {MIN_PASSWORD_LENGTH} characters"
            )
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        await check_schema_current(engine)
        hashes = await hash_each_once(secret for _, secret in accounts)
        async with make_sessionmaker(engine)() as session, session.begin():
            await session.run_sync(lambda sync: serialize_writers(sync.connection(), SEED_LOCK))
            await _add_missing_courses(session, courses)
            roles = {name: ROLE_STUDENT for name in usernames} | {ADMIN_USERNAME: ROLE_ADMIN}
            demo = (User.username == ADMIN_USERNAME) | User.username.startswith(STUDENT_PREFIX)
            await upsert_users(session, {u: (hashes[p], roles[u]) for u, p in accounts}, among=demo)
    finally:
        await engine.dispose()
    return credentials


def _random_passwords() -> Callable[[str], str]:
    students, admin = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    return lambda username: admin if username == ADMIN_USERNAME else students


async def hash_each_once(passwords: Iterable[str]) -> dict[str, str]:
    """password -> its argon2 hash, each distinct password hashed once, off the event loop."""
    distinct = sorted(set(passwords))
    limit = asyncio.Semaphore(_HASHING_THREADS)

    async def hashed(secret: str) -> str:
        async with limit:
            return await asyncio.to_thread(hash_password, secret)

    return dict(zip(distinct, await asyncio.gather(*map(hashed, distinct)), strict=True))


async def _add_missing_courses(session: AsyncSession, count: int) -> None:
    wanted = {course_title(n): n for n in range(1, count + 1)}
    # All titles, not `IN (200 titles)`: a large --courses would pass SQLite's bound limit.
    existing = set((await session.scalars(select(Course.title))).all())
    session.add_all(
        Course(
            title=title,
            description=_description(number),
            capacity=CAPACITIES[(number - 1) % len(CAPACITIES)],
        )
        for title, number in wanted.items()
        if title not in existing
    )


def _description(number: int) -> str:
    topic = TOPICS[(number - 1) % len(TOPICS)]
    return (
        f"{topic}, section {number}: lectures, weekly exercises and a final project. "
        "Demo data created by `python -m courseredis.services.db seed`."
    )


async def upsert_users(
    session: AsyncSession,
    wanted: dict[str, tuple[str, str]],
    *,
    among: ColumnElement[bool],
) -> None:
    """Create missing accounts; give existing ones the password hash and roles of `wanted`
    (username -> (hash, roles)). `among` selects the rows that may hold them: a predicate,
    not `IN (every username)`, which a large --students would take past SQLite's bound
    limit. An account already as wanted is left untouched (no UPDATE is sent)."""
    found = {user.username: user for user in (await session.scalars(select(User).where(among)))}
    for username, (password_hash, roles) in wanted.items():
        user = found.get(username)
        if user is None:
            session.add(User(username=username, password_hash=password_hash, roles=roles))
        else:
            user.password_hash, user.roles = password_hash, roles

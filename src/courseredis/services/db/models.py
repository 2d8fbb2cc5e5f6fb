"""The services' tables as typed SQLAlchemy models: users, courses, enrollments.

The first migration (`migrations/versions/0001_initial.py`) is written by hand to match
these models, and a test compares the migrated schema with this metadata on SQLite and on
PostgreSQL: a change here needs a new migration, or that test fails.

Constraints carry the rules that must hold however many processes write at once: a
double enrollment is impossible because `uq_enrollment_course_user` rejects the second
row, whichever process inserts it and whatever any cache or lock said before.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Constraint and index names are part of the schema: a later migration drops or alters a
# constraint by name, and SQLite and PostgreSQL must agree on it.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLE_STUDENT = "student"
ROLE_ADMIN = "admin"


def utc_now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on every database.

    PostgreSQL stores `timestamptz`; SQLite has no timezone type and hands back naive
    values. Binding converts to UTC and loading attaches UTC, so `updated_at.isoformat()`
    says `+00:00` on both.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware one (UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    # An argon2 PHC string (`courseredis.services.passwords`), never the password.
    password_hash: Mapped[str] = mapped_column(String(255))
    # Comma-separated, no spaces: "student", "admin", "admin,student".
    roles: Mapped[str] = mapped_column(String(200), default=ROLE_STUDENT)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utc_now, server_default=func.now()
    )

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(role for role in self.roles.split(",") if role)

    def has_role(self, role: str) -> bool:
        return role in self.role_names


class Course(Base):
    __tablename__ = "courses"
    __table_args__ = (
        CheckConstraint("capacity >= 0", name="capacity_not_negative"),
        CheckConstraint("enrolled >= 0", name="enrolled_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(4000), default="")
    capacity: Mapped[int] = mapped_column(Integer)
    # A projection of the enrollments table, maintained by the courses service's idempotent
    # consumer of EnrollmentCreated events; the enrollments table is the truth.
    enrolled: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Bumped by whoever changes the course; caches and clients compare it, not timestamps.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utc_now, onupdate=utc_now, server_default=func.now()
    )

    def to_dict(self) -> dict[str, Any]:
        """The course as JSON-ready data: what the API returns and the cache stores."""
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "capacity": self.capacity,
            "enrolled": self.enrolled,
            "version": self.version,
            "updated_at": self.updated_at.isoformat(),
        }


class Enrollment(Base):
    __tablename__ = "enrollments"
    __table_args__ = (
        # The rule that makes a double enrollment impossible, whatever races above it.
        UniqueConstraint("course_id", "user_id", name="uq_enrollment_course_user"),
        # "My enrollments" looks up by user; by course, the unique index above serves.
        Index("ix_enrollments_user_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utc_now, server_default=func.now()
    )

"""`python -m courseredis.services.db migrate|prepare|seed|revision`: the database from the
shell.

The database is `--database-url`, else `$DATABASE_URL` (what the services read), else the
development SQLite file `.local/courses.db`. Any failure is one line on stderr that says
what to do, and exit code 2; `seed` prints the demo credentials as JSON on stdout.
`prepare` (what a deployment runs before the services start) migrates, then ensures the
smoke account of `SMOKE_ACCOUNT_USERNAME` / `SMOKE_ACCOUNT_PASSWORD` and the smoke course.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.util import CommandError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from courseredis.services.db.engine import DEFAULT_DATABASE_URL, create_engine, redacted
from courseredis.services.db.migrate import (
    CLI,
    SchemaNotCurrent,
    alembic_config,
    check_schema_current,
    head_revision,
    upgrade_async,
)
from courseredis.services.db.prepare import PrepareRefused, prepare, smoke_account
from courseredis.services.db.seed import DEFAULT_COURSES, MIN_PASSWORD_LENGTH, seed

EXIT_ERROR = 2


class UsageError(Exception):
    """A problem with what the command was given, said as the fix."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    url: str = args.database_url
    try:
        if args.command == "migrate":
            asyncio.run(upgrade_async(url))
            print(f"migrated {redacted(url)} to {head_revision()}", file=sys.stderr)
        elif args.command == "prepare":
            # Read and checked before anything is written, migrations included.
            account = smoke_account(os.environ)
            prepared = asyncio.run(prepare(url, account))
            print(
                f"prepared {redacted(url)}: schema at {head_revision()}; {prepared.describe()}",
                file=sys.stderr,
            )
        elif args.command == "seed":
            password = _read_password(args.password_file) if args.password_file else None
            credentials = asyncio.run(
                seed(
                    url,
                    courses=args.courses,
                    students=args.students,
                    password=None if password is None else (lambda _username: password),
                )
            )
            print(json.dumps(credentials.to_json(), indent=2))
        else:
            path = asyncio.run(_new_revision(url, args.message))
            print(f"wrote {path}: review it, then run `{CLI} migrate`", file=sys.stderr)
    except (UsageError, PrepareRefused) as exc:
        return _fail(str(exc))
    except SchemaNotCurrent as exc:
        return _fail(str(exc))
    except (DBAPIError, OSError) as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) else None
        reason = _one_line(cause or exc)
        return _fail(
            f"{args.command} failed on {redacted(url)}: {reason} "
            "(is the server running, and are --database-url / DATABASE_URL right?)"
        )
    except (ValueError, SQLAlchemyError, CommandError) as exc:
        return _fail(f"{args.command} failed on {redacted(url)}: {_one_line(exc)}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def _read_password(path: str) -> str:
    """The first line of the file: a file, not an argument, keeps it out of `ps` and history."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --password-file {path}: {_one_line(exc)}") from None
    password = lines[0] if lines else ""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(
            f"--password-file {path}: the first line must hold a password of at least "
            f"{MIN_PASSWORD_LENGTH} characters"
        )
    return password


async def _new_revision(url: str, message: str) -> str:
    """Autogenerate the next migration by comparing the models with a database at head."""
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        await check_schema_current(engine)
        next_id = f"{int(head_revision()) + 1:04d}"
        async with engine.connect() as connection:
            script = await connection.run_sync(
                lambda sync: command.revision(
                    alembic_config(sync), message=message, autogenerate=True, rev_id=next_id
                )
            )
    finally:
        await engine.dispose()
    assert script is not None and not isinstance(script, list)
    return str(script.path)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=CLI, description=__doc__.split("\n\n")[0])
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
        help="sqlite+aiosqlite:///path.db or postgresql://user:password@host/name "
        "(default: $DATABASE_URL, else %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "migrate", parents=[database], help="bring the schema up to the newest migration"
    )
    commands.add_parser(
        "prepare",
        parents=[database],
        help="migrate; then, given SMOKE_ACCOUNT_USERNAME and SMOKE_ACCOUNT_PASSWORD, ensure "
        "that student account and the smoke course (what a deployment runs before the services)",
    )
    seeding = commands.add_parser(
        "seed",
        parents=[database],
        help="add missing demo courses and users; print the demo credentials as JSON",
    )
    seeding.add_argument(
        "--courses", type=_count, default=DEFAULT_COURSES, help="default: %(default)s"
    )
    seeding.add_argument("--students", type=_count, default=50, help="default: %(default)s")
    seeding.add_argument(
        "--password-file",
        help="a file whose first line is the password for every demo account "
        "(default: a random one for the students and another for the admin, on every run)",
    )
    revision = commands.add_parser(
        "revision",
        parents=[database],
        help="write the next migration from the models' differences with a migrated database",
    )
    revision.add_argument("-m", "--message", required=True, help="what the migration does")
    return parser


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value

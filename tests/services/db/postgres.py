"""A private PostgreSQL server for a test session, from Debian's `postgresql` package.

`running_postgres(tmp_dir)` runs `initdb` and `pg_ctl` from `/usr/lib/postgresql/<N>/bin`
(the newest N installed), on a free port of 127.0.0.1 only, with its unix socket in its
own folder, and yields the URL of an empty database `courses` owned by the role `courses`
(a password login, not a superuser: tests see the permissions a service has; the role may
CREATE DATABASE, which `fresh_database` uses). The server is stopped by `pg_ctl stop -m
fast` (then by its PID) and its files are removed when the block exits, however it exits.

PostgreSQL refuses to run as root. Under root, every server command runs as the
`postgres` system user (`runuser -u postgres --`), and the server's files go into a new
folder of the system temp dir owned by `postgres`, because pytest's temp folders are
private to root and `postgres` could not enter them; `tmp_dir` is then left unused.

Durability is switched off (`fsync`, `synchronous_commit`, `full_page_writes`): the data
lives for one test session, and the suite runs several times faster without it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from courseredis.local.ports import free_ports

DEBIAN_ROOT = Path("/usr/lib/postgresql")
INSTALL_HINT = "install it with: apt-get install -y postgresql (scripts/setup.sh does, as root)"
DATABASE = "courses"
ROLE = "courses"
SYSTEM_USER = "postgres"
_START_ATTEMPTS = 3
_COMMAND_TIMEOUT_S = 60


class PostgresMissing(RuntimeError):
    """Debian's PostgreSQL server binaries are not installed."""


class PostgresFailed(RuntimeError):
    """The private server could not be set up; the message carries its log's tail."""


def postgres_bin_dir(root: Path = DEBIAN_ROOT) -> Path:
    """`/usr/lib/postgresql/<N>/bin` of the newest N that has `initdb` and `pg_ctl`."""
    found = [
        path.parent
        for path in root.glob("*/bin/initdb")
        if (path.parent / "pg_ctl").exists() and path.parent.parent.name.isdigit()
    ]
    if not found:
        raise PostgresMissing(
            f"PostgreSQL is not installed (no {root}/*/bin/initdb): {INSTALL_HINT}"
        )
    return max(found, key=lambda bin_dir: int(bin_dir.parent.name))


@contextlib.contextmanager
def running_postgres(tmp_dir: Path) -> Iterator[str]:
    """Start a private server; yield `postgresql+asyncpg://courses:...@127.0.0.1:PORT/courses`."""
    bin_dir = postgres_bin_dir()
    as_root = os.geteuid() == 0
    if as_root and shutil.which("runuser") is None:
        raise PostgresFailed("running as root, but runuser (util-linux) is missing")
    base = Path(tempfile.mkdtemp(prefix="courseredis-postgres-")) if as_root else tmp_dir
    server = _Server(bin_dir, base, as_root)
    try:
        server.init()
        server.start()
        password = secrets.token_urlsafe(16)
        server.psql(
            f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{password}';\n"
            f"CREATE DATABASE {DATABASE} OWNER {ROLE};\n"
        )
        yield f"postgresql+asyncpg://{ROLE}:{password}@127.0.0.1:{server.port}/{DATABASE}"
    finally:
        try:
            server.stop()
        finally:
            if as_root:
                shutil.rmtree(base, ignore_errors=True)


@contextlib.asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """A new empty database on the server of `server_url`, dropped afterwards."""
    name = f"test_{secrets.token_hex(6)}"
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        async with admin.connect() as connection:
            # FORCE: a test that leaked a connection must not leak the database too.
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


class _Server:
    def __init__(self, bin_dir: Path, base: Path, as_root: bool) -> None:
        self.bin_dir = bin_dir
        self.base = base
        self.as_root = as_root
        self.data = base / "data"
        self.sockets = base / "sockets"
        self.log = base / "server.log"
        self.port = 0
        self.started = False

    def init(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir()
        # The superuser logs in over the socket only (trust; the folder is private to it):
        # initdb insists on a password when any method is a password method.
        superuser_password = self.base / "superuser-password"
        superuser_password.write_text(secrets.token_urlsafe(16) + "\n")
        superuser_password.chmod(0o600)
        if self.as_root:
            shutil.chown(self.base, SYSTEM_USER, SYSTEM_USER)
            shutil.chown(self.sockets, SYSTEM_USER, SYSTEM_USER)
            shutil.chown(superuser_password, SYSTEM_USER, SYSTEM_USER)
        self.base.chmod(0o700)
        self.sockets.chmod(0o700)
        self._run(
            "initdb",
            "--pgdata", str(self.data),
            "--username", SYSTEM_USER,
            "--pwfile", str(superuser_password),
            "--auth-local", "trust",
            "--auth-host", "scram-sha-256",
            "--encoding", "UTF8",
            "--locale", "C",
            "--no-sync",
            "--no-instructions",
        )  # fmt: skip
        superuser_password.unlink()
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                "\n# courseredis tests: private, loopback only, not durable\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.sockets}'\n"
                "max_connections = 300\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
            )

    def start(self) -> None:
        """Start on a free port; retry on another if something took it in between."""
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.port = free_ports(1)[0]
            log_start = self.log.stat().st_size if self.log.exists() else 0
            started = self._run(
                "pg_ctl", "start",
                "--pgdata", str(self.data),
                "--log", str(self.log),
                "--options", f"-p {self.port}",
                "--wait", "--timeout", "30",
                check=False,
            )  # fmt: skip
            # pg_ctl may give up waiting while the postmaster still runs: stop() must try.
            self.started = True
            if started.returncode == 0:
                return
            log = self._log_since(log_start)
            self.stop()
            if "could not bind" not in log or attempt == _START_ATTEMPTS:
                raise PostgresFailed(f"pg_ctl start failed ({started.stderr.strip()}):\n{log}")

    def psql(self, script: str) -> None:
        self._run(
            "psql",
            "--host", str(self.sockets),
            "--port", str(self.port),
            "--username", SYSTEM_USER,
            "--dbname", "postgres",
            "--no-psqlrc", "--quiet",
            "--set", "ON_ERROR_STOP=1",
            stdin=script,
        )  # fmt: skip

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        pid = self._postmaster_pid()
        if pid is None:
            return
        stopped = self._run(
            "pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "fast", "--wait",
            "--timeout", "30",
            check=False,
        )  # fmt: skip
        if stopped.returncode != 0 and self._is_our_postmaster(pid):
            # SIGQUIT is PostgreSQL's immediate shutdown; the children follow the postmaster.
            os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + 10
            while self._is_our_postmaster(pid) and time.monotonic() < deadline:
                time.sleep(0.05)

    def _postmaster_pid(self) -> int | None:
        try:
            first_line = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None
        return int(first_line) if first_line.strip().isdigit() else None

    def _is_our_postmaster(self, pid: int) -> bool:
        """Whether `pid` still is the postmaster of our data dir (PIDs get reused)."""
        try:
            command_line = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return str(self.data).encode() in command_line

    def _log_since(self, offset: int) -> str:
        try:
            with self.log.open(encoding="utf-8", errors="replace") as log:
                log.seek(offset)
                lines = log.read().splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(lines[-20:])

    def _run(
        self, tool: str, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command: Sequence[str] = [str(self.bin_dir / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", SYSTEM_USER, "--", *command]
        result = subprocess.run(
            command,
            cwd=self.base,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT_S,
            check=False,
            # HOME: under runuser it would still be root's, which `postgres` cannot read.
            env={**os.environ, "LC_ALL": "C", "HOME": str(self.base)},
        )
        if check and result.returncode != 0:
            output = re.sub(r"\s+", " ", (result.stderr or result.stdout).strip())
            raise PostgresFailed(f"{tool} failed (exit {result.returncode}): {output}")
        return result

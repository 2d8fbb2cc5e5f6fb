"""Which RDB format a node's data is in, which formats each engine reads, and the refusal.

RDB files are readable forwards only: a server refuses a file of a format newer than its
own (`Can't handle RDB format version 11`, Redis 7.0 on Valkey 8's data), so an engine can
be upgraded on its data but not always downgraded. The local stack checks before it starts a
server on existing data (`relaunch_nodes`): a start the data's format does not allow is
refused before any process runs, with the file, its format and what the engine reads,
instead of a node that dies at load (or, with the AOF on, one that starts from an older AOF
and overwrites the newer snapshot beside it on its way out).

What is read: `dump.rdb`, and the AOF's base files as the manifest
(`appendonlydir/appendonly.aof.manifest`, Redis >= 7) names them, or the single
`appendonly.aof` of older servers. A base file with an RDB preamble starts with the same
header as an RDB: `REDIS` and four digits (`REDIS0010`), or `VALKEY` and three (`VALKEY080`,
Valkey >= 9). Every such file is checked, whichever of them this start loads: a snapshot
the engine cannot read is a backup it cannot restore. A file that has no such header (an AOF
base of plain commands, a damaged file) has no format to compare; the server judges it.

`READERS` is the one table of what each engine reads (docs/engines.md shows it with its
evidence; tests/local/test_data_format.py checks it against every binary on the machine).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from courseredis.engines import (
    PINNED,
    Engine,
    EngineError,
    LocalEngine,
    local_engine,
    parse_version,
)
from courseredis.local.processes import LocalStackError

# The names the servers use when redis.conf does not set `appenddirname`/`appendfilename`
# (redis_config never does).
AOF_DIRECTORY = "appendonlydir"
AOF_NAME = "appendonly.aof"
RDB_NAME = "dump.rdb"

_HEADER = re.compile(rb"^(?:(REDIS)(\d{4})|(VALKEY)(\d{3}))")


@dataclass(frozen=True)
class Reader:
    """From `since` (major, minor) on, until the next entry, an engine reads RDB formats up
    to `highest`, except those in `foreign` (formats of the other project it refuses)."""

    engine: Engine
    since: tuple[int, int]
    highest: int
    foreign: range = range(0)


# The default (`rdb-version-check strict`) behaviour of each release line. RDB 12-79 are
# Redis's own formats after the projects split (7.4 on); Valkey kept 11 through 8.x and
# moved to 80 (and the `VALKEY` magic) in 9.0, refusing 12-79 unless told to try
# (`rdb-version-check relaxed`, which the platform does not set). A release newer than the
# last entry of its engine is assumed to read what that entry reads: add its line here.
READERS: tuple[Reader, ...] = (
    Reader("redis", (7, 0), 10),
    Reader("redis", (7, 2), 11),
    Reader("redis", (7, 4), 12),  # and 8.0, 8.2, 8.4
    Reader("redis", (8, 6), 13),
    Reader("valkey", (7, 2), 11),  # 7.2, 8.0, 8.1
    Reader("valkey", (9, 0), 80, foreign=range(12, 80)),
    Reader("valkey", (9, 2), 81, foreign=range(12, 80)),
)


class DataFormatError(LocalStackError):
    """The engine cannot read a data file of the node: starting it is refused."""


@dataclass(frozen=True)
class DataFile:
    path: Path
    magic: str  # "REDIS" or "VALKEY"
    version: int

    def describe(self) -> str:
        return f"{self.path} (RDB format {self.version}, `{self.magic}` header)"


def reader(engine: Engine, version: str) -> Reader:
    """What release `version` of `engine` reads, from `READERS`."""
    major_minor = parse_version(version)[:2]
    lines = [r for r in READERS if r.engine == engine and r.since <= major_minor]
    if not lines:
        raise DataFormatError(f"{engine} {version} predates every entry of READERS")
    return lines[-1]


def reads(engine: Engine, version: str, rdb_version: int) -> bool:
    line = reader(engine, version)
    return rdb_version <= line.highest and rdb_version not in line.foreign


def rdb_header(path: Path) -> DataFile | None:
    """The format of an RDB (or an AOF base with an RDB preamble); None without a header."""
    try:
        with path.open("rb") as file:
            head = file.read(9)
    except FileNotFoundError:
        return None
    match = _HEADER.match(head)
    if match is None:
        return None
    magic = (match[1] or match[3]).decode()
    return DataFile(path, magic, int(match[2] or match[4]))


def aof_base_files(directory: Path) -> list[Path]:
    """The base files the AOF manifest names (type `b`), or the single pre-7 AOF file."""
    manifest = directory / AOF_DIRECTORY / f"{AOF_NAME}.manifest"
    if not manifest.exists():
        single = directory / AOF_NAME
        return [single] if single.exists() else []
    bases = []
    for line in manifest.read_text().splitlines():
        # `file <name> seq <n> type <b|h|i>`; a name with spaces comes quoted.
        words = shlex.split(line)
        fields = dict(zip(words[::2], words[1::2], strict=False))
        if fields.get("type") == "b" and "file" in fields:
            bases.append(manifest.parent / fields["file"])
    return bases


def data_files(directory: Path) -> list[DataFile]:
    """Every file of the node's data that carries an RDB format, with that format."""
    found = (rdb_header(path) for path in [directory / RDB_NAME, *aof_base_files(directory)])
    return [f for f in found if f is not None]


def check_readable(directory: Path, engine: Engine, version: str) -> list[DataFile]:
    """The node's data files, or `DataFormatError` naming the first one `engine` at
    `version` cannot read, its format and the highest format that release reads."""
    files = data_files(directory)
    for found in files:
        if reads(engine, version, found.version):
            continue
        line = reader(engine, version)
        refused = (
            f" (RDB {line.foreign.start}-{line.foreign.stop - 1} are Redis formats it refuses)"
            if found.version in line.foreign
            else ""
        )
        raise DataFormatError(
            f"refusing to start {engine} {version} on {found.describe()}: {engine} {version} "
            f"reads RDB formats up to {line.highest}{refused}; the file was written by a newer "
            "server, and a downgrade across an RDB format is not possible (restore a "
            "backup taken before the upgrade, or migrate the data logically)"
        )
    return files


def binary_engine(binary: str) -> LocalEngine:
    """The engine and version of a server binary (`--version`)."""
    # Both engines name their binaries `<engine>-server` (engines.SPECS).
    engine: Engine = "valkey" if "valkey" in Path(binary).name else "redis"
    try:
        return local_engine(engine, PINNED[engine], binary=binary)
    except EngineError as exc:
        raise LocalStackError(str(exc)) from None


def check_binary_reads(directory: Path, binary: str) -> list[DataFile]:
    """`check_readable` for the engine and version of `binary`."""
    engine = binary_engine(binary)
    return check_readable(directory, engine.name, engine.version)

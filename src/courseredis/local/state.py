"""`ROOT/.local/stack.json` on disk: read, written atomically, locked while a command runs.

The document itself is `courseredis.stack_file.StackFile`. The file is shared: every write
is read-modify-write that keeps the keys of other tools, and commands that touch it hold an
exclusive lock so two `up`s in one root cannot interleave.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from courseredis.local.processes import LocalStackError
from courseredis.stack_file import (
    LOCAL_DIR,
    StackFile,
    TargetError,
    read_stack_file,
    stack_file_path,
)


def state_dir(root: Path) -> Path:
    return root.resolve() / LOCAL_DIR


def env_data_dir(root: Path, env: str) -> Path:
    return state_dir(root) / env


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the root's state for the duration of one command."""
    directory = state_dir(root)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_state(root: Path) -> StackFile:
    """The stack.json document; an empty one when there is none."""
    path = stack_file_path(root)
    try:
        return read_stack_file(path)
    except FileNotFoundError:
        return StackFile()
    except TargetError as exc:
        raise LocalStackError(f"{exc}; remove it by hand") from exc


def write_state(root: Path, document: StackFile) -> None:
    """Replace stack.json atomically; readers never see half a file. Mode 0600: passwords."""
    path = stack_file_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(document.to_json(), handle, indent=2)
        handle.write("\n")
    os.replace(temporary, path)


def remove_state(root: Path) -> None:
    stack_file_path(root).unlink(missing_ok=True)

"""`ROOT/.local/stack.json`: what the local stack runs, for later commands and other tools.

The file is shared: later parts of the project add their own top-level keys (`services`),
so every write is read-modify-write that keeps keys it does not know, and commands that
touch it hold an exclusive lock so two `up`s in one root cannot interleave.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from courseredis.local.processes import LocalStackError

STATE_DIR = ".local"
STATE_FILE = "stack.json"


def state_dir(root: Path) -> Path:
    return root.resolve() / STATE_DIR


def state_path(root: Path) -> Path:
    return state_dir(root) / STATE_FILE


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


def read_state(root: Path) -> dict[str, Any]:
    """The stack.json document, or `{}` when there is none."""
    path = state_path(root)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise LocalStackError(f"{path} is not valid JSON ({exc}); remove it by hand") from exc
    if not isinstance(document, dict):
        raise LocalStackError(f"{path} does not hold a JSON object; remove it by hand")
    return document


def write_state(root: Path, document: dict[str, Any]) -> None:
    """Replace stack.json atomically; readers never see half a file. Mode 0600: passwords."""
    path = state_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    os.replace(temporary, path)


def remove_state(root: Path) -> None:
    state_path(root).unlink(missing_ok=True)

"""The Lua scripts of the patterns, each in its own `.lua` file, loaded once.

A script may include a prelude (`prelude_*.lua`, code several scripts share) with a line
`--#include prelude_<name>` after its contract: the line is replaced by the prelude's
text at load time. The SHA is that of the text with the prelude in, the one Redis computes
for the script's EVAL, so EVALSHA finds what EVAL cached.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

# Only preludes are included, and a prelude includes nothing: one level, no cycles.
_INCLUDE = re.compile(r"^--#include (prelude_\w+)$", re.MULTILINE)


@dataclass(frozen=True)
class LuaScript:
    name: str
    source: str
    sha: str


def _read(name: str) -> str:
    return files(__package__).joinpath(f"{name}.lua").read_text()


@cache
def load(name: str) -> LuaScript:
    source = _INCLUDE.sub(lambda include: _read(include[1]).rstrip("\n"), _read(name))
    return LuaScript(name, source, hashlib.sha1(source.encode()).hexdigest())

"""The Lua scripts of the patterns, each in its own `.lua` file, loaded once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files


@dataclass(frozen=True)
class LuaScript:
    name: str
    source: str
    sha: str


@cache
def load(name: str) -> LuaScript:
    source = files(__package__).joinpath(f"{name}.lua").read_text()
    return LuaScript(name, source, hashlib.sha1(source.encode()).hexdigest())

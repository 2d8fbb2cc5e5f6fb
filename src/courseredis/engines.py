"""The two engines the platform runs on, Redis and Valkey: their images, binaries and versions.

A stack file names one engine and a pinned version (`course-redis:redis` `engine`,
`version`); the charts run that engine's official image at that version
(`image_reference`), and the local stack runs the engine's server binary from the
machine's Debian packages (`local_engine`), which may be another version than the stack
names: the local stack then says so (`LocalEngine.note`, in `make up`'s output and in
`.local/stack.json`). docs/engines.md says why these versions and what each engine's
support policy is.

`COURSEREDIS_ENGINE` (`redis` or `valkey`) makes every local stack a process starts run that
engine instead of the stack file's: `make up ENGINE=valkey` and the test run on the second
engine use it. It never reaches the Pulumi program, which deploys what the stack file says.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

Engine = Literal["redis", "valkey"]
ENGINES: tuple[Engine, ...] = get_args(Engine)

# The maintained release of each engine a stack pins when it switches to that engine
# (December 2026; evidence and support policies in docs/engines.md). The stack files name
# their version explicitly; these are what `make up ENGINE=<other>` asks for.
PINNED: dict[Engine, str] = {"redis": "8.10.2", "valkey": "9.1.4"}

# Both official images are built on Debian 13 since these lines (`redis:8.10.2-trixie`,
# `valkey/valkey:9.1.4-trixie`); the variant is part of the pin.
IMAGE_VARIANT = "trixie"

ENGINE_ENV = "COURSEREDIS_ENGINE"

# The local stack needs `cluster-port` and CLUSTER ADDSLOTSRANGE (Redis 7.0); Valkey forked
# from Redis 7.2.4, so every Valkey release has them.
MIN_LOCAL_VERSION: dict[Engine, tuple[int, int]] = {"redis": (7, 0), "valkey": (7, 2)}

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_BINARY_VERSION = re.compile(r"\bv=(\d+)\.(\d+)\.(\d+)")


class EngineError(RuntimeError):
    """The engine asked for cannot run here; the message says what to install."""


@dataclass(frozen=True)
class EngineSpec:
    """What differs between the engines outside their protocol: names of things."""

    name: Engine
    server: str  # the server binary (Debian package and official image alike)
    cli: str
    debian_package: str
    debian_tools: str
    image_repository: str  # the official image on Docker Hub

    def image_tag(self, version: str) -> str:
        return f"{version}-{IMAGE_VARIANT}"


def _spec(name: Engine, image_repository: str) -> EngineSpec:
    """Both engines name their binaries and Debian packages alike: `<engine>-server`, ..."""
    return EngineSpec(
        name=name,
        server=f"{name}-server",
        cli=f"{name}-cli",
        debian_package=f"{name}-server",
        debian_tools=f"{name}-tools",
        image_repository=image_repository,
    )


SPECS: dict[Engine, EngineSpec] = {
    "redis": _spec("redis", image_repository="redis"),
    "valkey": _spec("valkey", image_repository="valkey/valkey"),
}

# What each server's process title starts with once running (`<server> <addr>:<port>`).
SERVER_NAMES = tuple(spec.server for spec in SPECS.values())


def parse_version(text: str) -> tuple[int, int, int]:
    """`8.10.2` -> (8, 10, 2); `ValueError` for anything else (no `latest`, no `8.10`)."""
    match = _VERSION.match(text)
    if match is None:
        raise ValueError(f"version {text!r} must be a full release like 8.10.2")
    return int(match[1]), int(match[2]), int(match[3])


def format_version(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def image_reference(engine: Engine, version: str) -> tuple[str, str]:
    """(repository, tag) of the engine's official image at `version`."""
    spec = SPECS[engine]
    return spec.image_repository, spec.image_tag(version)


def engine_override() -> Engine | None:
    """The engine `COURSEREDIS_ENGINE` names for local stacks, or None when unset or empty."""
    value = os.environ.get(ENGINE_ENV, "").strip()
    if not value:
        return None
    if value not in ENGINES:
        raise EngineError(f"{ENGINE_ENV}={value!r}: the engines are {', '.join(ENGINES)}")
    return value


@dataclass(frozen=True)
class LocalEngine:
    """The server a local stack runs, against what its stack asked for."""

    name: Engine
    version: str  # what the binary reports
    binary: str  # its path
    wanted_name: Engine
    wanted_version: str

    @property
    def note(self) -> str | None:
        """One line when the machine runs something else than the stack names, else None."""
        if (self.name, self.version) == (self.wanted_name, self.wanted_version):
            return None
        return (
            f"engine: {self.wanted_name} {self.wanted_version} is wanted; this machine "
            f"runs {self.name} {self.version} ({self.binary}), the nearest its packages offer"
        )

    def describe(self) -> str:
        return f"{self.name} {self.version}"


def wanted_engine(
    stack_engine: Engine, stack_version: str, override: Engine | None = None
) -> tuple[Engine, str]:
    """The engine and version a local stack should run: the stack file's, unless `override`
    (or `COURSEREDIS_ENGINE`) names the other engine, whose pinned release is then wanted."""
    chosen = override or engine_override() or stack_engine
    if chosen == stack_engine:
        return stack_engine, stack_version
    return chosen, PINNED[chosen]


def local_engine(engine: Engine, wanted_version: str, binary: str | None = None) -> LocalEngine:
    """The engine's server binary on this machine, checked to be recent enough."""
    spec = SPECS[engine]
    path, version = _binary_version(binary or spec.server)
    if version[:2] < MIN_LOCAL_VERSION[engine]:
        raise EngineError(
            f"{path} is {engine} {format_version(version)}; the local stack needs {engine} "
            f">= {format_version(MIN_LOCAL_VERSION[engine])}"
        )
    return LocalEngine(
        name=engine,
        version=format_version(version),
        binary=path,
        wanted_name=engine,
        wanted_version=wanted_version,
    )


def missing_message(engine: Engine, name: str) -> str:
    spec = SPECS[engine]
    how = f"sudo apt-get install {spec.debian_package}"
    if engine == "valkey":
        how += (
            f" {spec.debian_tools} (Debian 12: from bookworm-backports; scripts/setup.sh adds it)"
        )
    return f"{name} not found on PATH; install it with: {how}"


@functools.cache
def _binary_version(name: str) -> tuple[str, tuple[int, int, int]]:
    path = shutil.which(name)
    if path is None:
        engine: Engine = "valkey" if "valkey" in os.path.basename(name) else "redis"
        raise EngineError(missing_message(engine, name))
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
    match = _BINARY_VERSION.search(out)
    if match is None:
        raise EngineError(f"{path} --version printed no version: {out.strip()!r}")
    return path, (int(match[1]), int(match[2]), int(match[3]))


def server_version(info: Mapping[str, object]) -> tuple[Engine, tuple[int, int, int]]:
    """The engine and its version from a node's `INFO server`.

    Valkey keeps `redis_version` at 7.2.4 for clients that check it, and reports its own in
    `valkey_version` (with `server_name: valkey`): reading `redis_version` alone would take
    every Valkey for Redis 7.2.4.
    """
    if "valkey_version" in info:
        return "valkey", parse_version(str(info["valkey_version"]))
    return "redis", parse_version(str(info["redis_version"]))

"""The environments (`dev`, `prod`), read from the Pulumi stack files.

`Pulumi.<env>.yaml` at the repository root is the one definition of an environment: the
local stack, the test fixtures and the Pulumi program all read it through this module, so
`prod` means a 3x2 cluster everywhere or nowhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from courseredis.config_model import StackConfigModel, describe
from courseredis.engines import PINNED, Engine, image_reference, parse_version

PROJECT_NAME = "course-redis"
ENVIRONMENTS = ("dev", "prod")
REPO_ROOT = Path(__file__).resolve().parents[2]

Mode = Literal["standalone", "cluster"]
Persistence = Literal["none", "aof"]

# Redis Cluster cannot run with fewer masters: a majority of masters must agree on failover.
MIN_CLUSTER_MASTERS = 3
_MEMORY = re.compile(r"^[1-9][0-9]*(b|kb|mb|gb)$")


class StackConfigError(ValueError):
    """A stack file is missing or does not describe a valid environment."""


class RedisTopology(StackConfigModel):
    """What Redis an environment runs: the keys under `course-redis:redis`.

    `engine` (redis | valkey) and its pinned `version` choose the server: the official image
    in Kubernetes, the machine's nearest package locally (docs/engines.md). Without them, a
    model built in code runs Redis at its pinned release.
    """

    engine: Engine = "redis"
    version: str = ""  # "" -> the engine's pinned release (courseredis.engines.PINNED)
    mode: Mode
    masters: int = Field(ge=0)
    replicas_per_master: int = Field(ge=0)
    persistence: Persistence
    maxmemory: str
    cluster_node_timeout_ms: int

    @property
    def node_count(self) -> int:
        return self.masters * (1 + self.replicas_per_master)

    @property
    def logout_replica_acks(self) -> int:
        """Replicas that confirm a logout's revocation before it is answered (`WAIT`).

        With replicas, a master killed right after a logout could lose the revocation and
        let the token back in (docs/chaos.md); one acknowledgement closes that window at
        the cost of a replica round trip per logout. Without replicas there is none to ask.
        """
        return 1 if self.mode == "cluster" and self.replicas_per_master > 0 else 0

    @classmethod
    def from_config(cls, raw: object, *, source: str = "config") -> RedisTopology:
        """Parse `course-redis:redis`; `StackConfigError` names the file, the key and why."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise StackConfigError(f"{source}: {describe(exc, within='redis')}") from None

    @property
    def image(self) -> tuple[str, str]:
        """(repository, tag) of the engine's official image at `version`."""
        return image_reference(self.engine, self.version)

    @model_validator(mode="before")
    @classmethod
    def _pinned_version(cls, data: object) -> object:
        if isinstance(data, dict) and not data.get("version"):
            engine = data.get("engine", "redis")
            if engine in PINNED:
                return {**data, "version": PINNED[engine]}
        return data

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        parse_version(value)  # a full release: a floating `8` or `latest` is no pin
        return value

    @field_validator("maxmemory", mode="before")
    @classmethod
    def _memory(cls, value: object) -> str:
        # YAML has no quantity type: `maxmemory: 1GB` is a string, but keep any case.
        text = str(value).lower()
        if not _MEMORY.match(text):
            raise ValueError(f"must look like 256mb or 1gb, not {text!r}")
        return text

    @field_validator("cluster_node_timeout_ms")
    @classmethod
    def _timeout(cls, value: int) -> int:
        if value < 500:
            raise ValueError(f"{value} (below 500) makes failovers flap")
        return value

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.mode == "standalone" and (self.masters != 1 or self.replicas_per_master != 0):
            raise ValueError(
                "standalone mode runs exactly one node (masters: 1, replicasPerMaster: 0)"
            )
        if self.mode == "cluster" and self.masters < MIN_CLUSTER_MASTERS:
            raise ValueError(f"cluster mode needs at least {MIN_CLUSTER_MASTERS} masters")
        return self


@dataclass(frozen=True)
class Environment:
    name: str
    redis: RedisTopology
    config: dict[str, Any]  # the whole stack config, for the Pulumi program


def stack_file(env: str, root: Path = REPO_ROOT) -> Path:
    return root / f"Pulumi.{env}.yaml"


def load_environment(env: str, root: Path = REPO_ROOT) -> Environment:
    """Read `Pulumi.<env>.yaml`; raise `StackConfigError` naming the file on any problem."""
    path = stack_file(env, root)
    if not path.is_file():
        known = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))
        raise StackConfigError(f"no stack file {path.name} for environment {env!r}; known: {known}")
    document = yaml.safe_load(path.read_text()) or {}
    config = document.get("config") or {}
    prefix = f"{PROJECT_NAME}:"
    stripped = {k[len(prefix) :]: v for k, v in config.items() if k.startswith(prefix)}
    if "redis" not in stripped:
        raise StackConfigError(f"{path.name}: no {prefix}redis key")
    return Environment(
        name=env,
        redis=RedisTopology.from_config(stripped["redis"], source=path.name),
        config=stripped,
    )

"""The environments (`dev`, `prod`), read from the Pulumi stack files.

`Pulumi.<env>.yaml` at the repository root is the one definition of an environment: the
local stack, the test fixtures and the Pulumi program all read it through this module, so
`prod` means a 3x2 cluster everywhere or nowhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

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


@dataclass(frozen=True)
class RedisTopology:
    """What Redis an environment runs: the keys under `course-redis:redis`."""

    mode: Mode
    masters: int
    replicas_per_master: int
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
    def from_config(cls, raw: dict[str, Any], *, source: str = "config") -> RedisTopology:
        expected = {
            "mode",
            "masters",
            "replicasPerMaster",
            "persistence",
            "maxmemory",
            "clusterNodeTimeoutMs",
        }
        unknown = set(raw) - expected
        missing = expected - set(raw)
        if unknown or missing:
            raise StackConfigError(
                f"{source}: redis config keys wrong (missing {sorted(missing)}, "
                f"unknown {sorted(unknown)})"
            )
        topology = cls(
            mode=raw["mode"],
            masters=raw["masters"],
            replicas_per_master=raw["replicasPerMaster"],
            persistence=raw["persistence"],
            maxmemory=str(raw["maxmemory"]).lower(),
            cluster_node_timeout_ms=raw["clusterNodeTimeoutMs"],
        )
        topology.validate(source)
        return topology

    def validate(self, source: str = "config") -> None:
        def fail(why: str) -> None:
            raise StackConfigError(f"{source}: {why}")

        if self.mode not in ("standalone", "cluster"):
            fail(f"mode must be standalone or cluster, not {self.mode!r}")
        if self.persistence not in ("none", "aof"):
            fail(f"persistence must be none or aof, not {self.persistence!r}")
        for name in ("masters", "replicas_per_master", "cluster_node_timeout_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                fail(f"{name} must be a non-negative integer, not {value!r}")
        if self.mode == "standalone" and (self.masters != 1 or self.replicas_per_master != 0):
            fail("standalone mode runs exactly one node (masters: 1, replicasPerMaster: 0)")
        if self.mode == "cluster" and self.masters < MIN_CLUSTER_MASTERS:
            fail(f"cluster mode needs at least {MIN_CLUSTER_MASTERS} masters")
        if not _MEMORY.match(self.maxmemory):
            fail(f"maxmemory must look like 256mb or 1gb, not {self.maxmemory!r}")
        if self.cluster_node_timeout_ms < 500:
            fail("clusterNodeTimeoutMs below 500 makes failovers flap")


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

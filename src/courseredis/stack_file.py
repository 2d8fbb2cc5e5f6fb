"""`.local/stack.json`: what the local stack runs, as one model its writer and readers share.

`python -m courseredis.local up` writes it (`courseredis.local.state`), or a running deploy
rehearsal does (`courseredis.rehearsal.stack_description`, its `rehearsal` section set); the
smoke suite, the
load suites, the keyspace audit and `make demo` read it. Each section refuses keys it does
not know, so a hand edit with a typo is an error naming the key. Top-level keys of other
tools are kept as they are (the file is shared: `up` rewrites only its own sections).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from courseredis.config_model import ConfigModel, describe
from courseredis.engines import Engine
from courseredis.environments import Mode

LOCAL_DIR = Path(".local")  # every local state under a root: stack.json, data, databases
STACK_FILE = LOCAL_DIR / "stack.json"  # relative to the root (the current directory)


def stack_file_path(root: Path) -> Path:
    return root.resolve() / STACK_FILE


class TargetError(ValueError):
    """What a tool is pointed at (a stack.json, options, variables) cannot be used; the
    message says what to give instead."""


class Account(ConfigModel):
    username: str
    password: str


class EngineRecord(ConfigModel):
    """The server the nodes run (`name`, `version`, `binary`) and what the stack asked for:
    `note` says it in one line when they differ (the machine's nearest package)."""

    name: Engine
    version: str
    binary: str
    wanted_name: Engine
    wanted_version: str
    note: str | None = None


class RedisRecord(ConfigModel):
    """The `redis` section: the nodes, the admin account, the service users, what stops it."""

    mode: Mode
    nodes: list[str]  # host:port, in start order: masters-to-be first
    username: str | None  # the admin account
    password: str | None
    # Each service's ACL user, named after the service; absent in files written before them.
    users: dict[str, Account] = Field(default_factory=dict)
    # The redis_direct load suite's own ACL user (`courseredis.acl.loadtest_user`); absent
    # in files written before it.
    loadtest: Account | None = None
    data_dir: Path
    pids: list[int]  # pids[i] serves nodes[i]
    # The engine the nodes run; absent in files written before there were two.
    engine: EngineRecord | None = None
    # Host names the cluster announces (MOVED, CLUSTER SLOTS) -> the IP this machine reaches
    # each at, for names it cannot resolve: the rehearsal's pod DNS names. The clients apply
    # it (`RedisSettings.address_map`); empty for the local stack, whose nodes announce IPs.
    address_map: dict[str, str] = Field(default_factory=dict)


class ServiceProcess(ConfigModel):
    """One service `up` started: where it answers, its PID and its log."""

    name: str
    url: str
    pid: int
    logfile: str
    # Its /metrics, on a port of its own (METRICS_PORT); absent in files written before.
    metrics_url: str | None = None


class DemoAccounts(ConfigModel):
    """The seeded demo accounts (also the shape `python -m courseredis.services.db seed` prints)."""

    students: tuple[Account, ...]
    admin: Account | None = None


class RehearsalRecord(ConfigModel):
    """The `rehearsal` section: the file describes a running deploy rehearsal
    (`courseredis.rehearsal`), whose controller keeps it current and whose `down` removes it.
    `courseredis.local` leaves such a file alone: it has nothing of its own to stop in it."""

    env: str
    run_id: str
    state_dir: Path  # the run's state directory (its requests/ answers kubectl calls)


class StackFile(ConfigModel):
    """The whole document; a section is None when `up` has not written it (yet)."""

    model_config = ConfigDict(extra="allow")  # other tools' top-level keys survive `up`

    env: str | None = None
    redis: RedisRecord | None = None
    started_at: str | None = None
    # Absent for a Redis-only stack (`up --redis-only`): `status` then leaves services out.
    services: dict[str, str] | None = None  # service -> base URL
    metrics: dict[str, str] | None = None  # service -> its /metrics URL (a port of its own)
    service_processes: list[ServiceProcess] | None = None
    demo: DemoAccounts | None = None
    database: str | None = None  # the database URL, password redacted
    rehearsal: RehearsalRecord | None = None  # set: a rehearsal's, not `make up`'s

    def to_json(self) -> dict[str, Any]:
        """The JSON document: sections not written stay absent, not null."""
        return {k: v for k, v in self.model_dump(mode="json").items() if v is not None}

    def without_own_sections(self) -> StackFile:
        """Only the other tools' keys: what stays while `up` replaces its stack."""
        return StackFile.model_validate(self.model_extra or {})

    def updated(self, sections: dict[str, Any]) -> StackFile:
        """A copy with `sections` (JSON, as written) replaced, validated like a read file."""
        return StackFile.model_validate({**self.to_json(), **sections})


def parse_stack_file(document: object, path: Path | str) -> StackFile:
    """Validate a decoded stack.json; `TargetError` names the file and each wrong key."""
    try:
        return StackFile.model_validate(document)
    except ValidationError as exc:
        raise TargetError(f"{path}: {describe(exc)}") from None


def read_stack_file(path: Path) -> StackFile:
    """Read and validate a stack.json; `FileNotFoundError` when there is none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise TargetError(f"cannot read {path}: {exc}") from exc
    try:
        return StackFile.model_validate_json(text)
    except ValidationError as exc:
        raise TargetError(f"{path}: {describe(exc)}") from None

"""Running the Pulumi program of one stack under Pulumi's mocks, and recording everything.

`deploy(env)` loads the real `Pulumi.<env>.yaml` into the mocked runtime's config, runs
`infra/__main__.py` as `pulumi up` would, and returns every resource registration the
engine would have received (type, name, inputs as the engine sees them, secrets still
wrapped) and the stack's exports with their secretness.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import rpc

from courseredis.environments import PROJECT_NAME, REPO_ROOT

PROGRAM = REPO_ROOT / "infra" / "__main__.py"
PASSWORD_TYPE = "random:index/randomPassword:RandomPassword"
CHART_TYPE = "kubernetes:helm.sh/v4:Chart"
SECRET_TYPE = "kubernetes:core/v1:Secret"
# What prod's databaseUrl would be: set as a secret, as `pulumi config set --secret` does.
PROD_DATABASE_URL = "postgresql+asyncpg://courses:Db5ecretValue@db.example:5432/courses"


@dataclass(frozen=True)
class Registration:
    typ: str
    name: str
    inputs: dict[str, Any]


class RecordingMocks(pulumi.runtime.Mocks):
    """Records registrations; a RandomPassword's result is a fixed, recognisable string."""

    def __init__(self) -> None:
        self.registrations: list[Registration] = []
        self.generated: dict[str, str] = {}

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[Any, Any]]:
        self.registrations.append(Registration(args.typ, args.name, dict(args.inputs)))
        state = dict(args.inputs)
        if args.typ == PASSWORD_TYPE:
            digest = hashlib.sha256(args.name.encode()).hexdigest()
            value = f"Gen{digest[: int(args.inputs['length']) - 3]}"
            self.generated[args.name] = value
            state["result"] = value
        return f"{args.name}-id", state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return {}, None


@dataclass
class Deployment:
    env: str
    mocks: RecordingMocks
    exports: dict[str, Any] = field(default_factory=dict)
    secret_exports: set[str] = field(default_factory=set)
    program: dict[str, Any] = field(default_factory=dict)  # the module globals of __main__
    secret_flags: dict[str, bool] = field(default_factory=dict)  # component outputs

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.mocks.registrations if r.typ == typ]

    def one(self, typ: str, name: str) -> Registration:
        found = [r for r in self.of_type(typ) if r.name == name]
        assert len(found) == 1, f"{typ} {name}: {len(found)} registrations"
        return found[0]


def stack_config(env: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The stack file's config as the engine hands it to a program: objects as JSON text."""
    document = yaml.safe_load(Path(REPO_ROOT / f"Pulumi.{env}.yaml").read_text())
    config = {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in document["config"].items()
    }
    return config | (extra or {})


def deploy(
    env: str, secrets: dict[str, str] | None = None, plain: dict[str, str] | None = None
) -> Deployment:
    """Run the program for stack `env`; `secrets` are extra config keys set as secrets,
    `plain` extra keys set as `pulumi config set` would."""
    # A fresh context per run: the runtime keeps its root stack and config in context
    # variables, so two stacks in one test session must not share them.
    return contextvars.Context().run(_deploy, env, secrets or {}, plain or {})


def _deploy(env: str, secrets: dict[str, str], plain: dict[str, str]) -> Deployment:
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT_NAME, stack=env, preview=False)
    secret_keys = [f"{PROJECT_NAME}:{key}" for key in secrets]
    extra = {f"{PROJECT_NAME}:{key}": value for key, value in {**plain, **secrets}.items()}
    pulumi.runtime.set_all_config(stack_config(env, extra), secret_keys=secret_keys)
    deployment = Deployment(env=env, mocks=mocks)

    @pulumi.runtime.test
    def run() -> pulumi.Output[None]:
        deployment.program = runpy.run_path(str(PROGRAM), run_name="__main__")
        root = pulumi.runtime.get_root_resource()
        assert isinstance(root, pulumi.runtime.stack.Stack)

        async def collect() -> None:
            for name, value in root.outputs.items():
                output = pulumi.Output.from_input(value)
                deployment.exports[name] = await output.future()
                if await output.is_secret():
                    deployment.secret_exports.add(name)
            redis, services = deployment.program["redis"], deployment.program["services"]
            flagged = {
                "admin": redis.admin_password,
                "exporter": redis.exporter_password,
                "replication": redis.replication_password,
                "jwt": services.jwt_secret,
                **{f"service:{s}": pw for s, pw in redis.service_passwords.items()},
            }
            for label, output in flagged.items():
                deployment.secret_flags[label] = await output.is_secret()

        return pulumi.Output.from_input(collect())

    run()
    return deployment


def unwrap(value: Any) -> Any:
    """Inputs with their secret markers removed (the values the cluster would receive)."""
    if rpc.is_rpc_secret(value):
        return unwrap(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def plain_strings(value: Any) -> list[str]:
    """Every string in `value` outside a secret: what would sit in plain text in the state."""
    if rpc.is_rpc_secret(value):
        return []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *plain_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in plain_strings(v)]
    return [value] if isinstance(value, str) else []


def contains_secret(value: Any) -> bool:
    if rpc.is_rpc_secret(value):
        return True
    if isinstance(value, dict):
        return any(contains_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_secret(v) for v in value)
    return False

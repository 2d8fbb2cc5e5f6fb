"""Running the Pulumi program of one stack under Pulumi's mocks, and recording everything.

The runner is `courseredis.rehearsal.objects` (one code path with the deploy rehearsal);
this module adds what only the tests look at: whether every generated password stays a
secret output of its component (`secret_flags`).
"""

from __future__ import annotations

from courseredis.rehearsal.objects import (
    CHART_TYPE,
    PASSWORD_TYPE,
    PRIVATE_KEY_TYPE,
    PROGRAM,
    SECRET_TYPE,
    Deployment,
    RecordingMocks,
    Registration,
    contains_secret,
    plain_strings,
    stack_config,
    unwrap,
)
from courseredis.rehearsal.objects import deploy as run_program

__all__ = [
    "CHART_TYPE",
    "PASSWORD_TYPE",
    "PRIVATE_KEY_TYPE",
    "PROD_DATABASE_URL",
    "PROGRAM",
    "SECRET_TYPE",
    "Deployment",
    "RecordingMocks",
    "Registration",
    "contains_secret",
    "deploy",
    "plain_strings",
    "stack_config",
    "unwrap",
]

# What prod's databaseUrl would be: set as a secret, as `pulumi config set --secret` does.
PROD_DATABASE_URL = "postgresql+asyncpg://courses:Db5ecretValue@db.example:5432/courses"


async def _flag_component_secrets(deployment: Deployment) -> None:
    redis, services = deployment.program["redis"], deployment.program["services"]
    flagged = {
        "admin": redis.admin_password,
        "exporter": redis.exporter_password,
        "replication": redis.replication_password,
        "loadtest": redis.loadtest_password,
        "smoke": services.smoke_password,
        **{f"jwt-key-{generation}": key for generation, key in services.private_keys.items()},
        **{f"service:{s}": pw for s, pw in redis.service_passwords.items()},
    }
    for label, output in flagged.items():
        deployment.secret_flags[label] = await output.is_secret()


def deploy(
    env: str, secrets: dict[str, str] | None = None, plain: dict[str, str] | None = None
) -> Deployment:
    """Run the program for stack `env`; `secrets` are extra config keys set as secrets,
    `plain` extra keys set as `pulumi config set` would."""
    return run_program(env, secrets, plain, inspect=_flag_component_secrets)

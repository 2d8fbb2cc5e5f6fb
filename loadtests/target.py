"""What a run is pointed at: the gateway, the accounts, the services' /metrics, Redis.

Everything defaults to the local stack's `.local/stack.json` (written by `make up`), and
everything can be given instead, for a deployed environment: the gateway with `--host`,
the accounts with a credentials file (the JSON `python -m courseredis.services.db seed`
prints, or any stack.json), the /metrics URLs, and Redis with the usual `REDIS_*`
variables. Pure: no Locust.
"""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from courseredis.settings import RedisSettings

DEFAULT_STACK_FILE = ".local/stack.json"


class TargetError(RuntimeError):
    """The run cannot start: say what is missing and how to give it."""


@dataclass(frozen=True)
class Account:
    username: str
    password: str


@dataclass(frozen=True)
class Accounts:
    students: tuple[Account, ...]
    admin: Account | None


def read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise TargetError(
            f"{path} not found: start the local stack (`make up`) or point the run elsewhere "
            "(--host, --credentials-file)"
        ) from None
    except json.JSONDecodeError as error:
        raise TargetError(f"{path} is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise TargetError(f"{path} does not hold a JSON object")
    return document


def stack_document(stack_file: str) -> dict[str, Any] | None:
    """The local stack's state, or None when there is no such file."""
    path = Path(stack_file)
    return read_json(path) if path.is_file() else None


def gateway_url(stack: dict[str, Any] | None) -> str | None:
    url = ((stack or {}).get("services") or {}).get("gateway")
    return str(url) if url else None


def service_metrics_urls(
    option: str | None, stack: dict[str, Any] | None, service: str
) -> list[str]:
    """The /metrics URLs of a service: the option (comma-separated, one per pod), else the
    local stack's service; [] when neither is known (the figures are then left out)."""
    if option:
        return [u.strip() for u in option.split(",") if u.strip()]
    url = ((stack or {}).get("services") or {}).get(service)
    return [str(url).rstrip("/") + "/metrics"] if url else []


def _account(entry: Any, where: str) -> Account:
    if not isinstance(entry, dict) or not entry.get("username") or not entry.get("password"):
        raise TargetError(f"{where}: an account is {{'username': ..., 'password': ...}}")
    return Account(str(entry["username"]), str(entry["password"]))


def accounts(credentials_file: str | None, stack: dict[str, Any] | None) -> Accounts:
    """The demo accounts: from the credentials file, else from the stack's `demo`."""
    if credentials_file:
        document = read_json(Path(credentials_file))
        where = credentials_file
    else:
        document = stack or {}
        where = "the local stack"
    demo = document.get("demo", document)  # a stack.json, or the seed's own output
    students = demo.get("students") if isinstance(demo, dict) else None
    if not students:
        raise TargetError(
            f"no demo accounts in {where}: pass --credentials-file with the JSON that "
            "`python -m courseredis.services.db seed` prints"
        )
    admin = demo.get("admin")
    return Accounts(
        tuple(_account(s, where) for s in students),
        _account(admin, where) if admin else None,
    )


def redis_settings(stack: dict[str, Any] | None, service: str) -> RedisSettings:
    """How a Redis-direct user connects: `REDIS_*` when set, else the local stack's Redis as
    the ACL user of the service that owns the pattern (so the run obeys the same ACLs)."""
    if os.environ.get("REDIS_URL") or os.environ.get("REDIS_CLUSTER_NODES"):
        return RedisSettings()
    redis = (stack or {}).get("redis")
    if not redis:
        raise TargetError(
            "no Redis to talk to: set REDIS_URL or REDIS_CLUSTER_NODES (and REDIS_USERNAME, "
            "REDIS_PASSWORD), or start the local stack"
        )
    users = redis.get("users") or {}
    if isinstance(users.get(service), dict):
        username, password = users[service]["username"], users[service]["password"]
    else:
        username, password = redis.get("username"), redis.get("password")
    return RedisSettings.for_nodes(
        list(redis["nodes"]),
        cluster=redis.get("mode") == "cluster",
        username=username,
        password=password,
    )


def fetch_text(url: str, timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        body: bytes = response.read()
    return body.decode()

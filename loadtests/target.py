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
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from courseredis.config_model import describe
from courseredis.settings import RedisSettings
from courseredis.stack_file import STACK_FILE, DemoAccounts, StackFile, read_stack_file
from courseredis.stack_file import Account as Account
from courseredis.stack_file import TargetError as TargetError

DEFAULT_STACK_FILE = str(STACK_FILE)
Accounts = DemoAccounts  # the students the simulated users log in as, and the admin


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise TargetError(
            f"{path} not found: start the local stack (`make up`) or point the run elsewhere "
            "(--host, --credentials-file)"
        ) from None
    except json.JSONDecodeError as error:
        raise TargetError(f"{path} is not JSON: {error}") from None


def stack_document(stack_file: str) -> StackFile | None:
    """The local stack's state, or None when there is no such file."""
    path = Path(stack_file)
    return read_stack_file(path) if path.is_file() else None


def gateway_url(stack: StackFile | None) -> str | None:
    return ((stack and stack.services) or {}).get("gateway")


def service_metrics_urls(option: str | None, stack: StackFile | None, service: str) -> list[str]:
    """The /metrics URLs of a service: the option (comma-separated, one per pod), else the
    local stack's (each service serves them on a port of its own, not on its URL's); []
    when neither is known (the figures are then left out)."""
    if option:
        return [u.strip() for u in option.split(",") if u.strip()]
    url = ((stack and stack.metrics) or {}).get(service)
    return [url] if url else []


def accounts(credentials_file: str | None, stack: StackFile | None) -> Accounts:
    """The demo accounts: from the credentials file, else from the stack's `demo`."""
    demo: DemoAccounts | None
    if credentials_file:
        document = read_json(Path(credentials_file))
        where = credentials_file
        try:
            if isinstance(document, dict) and "demo" in document:  # a stack.json
                demo = StackFile.model_validate(document).demo
            else:  # the seed's own output
                demo = DemoAccounts.model_validate(document)
        except ValidationError as error:
            raise TargetError(f"{where}: {describe(error)}") from None
    else:
        demo = stack.demo if stack else None
        where = "the local stack"
    if demo is None or not demo.students:
        raise TargetError(
            f"no demo accounts in {where}: pass --credentials-file with the JSON that "
            "`python -m courseredis.services.db seed` prints"
        )
    return demo


def redis_settings(stack: StackFile | None) -> RedisSettings:
    """How the Redis-direct suite connects: `REDIS_*` when set, else the local stack's Redis,
    as the suite's own ACL user (`courseredis.acl.loadtest_user`: its patterns' commands on
    its own keys only), never the admin."""
    if os.environ.get("REDIS_URL") or os.environ.get("REDIS_CLUSTER_NODES"):
        return RedisSettings()
    redis = stack.redis if stack else None
    if redis is None:
        raise TargetError(
            "no Redis to talk to: set REDIS_URL or REDIS_CLUSTER_NODES (and REDIS_USERNAME, "
            "REDIS_PASSWORD), or start the local stack"
        )
    if redis.loadtest is None:
        raise TargetError(
            "the local stack has no load-test Redis user (redis.loadtest in stack.json): "
            "start it again (`make down up`)"
        )
    return RedisSettings.for_nodes(
        list(redis.nodes),
        cluster=redis.mode == "cluster",
        username=redis.loadtest.username,
        password=redis.loadtest.password,
        address_map=redis.address_map,  # a rehearsal's pod DNS names -> their IPs
    )


def fetch_text(url: str, timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        body: bytes = response.read()
    return body.decode()

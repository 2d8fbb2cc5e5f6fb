"""Scenario 6: each service's own ACL user is refused everything outside its part.

On a 3x2 cluster with the ACL the project generates (`courseredis.acl`, as `make up` and the
prod chart install it), every service user is tried against a matrix derived from the key
schema (`keys.PATTERNS`), not from the ACL rules themselves:

- for each pattern, on one of its keys, each of the pattern's write and read commands: a
  service that writes the pattern may run all of them, one that only reads it may run the
  reads, any other is refused both;
- commands no pattern uses, on keys of the service's own prefixes (`PERSIST` would strip a
  TTL, `RENAME` would move a key, ...), and keys outside every prefix;
- administrative and dangerous commands (`FLUSHALL`, `KEYS`, `CONFIG`, `DEBUG`, `ACL`,
  `CLIENT KILL`, `SCRIPT FLUSH`, `CLUSTER RESET`, `SHUTDOWN`, ...), on every node;
- a Lua script that reaches, from inside, a key outside the user's prefixes.

A refusal must be Redis's `NOPERM` error (redis-py's `NoPermissionError`): a clear error,
never a silent success. The allowed cells are tried too (a matrix of refusals proves
nothing if everything is refused). Then, one level up: each pattern's API run as a service
that may not use it raises `NoPermissionError`; and a gateway configured with another
service's credentials answers 503 to every authenticated or login request instead of
letting it through.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from redis.exceptions import NoPermissionError, RedisError

from courseredis import keys
from courseredis.acl_probes import DANGEROUS, INVOCATIONS, UNUSED_ON_OWN_KEYS, fill
from courseredis.connection import SyncClient, create_client
from courseredis.environments import load_environment
from courseredis.local import LocalStack, start_stack, stop_stack
from courseredis.local.nodes import node_client
from courseredis.ops.chaos.report import ScenarioResult, describe_error
from courseredis.patterns import (
    Algorithm,
    Blacklist,
    CourseCache,
    Idempotency,
    Lock,
    Policy,
    RateLimiter,
    RefreshTokens,
    Sessions,
)
from courseredis.patterns.ratelimit import Limit
from courseredis.services import registry
from courseredis.settings import RedisSettings

NAME = "access"
TITLE = "6. Access (per-service ACL users)"
HEADLINE = (
    "commands_tried",
    "refused_as_expected",
    "allowed_as_expected",
    "silently_allowed",
    "wrongly_refused",
    "pattern_calls_refused",
)


class AccessOptions:
    @classmethod
    def short(cls) -> AccessOptions:
        return cls()


def run(workdir: Path, options: AccessOptions | None = None) -> ScenarioResult:
    result = ScenarioResult(NAME, TITLE, headline=HEADLINE)
    started = time.monotonic()
    stack: LocalStack | None = None
    try:
        stack = start_stack(load_environment("prod").redis, workdir / "redis", env="prod")
        _scenario(stack, result)
    except Exception as error:
        result.error = describe_error(error)
    finally:
        if stack is not None:
            stop_stack(stack)
    result.duration_s = time.monotonic() - started
    return result


# --- the matrix -------------------------------------------------------------------------------
# The commands tried are courseredis.acl_probes', the smoke suite's too.


def _key(pattern: keys.KeyPattern, service: str) -> str:
    """A valid key of `pattern` (idempotency keys under the service's own consumer name)."""
    if pattern is keys.IDEMPOTENCY:
        return pattern.example(consumer=service)
    return pattern.example()


def _expected(service: str, pattern: keys.KeyPattern, command: str) -> bool:
    """Whether the key schema lets `service` run `command` on `pattern`'s keys."""
    record = registry.service(service)
    if pattern is keys.IDEMPOTENCY and pattern not in record.writes:
        return False
    if pattern in record.writes:
        return command in pattern.write_commands + pattern.read_commands
    if pattern in record.reads:
        return command in pattern.read_commands
    return False


def _fill(template: tuple[str, ...], key: str) -> tuple[str, ...]:
    return fill(template, key, "chaos-group")


def _outcome(client: Any, *args: str) -> tuple[bool, str]:
    """(refused, what happened). Refused: Redis's NOPERM, or a command the server's own
    configuration disables (DEBUG, with `enable-debug-command no`). Any other error means
    the command ran (a wrong type, a missing key): it was allowed."""
    try:
        client.execute_command(*args)
    except NoPermissionError as error:
        return True, f"NOPERM {error}"[:120]
    except RedisError as error:
        text = f"{type(error).__name__}: {error}"[:120]
        return "command not allowed" in str(error), text
    return False, "ok"


def _scenario(stack: LocalStack, result: ScenarioResult) -> None:
    clients = {
        service: create_client(
            RedisSettings.for_nodes(
                stack.nodes,
                cluster=True,
                username=service,
                password=stack.users[service],
                retries=0,
            )
        )
        for service in registry.NAMES
    }
    tried = 0
    silently_allowed: list[str] = []
    wrongly_refused: list[str] = []
    refused_ok = allowed_ok = 0
    refusal_texts: Counter[str] = Counter()
    try:
        for service, client in clients.items():
            for pattern in keys.PATTERNS:
                commands = dict.fromkeys(pattern.write_commands + pattern.read_commands)
                for other in keys.PATTERNS:  # the other patterns' commands, on this key too
                    commands.update(dict.fromkeys(other.write_commands + other.read_commands))
                for command in commands:
                    key = _key(pattern, service)
                    refused, seen = _outcome(client, *_fill(INVOCATIONS[command], key))
                    tried += 1
                    cell = f"{service} {command.upper()} {pattern.name}"
                    if _expected(service, pattern, command):
                        if refused:
                            wrongly_refused.append(cell)
                        else:
                            allowed_ok += 1
                    elif refused:
                        refused_ok += 1
                        refusal_texts[seen.split(":")[0][:60]] += 1
                    else:
                        silently_allowed.append(f"{cell}: {seen}")
                own = list(registry.service(service).writes)
                for template in UNUSED_ON_OWN_KEYS:
                    for pattern in own:
                        key = _key(pattern, service)
                        refused, seen = _outcome(client, *_fill(template, key))
                        tried += 1
                        if refused:
                            refused_ok += 1
                        else:
                            silently_allowed.append(
                                f"{service} {template[0]} {pattern.name}: {seen}"
                            )
            for outside in ("chaos:outside", "user:1", "jwt:other:1", "Course:1", "x"):
                refused, seen = _outcome(client, "SET", outside, "x")
                tried += 1
                if refused:
                    refused_ok += 1
                else:
                    silently_allowed.append(f"{service} SET {outside}: {seen}")
            # A script declaring one of the service's keys but reaching another from inside.
            own_key = _key(registry.service(service).writes[0], service)
            refused, seen = _outcome(
                client, "EVAL", "return redis.call('GET', 'config:secret')", "1", own_key
            )
            tried += 1
            # Refused from inside the script: an error naming the ACL, never a value.
            if refused or "can't access" in seen or "permissions" in seen:
                refused_ok += 1
            else:
                silently_allowed.append(f"{service} EVAL reaching outside its keys: {seen}")

        for service in registry.NAMES:
            for addr in stack.nodes:
                with node_client(addr, service, stack.users[service]) as node:
                    for dangerous in DANGEROUS:
                        refused, seen = _outcome(node, *dangerous)
                        tried += 1
                        if refused:
                            refused_ok += 1
                        else:
                            silently_allowed.append(
                                f"{service} {' '.join(dangerous)} on {addr}: {seen}"
                            )

        pattern_calls, pattern_failures = _pattern_calls(clients)
        gateway = asyncio.run(_gateway_with_wrong_user(stack))
    finally:
        for client in clients.values():
            client.close()

    figures = result.figures
    figures["commands_tried"] = tried
    figures["refused_as_expected"] = refused_ok
    figures["allowed_as_expected"] = allowed_ok
    figures["silently_allowed"] = len(silently_allowed)
    figures["wrongly_refused"] = len(wrongly_refused)
    figures["refusal_errors"] = dict(refusal_texts.most_common(3))
    figures["silently_allowed_cells"] = silently_allowed[:40]
    figures["pattern_calls_refused"] = f"{pattern_calls - len(pattern_failures)}/{pattern_calls}"
    figures["gateway_as_another_user"] = gateway["answers"]
    result.check(
        "every command outside a service's part is refused with NOPERM",
        not silently_allowed,
        "; ".join(silently_allowed[:6]),
    )
    result.check(
        "every command the schema gives a service is allowed",
        not wrongly_refused and allowed_ok > 0,
        "; ".join(wrongly_refused[:6]),
    )
    result.check(
        "a pattern run by a service that may not use it raises NoPermissionError",
        not pattern_failures,
        "; ".join(pattern_failures[:5]),
    )
    result.check(
        "a gateway with another service's credentials lets nothing through",
        gateway["ok"],
        str(gateway["answers"]),
    )


def _pattern_calls(clients: dict[str, SyncClient]) -> tuple[int, list[str]]:
    """Each pattern's API as every service outside its writers: NoPermissionError."""
    expires = datetime.now(UTC) + timedelta(minutes=5)
    policy = Policy((Limit(5, timedelta(seconds=1)),), Algorithm.SLIDING_LOG, "closed")
    calls: dict[str, Callable[[SyncClient, str], Any]] = {
        "jwt_revoked": lambda c, s: Blacklist(c).revoke(uuid.uuid4(), expires),
        "refresh_token": lambda c, s: RefreshTokens(c).issue(1, "courses"),
        "ratelimit_ip": lambda c, s: RateLimiter(c).hit(
            keys.ratelimit_ip("198.51.100.9", "login"), policy
        ),
        "enrollment_lock": lambda c, s: Lock(c).acquire(keys.enrollment_lock(1, 1)),
        "course_cache": lambda c, s: CourseCache(c).get_or_load(
            keys.course(424243), lambda: {"id": 1}
        ),
        "session": lambda c, s: Sessions(c).create(1, ("student",)),
        # Its own consumer name: the claims of another consumer are refused anyway.
        "idempotency": lambda c, s: Idempotency(c).claim(s, "chaos-event"),
    }
    failures: list[str] = []
    count = 0
    for name, call in calls.items():
        pattern = keys.pattern(name)
        for service, client in clients.items():
            if pattern in registry.service(service).writes:
                continue
            count += 1
            try:
                call(client, service)
            except NoPermissionError:
                continue
            except Exception as error:
                failures.append(f"{name} as {service}: {type(error).__name__}: {error}"[:150])
                continue
            failures.append(f"{name} as {service}: succeeded")
    return count, failures


async def _gateway_with_wrong_user(stack: LocalStack) -> dict[str, Any]:
    """The gateway app, in process, given the courses service's credentials by mistake."""
    from courseredis.services.main import build
    from courseredis.services.settings import GatewaySettings, ServiceSettings
    from courseredis.services.tokens import KeyPair, SigningKey, issue_access_token

    jwt_keys = KeyPair.generate()
    settings = ServiceSettings(jwt_public_keys=jwt_keys.public_pem)
    redis_settings = RedisSettings.for_nodes(
        stack.nodes, cluster=True, username="courses", password=stack.users["courses"], retries=0
    )
    upstreams = "http://127.0.0.1:9"  # never reached: everything must stop at the gateway
    app = build(
        "gateway",
        settings=settings,
        redis_settings=redis_settings,
        gateway_settings=GatewaySettings(
            upstreams=dict.fromkeys(registry.default_upstream_urls(), upstreams)
        ),
    )
    token, _ = issue_access_token(
        SigningKey.from_pem(jwt_keys.private_pem),
        settings.jwt_issuer,
        user_id=1,
        roles=("student",),
        session_id=str(uuid.uuid4()),
    )
    answers: dict[str, int] = {}
    logging.getLogger("courseredis").setLevel(logging.ERROR)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("198.51.100.10", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            headers = {"Authorization": f"Bearer {token}"}
            answers["read"] = (await http.get("/courses/1", headers=headers)).status_code
            answers["enroll"] = (
                await http.post("/courses/1/enrollments", headers=headers)
            ).status_code
            answers["login"] = (
                await http.post("/auth/login", json={"username": "a", "password": "b"})
            ).status_code
    return {"answers": answers, "ok": all(status == 503 for status in answers.values())}

"""Scenario 3: every node of the cluster stopped and started on a different loopback address.

This is what Kubernetes does when all the Redis pods are rescheduled: each node keeps its
volume (data, nodes.conf) and gets a new IP. The restart is `restart_stack`, the one code
path `make up`'s stack and `tests/test_cluster_restart.py` use (nodes.conf repaired by
`cluster_repair`, as the chart's init container does); this scenario adds what that test
does not write: the patterns' own data, written through the patterns as the auth service's
ACL user: sessions, refresh-token families (one rotated), revocations.

Figures: how long the restart took until the cluster was healthy, and how much of each kind
of data came back. Locally the services name the nodes by IP, so they are not part of this
scenario; in Kubernetes they name the pods' stable DNS names, which survive the move.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from courseredis import keys
from courseredis.cluster_bootstrap import cluster_health
from courseredis.connection import open_async_client
from courseredis.environments import RedisTopology, load_environment
from courseredis.local import restart_stack, start_stack, stop_stack
from courseredis.local.stack import LocalStack
from courseredis.ops.chaos.report import ScenarioResult, describe_error, rounded
from courseredis.patterns.blacklist import AsyncBlacklist
from courseredis.patterns.refresh import AsyncRefreshTokens, RotationStatus
from courseredis.patterns.sessions import AsyncSessions
from courseredis.settings import RedisSettings

NAME = "restart"
TITLE = "3. Full cluster restart, new addresses"
HEADLINE = (
    "restart_s",
    "new_addresses",
    "sessions_back",
    "refresh_families_back",
    "revocations_back",
    "rotations_ok",
)


def run(workdir: Path, options: RestartOptions | None = None) -> ScenarioResult:
    options = options or RestartOptions()
    result = ScenarioResult(NAME, TITLE, headline=HEADLINE)
    started = time.monotonic()
    topology = load_environment("prod").redis
    running: list[LocalStack] = []  # the stack where it runs now: it moves
    try:
        running.append(start_stack(topology, workdir / "redis", env="prod"))
        asyncio.run(_scenario(running, topology, options, result))
    except Exception as error:
        result.error = describe_error(error)
    finally:
        if running:
            stop_stack(running[0])
    result.duration_s = time.monotonic() - started
    return result


class RestartOptions:
    def __init__(self, items: int = 200) -> None:
        self.items = items

    @classmethod
    def short(cls) -> RestartOptions:
        return cls(items=50)


def _auth_settings(stack: LocalStack) -> RedisSettings:
    return RedisSettings.for_nodes(
        stack.nodes, cluster=True, username="auth", password=stack.users["auth"]
    )


async def _scenario(
    running: list[LocalStack],
    topology: RedisTopology,
    options: RestartOptions,
    result: ScenarioResult,
) -> None:
    stack = running[0]
    client = await open_async_client(_auth_settings(stack))
    expires = int(time.time()) + int(keys.ACCESS_TOKEN_LIFETIME.total_seconds())
    try:
        tokens = AsyncRefreshTokens(client)
        families = [await tokens.issue(1000 + i, "courses") for i in range(options.items)]
        rotated = [await tokens.rotate(f.token) for f in families[: options.items // 2]]
        sessions = AsyncSessions(client)
        for family in families:
            await sessions.create(
                family.record.user_id, ("student",), session_id=family.record.family
            )
        revoked = [str(uuid.uuid4()) for _ in range(options.items)]
        blacklist = AsyncBlacklist(client)
        for jti in revoked:
            await blacklist.revoke(jti, expires)
    finally:
        await client.aclose()

    old_hosts = set(stack.hosts)
    began = time.monotonic()
    stack = running[0] = await asyncio.to_thread(restart_stack, stack, topology)
    took = time.monotonic() - began
    health = await asyncio.to_thread(cluster_health, stack.nodes, stack.username, stack.password, 1)

    client = await open_async_client(_auth_settings(stack))
    try:
        sessions = AsyncSessions(client)
        sessions_back = sum([await sessions.read(f.record.family) is not None for f in families])
        families_back = sum(
            [await client.get(keys.refresh_token(f.record.family)) is not None for f in families]
        )
        revocations_back = sum(await AsyncBlacklist(client).are_revoked(revoked))
        # The token each client holds rotates once more: the rotated ones their successor.
        tokens = AsyncRefreshTokens(client)
        current = [r.token for r in rotated if r.token] + [
            f.token for f in families[len(rotated) :]
        ]
        rotations = [await tokens.rotate(token) for token in current]
        rotations_ok = sum(r.status is RotationStatus.ROTATED for r in rotations)
    finally:
        await client.aclose()
    # TTLs through the admin: the auth user may not read them, rightly.
    admin = await open_async_client(
        RedisSettings.for_nodes(
            stack.nodes, cluster=True, username=stack.username, password=stack.password
        )
    )
    try:
        ttls = [int(await admin.pttl(keys.jwt_revoked(j))) for j in revoked[:20]]
    finally:
        await admin.aclose()

    n = options.items
    figures = result.figures
    figures["restart_s"] = rounded(took, 2)
    figures["new_addresses"] = not (old_hosts & set(stack.hosts))
    figures["sessions_back"] = f"{sessions_back}/{n}"
    figures["refresh_families_back"] = f"{families_back}/{n}"
    figures["revocations_back"] = f"{revocations_back}/{n}"
    figures["rotations_ok"] = f"{rotations_ok}/{n}"
    result.check("cluster healthy at the new addresses", health.ok, "; ".join(health.problems[:3]))
    result.check(
        "every node moved", figures["new_addresses"], f"{sorted(old_hosts & set(stack.hosts))}"
    )
    result.check("revocations back", revocations_back == n, figures["revocations_back"])
    result.check(
        "revocations keep their TTL", all(0 < t <= 930_000 for t in ttls), f"PTTLs {ttls[:3]}"
    )
    result.check("refresh families back", families_back == n, figures["refresh_families_back"])
    result.check("every held refresh token rotates", rotations_ok == n, figures["rotations_ok"])
    result.check(
        "sessions back",
        sessions_back == n,
        f"{figures['sessions_back']}: written by a two-command Lua script, so stored in the AOF "
        "as MULTI/EXEC, which Redis 7.0 drops at load when the `default` user is off "
        "(redis/redis#14541)"
        if sessions_back < n
        else "",
    )

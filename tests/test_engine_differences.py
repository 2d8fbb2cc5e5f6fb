"""Where Redis and Valkey differ, pinned on one real node of each (docs/engines.md).

Each test names a difference the code depends on and checks both engines at once, so a new
Debian package that changes one side fails here, not in a deployment. These run in every
test run: they need both binaries, which `scripts/setup.sh` installs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import ResponseError

from courseredis import acl
from courseredis.engines import ENGINES, PINNED, Engine, local_engine, server_version
from courseredis.local.ports import free_ports
from courseredis.local.processes import is_our_redis
from courseredis.redis_config import render_acl_file
from courseredis.services import registry
from tests.support import wait_for_ping

ADMIN_PASSWORD = "AdminPw0123456789"
SERVICE_PASSWORDS = {s: f"{s.capitalize()}Pw0123456789" for s in registry.NAMES}


class Node:
    def __init__(self, engine: Engine, process: subprocess.Popen[bytes], port: int) -> None:
        self.engine = engine
        self.process = process
        self.port = port
        self.version = local_engine(engine, PINNED[engine]).version

    def client(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> redis.Redis:
        return redis.Redis(
            port=self.port, username=username, password=password, decode_responses=True
        )


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Engine, Node]]:
    """One bare node per engine with the platform's ACL file (admin, service users)."""
    users = acl.all_users(ADMIN_PASSWORD, SERVICE_PASSWORDS, "LoadtestPw0123456789")
    started: dict[Engine, Node] = {}
    try:
        for engine in ENGINES:
            workdir: Path = tmp_path_factory.mktemp(engine)
            (workdir / "users.acl").write_text(render_acl_file(users))
            (port,) = free_ports(1)
            binary = local_engine(engine, PINNED[engine]).binary
            process = subprocess.Popen(
                [
                    *(binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
                    *("--appendonly", "no", "--dir", str(workdir)),
                    *("--aclfile", str(workdir / "users.acl")),
                ],
                stdout=subprocess.DEVNULL,
            )
            node = started[engine] = Node(engine, process, port)
            _wait_for(node)
        yield started
    finally:
        for node in started.values():
            node.process.terminate()
            node.process.wait(timeout=10)


def _wait_for(node: Node) -> None:
    with node.client() as client:
        wait_for_ping(client, node.process)


def test_info_server_names_the_engine_differently(nodes: dict[Engine, Node]) -> None:
    """Valkey keeps `redis_version` at 7.2.4 for clients that test it, and says what it is in
    `server_name` and `valkey_version`; `redis_mode` is `server_mode` there. Whatever reads
    a node's version must use `engines.server_version`, never `redis_version` alone."""
    with nodes["redis"].client() as client:
        info = client.info("server")
    assert info["redis_version"] == nodes["redis"].version
    assert "valkey_version" not in info and "server_name" not in info
    assert info["redis_mode"] == "standalone"
    assert server_version(info) == ("redis", tuple(map(int, nodes["redis"].version.split("."))))

    with nodes["valkey"].client() as client:
        info = client.info("server")
    assert info["redis_version"] == "7.2.4"  # frozen, whatever the Valkey release
    assert info["server_name"] == "valkey"
    assert info["valkey_version"] == nodes["valkey"].version
    assert info["server_mode"] == "standalone" and "redis_mode" not in info
    assert server_version(info) == ("valkey", tuple(map(int, nodes["valkey"].version.split("."))))


@pytest.mark.parametrize("engine", ENGINES)
def test_the_replication_directives_keep_their_redis_names(
    nodes: dict[Engine, Node], engine: Engine
) -> None:
    """Valkey renamed `masteruser`/`masterauth` to `primaryuser`/`primaryauth` and keeps the
    old names as aliases: redis.conf, the chart's start script and the chaos failover scenario
    (`CONFIG GET/SET masterauth`) use the old names on both engines."""
    with nodes[engine].client() as client:
        client.config_set("masteruser", "replication")
        assert client.config_get("masteruser") == {"masteruser": "replication"}
        assert client.config_get("masterauth") == {"masterauth": ""}
        names = set(client.config_get("*"))
    if engine == "valkey":
        assert {"primaryuser", "primaryauth"} <= names
    else:
        assert {"masteruser", "masterauth"} <= names and "primaryuser" not in names


@pytest.mark.parametrize("engine", ENGINES)
def test_process_titles_are_recognised_for_both(nodes: dict[Engine, Node], engine: Engine) -> None:
    """`valkey-server 127.0.0.1:<port>` is as much our node as `redis-server ...`: the local
    stack's stop, status and restart find nodes by their title."""
    node = nodes[engine]
    assert is_our_redis(node.process.pid, node.port)
    assert not is_our_redis(node.process.pid, node.port + 1)


def test_commands_only_valkey_has_are_granted_to_no_service(nodes: dict[Engine, Node]) -> None:
    """Valkey adds commands and subcommands (CLIENT CAPA, CLIENT SETINFO on Redis 7.0,
    SCRIPT SHOW, ...) to the categories; the service users start from `-@all` and grant
    commands by name, so none of them reaches any of those."""
    with nodes["redis"].client() as client:
        redis_commands = _categorised(client)
    with nodes["valkey"].client() as client:
        only_valkey = sorted(_categorised(client) - redis_commands)
        assert "client|capa" in only_valkey or nodes["redis"].version >= "8"
        for service in registry.NAMES:
            for command in only_valkey:
                reply = _dryrun(client, service, *command.split("|"))
                assert reply != "OK", f"{service} may run {command} on valkey"
    # The rules name no category a new command could fall into.
    for service in registry.NAMES:
        assert [rule for rule in acl.commands(service) if rule.startswith("+@")] == []


@pytest.mark.parametrize("engine", ENGINES)
def test_a_service_user_connects_although_client_setinfo_is_refused(
    nodes: dict[Engine, Node], engine: Engine
) -> None:
    """redis-py sends CLIENT SETINFO on connect. Redis 7.0 does not know it; Valkey (and
    Redis >= 7.2) refuse it to a user without `+client|setinfo`, which the ACL file cannot
    grant while Redis 7.0 refuses unknown commands in it. redis-py ignores both errors."""
    service = registry.NAMES[0]
    with nodes[engine].client(service, SERVICE_PASSWORDS[service]) as client:
        assert client.ping()
    with nodes[engine].client() as admin:
        reply = _dryrun(admin, service, "CLIENT", "SETINFO", "LIB-NAME", "x")
    assert reply != "OK"


def _categorised(client: redis.Redis) -> set[str]:
    """Every command and subcommand (`client|capa`) some ACL category holds."""
    return {
        command
        for category in client.execute_command("ACL", "CAT")
        for command in client.execute_command("ACL", "CAT", category)
    }


def _dryrun(client: redis.Redis, user: str, *command: str) -> str:
    """ACL DRYRUN's answer, or the error of a command the server does not know."""
    try:
        return str(client.execute_command("ACL", "DRYRUN", user, *command))
    except ResponseError as exc:
        return f"error: {exc}"

"""The rendered redis.conf and ACL file: per environment, and as a real redis-server reads them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError
from redis.retry import Retry

from courseredis.environments import RedisTopology, load_environment
from courseredis.local.ports import free_ports
from courseredis.redis_config import (
    MAXMEMORY_POLICY,
    AclUser,
    admin_user,
    render_acl_file,
    render_redis_conf,
)
from tests.support import server_binary, wait_for_ping

DEV = load_environment("dev").redis
PROD = load_environment("prod").redis


def directives(conf: str) -> dict[str, list[str]]:
    """`key value` lines -> {key: [value, ...]}, failing on a key given twice."""
    result: dict[str, list[str]] = {}
    for line in conf.splitlines():
        key, _, value = line.partition(" ")
        assert key not in result, f"{key} set twice"
        result[key] = value.split(" ")
    return result


def render(topology: RedisTopology, tmp_path: Path, **overrides: object) -> str:
    options: dict[str, object] = {
        "port": 7000,
        "cluster_port": 17001 if topology.mode == "cluster" else None,
        "bind": "127.0.0.1",
        "data_dir": tmp_path,
        "acl_file": tmp_path / "users.acl",
        "pidfile": tmp_path / "redis.pid",
        "logfile": tmp_path / "redis.log",
        "daemonize": True,
    }
    options.update(overrides)
    return render_redis_conf(topology, **options)  # type: ignore[arg-type]


def test_dev_is_a_single_node_without_persistence(tmp_path: Path) -> None:
    conf = directives(render(DEV, tmp_path))
    assert conf["port"] == ["7000"]
    assert conf["bind"] == ["127.0.0.1"]
    assert conf["protected-mode"] == ["no"]
    assert conf["dir"] == [str(tmp_path)]
    assert conf["aclfile"] == [str(tmp_path / "users.acl")]
    assert conf["maxmemory"] == ["256mb"]
    assert conf["appendonly"] == ["no"]
    assert conf["save"] == ['""']
    assert not [key for key in conf if key.startswith("cluster-")]
    assert "masterauth" not in conf


def test_prod_is_a_cluster_node_with_aof(tmp_path: Path) -> None:
    conf = directives(
        render(PROD, tmp_path, replication_user="admin", replication_password="s3cret")
    )
    assert conf["maxmemory"] == ["1gb"]
    assert conf["appendonly"] == ["yes"]
    assert conf["appendfsync"] == ["everysec"]
    assert "save" not in conf
    assert conf["cluster-enabled"] == ["yes"]
    assert conf["cluster-config-file"] == ["nodes.conf"]
    assert conf["cluster-node-timeout"] == [str(PROD.cluster_node_timeout_ms)]
    assert conf["cluster-port"] == ["17001"]
    assert conf["cluster-require-full-coverage"] == ["yes"]
    assert conf["cluster-allow-replica-migration"] == ["yes"]
    assert conf["masteruser"] == ["admin"]
    assert conf["masterauth"] == ["s3cret"]


@pytest.mark.parametrize("topology", [DEV, PROD], ids=["dev", "prod"])
def test_every_environment_refuses_to_evict(topology: RedisTopology, tmp_path: Path) -> None:
    assert MAXMEMORY_POLICY == "noeviction"
    assert directives(render(topology, tmp_path))["maxmemory-policy"] == ["noeviction"]


def test_announced_hostname_becomes_the_preferred_endpoint(tmp_path: Path) -> None:
    conf = directives(render(PROD, tmp_path, announce_hostname="redis-0.redis.prod.svc"))
    assert conf["cluster-announce-hostname"] == ["redis-0.redis.prod.svc"]
    assert conf["cluster-preferred-endpoint-type"] == ["hostname"]
    assert "cluster-announce-ip" not in conf


def test_the_local_stack_announces_a_hostname_and_its_ip_but_sends_clients_ips(
    tmp_path: Path,
) -> None:
    conf = directives(
        render(
            PROD,
            tmp_path,
            announce_hostname="node-0.courseredis.local",
            announce_ip="127.0.0.9",
            preferred_endpoint="ip",
        )
    )
    assert conf["cluster-announce-hostname"] == ["node-0.courseredis.local"]
    assert conf["cluster-announce-ip"] == ["127.0.0.9"]
    assert conf["cluster-preferred-endpoint-type"] == ["ip"]


def test_cluster_only_options_are_refused_in_standalone(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cluster mode"):
        render(DEV, tmp_path, cluster_port=17001)
    with pytest.raises(ValueError, match="cluster mode"):
        render(DEV, tmp_path, announce_ip="127.0.0.1")
    with pytest.raises(ValueError, match="preferred_endpoint"):
        render(PROD, tmp_path, announce_hostname="a", preferred_endpoint="fqdn")
    with pytest.raises(ValueError, match="go together"):
        render(PROD, tmp_path, replication_user="admin")


def test_paths_with_spaces_are_quoted(tmp_path: Path) -> None:
    conf = render(DEV, tmp_path / "my data")
    assert f'dir "{tmp_path / "my data"}"' in conf.splitlines()


def test_acl_file_disables_default_and_grants_admin_everything() -> None:
    text = render_acl_file({"admin": admin_user("pw-1")})
    assert text == "user default off resetchannels ~* &* +@all\nuser admin on >pw-1 ~* &* +@all\n"


def test_acl_user_is_limited_to_its_keys_and_commands() -> None:
    user = AclUser("course-svc", "pw", key_patterns=("course:*",), commands=("+get", "+set"))
    text = render_acl_file({"admin": admin_user("a"), "course-svc": user})
    assert "user course-svc on >pw ~course:* resetchannels +get +set" in text.splitlines()


@pytest.mark.parametrize(
    ("users", "message"),
    [
        ({"default": AclUser("default", "pw", ("*",), ("+@all",))}, "default user stays off"),
        ({"other": admin_user("pw")}, "names user"),
    ],
)
def test_acl_file_refuses_default_and_mismatched_names(
    users: dict[str, AclUser], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        render_acl_file(users)


@pytest.mark.parametrize("password", ["has space", 'quo"te', ""])
def test_acl_user_refuses_passwords_the_file_format_cannot_hold(password: str) -> None:
    with pytest.raises(ValueError, match="password"):
        AclUser("svc", password, ("svc:*",), ("+get",))


# --- as a real redis-server reads them ------------------------------------------------------


@pytest.fixture
def prod_node(tmp_path: Path) -> Iterator[tuple[redis.Redis, Path]]:
    """One redis-server in the foreground on the rendered prod config, in a path with a space."""
    directory = tmp_path / "node dir"
    directory.mkdir()
    port, bus = free_ports(2)
    limited = AclUser("course-svc", "svc-pw", key_patterns=("course:*",), commands=("+@all",))
    (directory / "users.acl").write_text(
        render_acl_file({"admin": admin_user("admin-pw"), "course-svc": limited})
    )
    conf = render_redis_conf(
        PROD,
        port=port,
        cluster_port=bus,
        bind="127.0.0.1",
        data_dir=directory,
        acl_file=directory / "users.acl",
        announce_hostname="redis-0.redis.prod.svc",
        announce_ip="127.0.0.1",
        pidfile=None,
        logfile=directory / "redis.log",
        daemonize=False,
        replication_user="admin",
        replication_password="admin-pw",
    )
    (directory / "redis.conf").write_text(conf)
    process = subprocess.Popen([server_binary(), str(directory / "redis.conf")], cwd=directory)
    client = redis.Redis(port=port, username="admin", password="admin-pw", decode_responses=True)
    try:
        wait_for_ping(client, process, directory / "redis.log")
        yield client, directory
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


def test_redis_server_runs_the_rendered_config(prod_node: tuple[redis.Redis, Path]) -> None:
    client, directory = prod_node
    settings = client.config_get("*")
    assert settings["maxmemory-policy"] == "noeviction"
    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] == "everysec"
    assert settings["cluster-enabled"] == "yes"
    assert settings["dir"] == str(directory)
    assert settings["maxmemory"] == str(1024**3)
    # Redis 7.0 takes both: the announced name and which endpoint clients are sent.
    assert settings["cluster-announce-hostname"] == "redis-0.redis.prod.svc"
    assert settings["cluster-announce-ip"] == "127.0.0.1"
    assert settings["cluster-preferred-endpoint-type"] == "hostname"


def connect(port: int, username: str | None = None, password: str | None = None) -> redis.Redis:
    # No retries: redis-py counts a refused AUTH as a retryable connection error.
    return redis.Redis(port=port, username=username, password=password, retry=Retry(NoBackoff(), 0))


def test_redis_server_enforces_the_rendered_acl(prod_node: tuple[redis.Redis, Path]) -> None:
    client, _ = prod_node
    port = int(client.connection_pool.connection_kwargs["port"])
    with pytest.raises(AuthenticationError), connect(port) as anonymous:
        anonymous.ping()
    with pytest.raises(AuthenticationError), connect(port, "default", "anything") as default:
        default.ping()
    # The node owns no slots, so keyed commands would fail with CLUSTERDOWN once past the
    # ACL; ACL DRYRUN asks the ACL alone.
    dryrun = ("ACL", "DRYRUN", "course-svc", "GET", "course:1")
    assert client.execute_command(*dryrun) == "OK"
    with pytest.raises(NoPermissionError), connect(port, "course-svc", "svc-pw") as service:
        service.exists("session:1")

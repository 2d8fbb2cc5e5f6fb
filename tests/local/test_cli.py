"""`python -m courseredis.local up|down|status`, run as a person would, in throwaway roots."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError
from redis.retry import Retry

from courseredis.local import LocalStack, stop_stack
from courseredis.local.processes import is_our_redis
from courseredis.services import registry
from courseredis.stack_file import stack_file_path
from courseredis.topology import split_addr


def run_cli(
    *args: str, root: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "courseredis.local", *args, "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def read_stack_json(root: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(stack_file_path(root).read_text())
    return document


def recorded(root: Path) -> LocalStack:
    document = read_stack_json(root)
    return LocalStack.from_json(document["redis"], env=document["env"])


def up(root: Path, env: str) -> subprocess.CompletedProcess[str]:
    # Redis only: these tests are about the Redis part; test_services.py covers the rest.
    result = run_cli("up", "--env", env, "--redis-only", root=root)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def dev_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("dev-root")
    up(root, "dev")
    yield root
    cleanup(root)


@pytest.fixture(scope="module")
def prod_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("prod-root")
    up(root, "prod")
    yield root
    cleanup(root)


def cleanup(root: Path) -> None:
    """`down`, and whatever a failed test left running stopped by its recorded PIDs."""
    path = stack_file_path(root)
    leftover = recorded(root) if path.exists() else None
    run_cli("down", root=root)
    if leftover is not None:
        stop_stack(leftover)


def admin(stack: LocalStack, index: int = 0, **options: Any) -> redis.Redis:
    return redis.Redis(
        port=stack.ports[index],
        username=stack.username,
        password=stack.password,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        **options,
    )


def test_up_dev_records_the_stack(dev_root: Path) -> None:
    document = read_stack_json(dev_root)
    assert document["env"] == "dev"
    datetime.fromisoformat(document["started_at"])
    part = document["redis"]
    assert set(part) == {
        "mode", "nodes", "username", "password", "users", "loadtest", "data_dir", "pids",
        "engine", "address_map",
    }  # fmt: skip
    assert part["address_map"] == {}  # its nodes announce what they are reached at
    # The engine the nodes run, and what the stack file asked for (docs/engines.md).
    assert part["engine"]["wanted_name"] == part["engine"]["name"]
    assert part["engine"]["binary"].endswith(f"{part['engine']['name']}-server")
    assert set(part["users"]) == set(registry.NAMES)
    # The redis_direct load suite's own user, not the admin (issue 13, finding 9).
    assert part["loadtest"]["username"] == "loadtest"
    assert len(part["loadtest"]["password"]) >= 24
    for service, user in part["users"].items():
        assert user["username"] == service
        assert len(user["password"]) >= 24
    assert part["mode"] == "standalone"
    assert len(part["nodes"]) == len(part["pids"]) == 1
    assert part["nodes"][0].startswith("127.0.0.1:")
    assert part["username"] == "admin"
    assert len(part["password"]) >= 24
    assert Path(part["data_dir"]) == dev_root.resolve() / ".local" / "dev"
    assert is_our_redis(part["pids"][0], split_addr(part["nodes"][0])[1])
    # It holds the admin password.
    assert stat.S_IMODE(stack_file_path(dev_root).stat().st_mode) == 0o600


def test_dev_node_takes_admin_and_refuses_default(dev_root: Path) -> None:
    stack = recorded(dev_root)
    with admin(stack) as client:
        assert client.ping() is True
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("appendonly") == {"appendonly": "no"}
    no_retry = Retry(NoBackoff(), 0)
    with pytest.raises(AuthenticationError), redis.Redis(port=stack.ports[0], retry=no_retry) as r:
        r.ping()
    with (
        pytest.raises(AuthenticationError),
        redis.Redis(port=stack.ports[0], username="default", password="", retry=no_retry) as r,
    ):
        r.ping()


def test_up_prod_forms_three_masters_each_with_a_replica(prod_root: Path) -> None:
    stack = recorded(prod_root)
    assert stack.mode == "cluster"
    assert len(stack.nodes) == 6
    cli = ["redis-cli", "-p", str(stack.ports[0]), "--user", "admin", "--pass", str(stack.password)]
    cli.append("--no-auth-warning")
    info = subprocess.run([*cli, "cluster", "info"], capture_output=True, text=True, check=True)
    assert "cluster_state:ok" in info.stdout
    assert "cluster_size:3" in info.stdout
    assert "cluster_known_nodes:6" in info.stdout
    nodes = subprocess.run([*cli, "cluster", "nodes"], capture_output=True, text=True, check=True)
    lines = [line.split() for line in nodes.stdout.splitlines()]
    masters = {f[0] for f in lines if "master" in f[2].split(",")}
    replicas_of = [f[3] for f in lines if "slave" in f[2].split(",")]
    assert len(masters) == 3
    assert sorted(replicas_of) == sorted(masters)
    with admin(stack, 3) as replica:
        assert replica.info("replication")["master_link_status"] == "up"
        assert replica.config_get("appendonly") == {"appendonly": "yes"}


def test_up_again_is_a_no_op(dev_root: Path) -> None:
    before = read_stack_json(dev_root)
    result = up(dev_root, "dev")
    assert "already running and healthy; nothing to do" in result.stdout
    assert read_stack_json(dev_root) == before


def test_status_reports_healthy(dev_root: Path, prod_root: Path) -> None:
    for root in (dev_root, prod_root):
        result = run_cli("status", root=root)
        assert result.returncode == 0, result.stdout
        assert result.stdout.rstrip().endswith("healthy")


def test_two_roots_run_side_by_side(dev_root: Path, prod_root: Path) -> None:
    dev, prod = recorded(dev_root), recorded(prod_root)
    assert not set(dev.ports) & set(prod.ports)
    assert not set(dev.pids) & set(prod.pids)
    assert all(is_our_redis(pid) for pid in [*dev.pids, *prod.pids])


def test_switching_env_then_down(tmp_path: Path) -> None:
    root = tmp_path / "switch"
    try:
        up(root, "dev")
        dev = recorded(root)
        # Another tool's key survives the switch.
        document = read_stack_json(root)
        document["notes"] = {"owner": "another tool"}
        stack_file_path(root).write_text(json.dumps(document))

        result = up(root, "prod")
        assert "stopping the running dev stack first" in result.stdout
        assert not any(is_our_redis(pid) for pid in dev.pids)
        assert not dev.data_dir.exists()
        document = read_stack_json(root)
        assert document["env"] == "prod"
        assert document["notes"] == {"owner": "another tool"}
        prod = recorded(root)

        result = run_cli("down", root=root)
        assert result.returncode == 0, result.stderr
        assert not any(is_our_redis(pid) for pid in prod.pids)
        assert not stack_file_path(root).exists()
        assert not prod.data_dir.exists()

        again = run_cli("down", root=root)
        assert again.returncode == 0
        assert "nothing to stop" in again.stdout
        assert run_cli("status", root=root).returncode == 1
    finally:
        cleanup(root)


def test_missing_redis_server_is_one_actionable_line(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}
    result = run_cli("up", "--env", "dev", "--redis-only", root=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: redis-server not found on PATH; install it with: sudo apt-get install redis-server"
    ]
    assert not stack_file_path(tmp_path).exists()


def test_up_restarts_a_recorded_stack_that_died(tmp_path: Path) -> None:
    root = tmp_path / "died"
    try:
        up(root, "dev")
        dead = recorded(root)
        stop_stack(dead)  # behind the CLI's back, as a crash or a reboot would
        assert run_cli("status", root=root).returncode == 1

        result = up(root, "dev")
        assert "not healthy" in result.stdout
        assert "restarting it" in result.stdout
        alive = recorded(root)
        assert alive.pids != dead.pids
        assert all(is_our_redis(pid) for pid in alive.pids)
    finally:
        cleanup(root)


def _rehearsal_stack_json(root: Path) -> dict[str, Any]:
    """A stack.json as a running rehearsal writes it (`courseredis.rehearsal.stack_description`)."""
    state = root / ".local" / "rehearsal" / "prod-a1b2c3"
    state.mkdir(parents=True)
    document = {
        "env": "prod",
        "redis": {
            "mode": "cluster",
            "nodes": ["10.230.0.10:6379"],
            "username": "admin",
            "password": "pw",
            "data_dir": str(state),
            "pids": [],
        },
        "rehearsal": {"env": "prod", "run_id": "a1b2c3", "state_dir": str(state)},
    }
    stack_file_path(root).write_text(json.dumps(document))
    return document


def test_down_leaves_a_rehearsals_stack_json_to_the_rehearsal(tmp_path: Path) -> None:
    document = _rehearsal_stack_json(tmp_path)
    done = run_cli("down", root=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "rehearsal" in done.stdout and "nothing of ours to stop" in done.stdout
    assert read_stack_json(tmp_path) == document
    assert Path(document["redis"]["data_dir"]).is_dir()


def test_up_is_refused_while_a_rehearsal_is_described(tmp_path: Path) -> None:
    document = _rehearsal_stack_json(tmp_path)
    done = run_cli("up", "--env", "dev", "--redis-only", root=tmp_path)
    assert done.returncode == 1
    assert "describes the running prod rehearsal" in done.stderr and "make down" in done.stderr
    assert read_stack_json(tmp_path) == document


def test_status_says_a_rehearsal_is_described_not_a_local_stack(tmp_path: Path) -> None:
    _rehearsal_stack_json(tmp_path)
    done = run_cli("status", root=tmp_path)
    assert done.returncode == 1 and "rehearsal" in done.stdout

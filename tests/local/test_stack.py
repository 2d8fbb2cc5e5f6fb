"""The Python API of the local stack, as the test fixtures use it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from courseredis.environments import load_environment
from courseredis.local import (
    LocalStack,
    LocalStackError,
    restart_stack,
    running_stack,
    start_stack,
    stop_stack,
)
from courseredis.local import nodes as local_nodes
from courseredis.local.ports import free_ports
from courseredis.local.processes import is_our_redis
from courseredis.services import registry

DEV = load_environment("dev").redis


def test_running_stack_starts_and_always_stops(tmp_path: Path) -> None:
    with running_stack(DEV, tmp_path, env="dev") as stack:
        assert stack.mode == "standalone"
        assert stack.username == "admin"
        assert stack.password
        assert stack.data_dir == tmp_path.resolve()
        assert all(
            is_our_redis(pid, port) for pid, port in zip(stack.pids, stack.ports, strict=True)
        )
        with redis.Redis(port=stack.ports[0], username="admin", password=stack.password) as r:
            assert r.set("k", "v", ex=10)
        assert stack.to_json() == {
            "env": "dev",
            "mode": "standalone",
            "nodes": stack.nodes,
            "username": "admin",
            "password": stack.password,
            "users": {
                service: {"username": service, "password": stack.users[service]}
                for service in registry.NAMES
            },
            "loadtest": {"username": "loadtest", "password": stack.loadtest_password},
            "data_dir": str(tmp_path.resolve()),
            "pids": stack.pids,
            "engine": {
                "name": DEV.engine,
                "version": stack.engine.version if stack.engine else None,
                "binary": stack.binary,
                "wanted_name": DEV.engine,
                "wanted_version": DEV.version,
                "note": stack.engine.note if stack.engine else None,
            },
            # Its nodes announce the addresses they are reached at: nothing to remap.
            "address_map": {},
        }
        assert LocalStack.from_json(stack.to_json()) == stack
        # A stack.json written before the service users and the load-test user still reads.
        older = {
            k: v for k, v in stack.to_json().items() if k not in ("users", "loadtest", "engine")
        }
        assert LocalStack.from_json(older).users == {}
        assert LocalStack.from_json(older).engine is None
        assert LocalStack.from_json(older).loadtest_password is None
    assert not any(is_our_redis(pid) for pid in stack.pids)


def test_restart_moves_a_standalone_node_and_keeps_its_data(tmp_path: Path) -> None:
    stack = start_stack(DEV, tmp_path, env="dev")
    try:
        with redis.Redis(port=stack.ports[0], username="admin", password=stack.password) as r:
            r.set("kept", "yes")
        moved = restart_stack(stack, DEV, hosts=["127.0.0.7"])
        assert moved.nodes == [f"127.0.0.7:{stack.ports[0]}"]
        assert moved.users == stack.users
        assert not is_our_redis(stack.pids[0])
        with redis.Redis(
            host="127.0.0.7",
            port=moved.ports[0],
            username="gateway",
            password=moved.users["gateway"],
        ) as r:
            assert r.ping()
        with redis.Redis(
            host="127.0.0.7", port=moved.ports[0], username="admin", password=moved.password
        ) as r:
            assert r.get("kept") == b"yes"  # SHUTDOWN SAVE, even without persistence
    finally:
        stop_stack(stack)
        stop_stack(moved)


def test_restart_refuses_a_wrong_host_list(tmp_path: Path) -> None:
    stack = LocalStack.from_json(
        {
            "env": "dev",
            "mode": "standalone",
            "nodes": ["127.0.0.1:1"],
            "pids": [1],
            "data_dir": str(tmp_path),
            "username": "admin",
            "password": "x",
        }
    )
    with pytest.raises(LocalStackError, match="1 nodes need as many hosts"):
        restart_stack(stack, DEV, hosts=["127.0.0.2", "127.0.0.3"])
    with pytest.raises(LocalStackError, match="not an IP address"):
        restart_stack(stack, DEV, hosts=["node-0"])


def test_stop_stack_kills_a_node_that_ignores_shutdown(tmp_path: Path) -> None:
    stack = start_stack(DEV, tmp_path, env="dev")
    # Wrong credentials: SHUTDOWN is refused, and the PID fallback has to stop the node.
    stop_stack(LocalStack.from_json({**stack.to_json(), "password": "wrong"}), remove_data=True)
    assert not any(is_our_redis(pid) for pid in stack.pids)
    assert not tmp_path.exists()


def test_a_second_stack_in_a_running_data_dir_is_refused(tmp_path: Path) -> None:
    with (
        running_stack(DEV, tmp_path, env="dev"),
        pytest.raises(LocalStackError, match="belongs to a running redis-server"),
    ):
        start_stack(DEV, tmp_path, env="dev")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other process listens on, as if it grabbed it after `free_ports`."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_node_that_loses_its_port_is_restarted_on_another(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def first_taken(count: int, host: str = "127.0.0.1") -> list[int]:
        calls.append(count)
        return [taken_port] if len(calls) == 1 else free_ports(count, host)

    monkeypatch.setattr(local_nodes, "free_ports", first_taken)
    with running_stack(DEV, tmp_path, env="dev") as stack:
        assert stack.ports[0] != taken_port
        assert len(calls) == 2


def test_a_node_that_cannot_start_shows_its_log(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_nodes, "free_ports", lambda count, host="127.0.0.1": [taken_port])
    with pytest.raises(LocalStackError) as caught:
        start_stack(DEV, tmp_path, env="dev")
    message = str(caught.value)
    assert f"node 127.0.0.1:{taken_port} did not start; its log ends:" in message
    assert "Address already in use" in message


def test_stack_json_round_trip_rejects_garbage() -> None:
    with pytest.raises(LocalStackError, match="not valid"):
        LocalStack.from_json({"env": "dev", "nodes": []})


def test_ports_are_distinct() -> None:
    ports = free_ports(12)
    assert len(set(ports)) == 12

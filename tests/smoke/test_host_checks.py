"""The testinfra host checks on a real redis-server, with and without `ps` and `ss`: pods of
the official Redis image have neither, and the checks fall back to /proc and redis-cli."""

from __future__ import annotations

import pytest
import redis
import testinfra  # type: ignore[import-untyped]  # no type information

from courseredis.local import LocalStack
from courseredis.topology import split_addr
from smoke.hosts import listening, read_config, redis_processes, serves_port


@pytest.fixture
def host():
    return testinfra.get_host("local://")


@pytest.fixture
def bare_host(host, monkeypatch):
    """This machine as a pod sees itself: no ps, no ss, no netstat."""
    real = host.exists
    missing = {"ps", "ss", "netstat"}
    monkeypatch.setattr(host, "exists", lambda command: command not in missing and real(command))
    return host


def config_file(stack: LocalStack) -> str:
    host, port = split_addr(stack.nodes[0])
    with redis.Redis(
        host=host, port=port, username=stack.username, password=stack.password
    ) as client:
        return str(client.info("server")["config_file"])


@pytest.mark.parametrize("tools", ["with-ps-and-ss", "bare"])
def test_finds_the_process_and_the_port(tools, request, single_node):
    host = request.getfixturevalue("host" if tools != "bare" else "bare_host")
    port = single_node.ports[0]
    commands = [command for _, command in redis_processes(host)]
    assert any(serves_port(command, port) for command in commands), commands
    up, how = listening(host, port)
    assert up, how
    if tools == "bare":
        assert "redis-cli" in how and "NOAUTH" in how  # no password needed, none printed
    free_port = 1  # nothing listens on tcpmux
    assert not listening(host, free_port)[0]


def test_reads_the_config_file_and_its_include(host, single_node, tmp_path):
    conf = read_config(host, config_file(single_node))
    assert conf["maxmemory-policy"] == "noeviction" and conf["port"] == str(single_node.ports[0])
    extra = tmp_path / "runtime.conf"
    extra.write_text("masterauth s3cret\nappendonly yes\n")
    main = tmp_path / "redis.conf"
    main.write_text(f'# a comment\nport 6379\nappendonly no\ninclude "{extra}"\n')
    assert read_config(host, str(main)) == {
        "port": "6379",
        "appendonly": "yes",
        "masterauth": "s3cret",
    }
    with pytest.raises(FileNotFoundError):
        read_config(host, str(tmp_path / "missing.conf"))

"""`repair_nodes_conf` and its CLI on sample nodes.conf files, as Redis 7.0 and 7.2 write them."""

from __future__ import annotations

import fcntl
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from courseredis.cluster_repair import (
    RepairError,
    dns_resolve,
    main,
    map_resolver,
    parse_map,
    repair_nodes_conf,
    repair_when_resolved,
)

# What node-0 of a local 3x2 cluster wrote (Redis 7.0.15), before all six moved.
NODES_CONF = """\
e6a1324b5dc3ab6909ce0253018b83bf059661d9 127.0.0.1:41411@34725,node-4.courseredis.local slave 7107bc9197f542854c31e2713ef437da584f9553 0 1795683717703 2 connected
878c425d8a2adbfb819f90d2a5d1922e990e396f 127.0.0.1:56605@50805,node-3.courseredis.local slave c292ca9d210b4bf868630306c17a75c46649bf4a 0 1795683717703 1 connected
38f215f94f84238c667fd8b56c5a2ec0e552ddf4 127.0.0.1:59639@46377,node-2.courseredis.local master - 0 1795683717704 3 connected 10923-16383
d67224d129ba99f36cf9f5a36068f9c6f57c916c 127.0.0.1:45051@36319,node-5.courseredis.local slave 38f215f94f84238c667fd8b56c5a2ec0e552ddf4 0 1795683718510 3 connected
7107bc9197f542854c31e2713ef437da584f9553 127.0.0.1:57295@48709,node-1.courseredis.local master - 0 1795683717703 2 connected 5462-10922
c292ca9d210b4bf868630306c17a75c46649bf4a 127.0.0.1:41831@40845,node-0.courseredis.local myself,master - 0 1795683717000 1 connected 0-5461
vars currentEpoch 5 lastVoteEpoch 0
"""  # noqa: E501

NEW = {f"node-{i}.courseredis.local": f"10.0.0.{10 + i}" for i in range(6)}


def write(tmp_path: Path, text: str, name: str = "nodes.conf") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def moved(text: str, **addresses: str) -> str:
    """`text` with each `old=new` field prefix replaced, and nothing else."""
    for old, new in addresses.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


EXPECTED = moved(
    NODES_CONF,
    **{
        f"127.0.0.1:{port}@": f"10.0.0.{10 + i}:{port}@"
        for i, port in enumerate([41831, 57295, 59639, 56605, 41411, 45051])
    },
)


def test_every_peer_and_myself_move_and_nothing_else_changes(tmp_path: Path) -> None:
    path = write(tmp_path, NODES_CONF)
    report = repair_nodes_conf(path, my_ip="10.0.0.10", resolve=map_resolver(NEW))
    assert path.read_bytes() == EXPECTED.encode()
    assert report.changed
    assert report.exists
    assert len(report.changes) == 6
    myself = [c for c in report.changes if c.node_id.startswith("c292ca9d")]
    assert myself[0].old == "127.0.0.1:41831@40845,node-0.courseredis.local"
    assert myself[0].new == "10.0.0.10:41831@40845,node-0.courseredis.local"
    assert report.unresolved == ()
    assert report.anonymous == ()
    assert report.lines()[-1] == f"{path}: 6 address(es) rewritten"


def test_a_second_run_leaves_the_file_untouched(tmp_path: Path) -> None:
    path = write(tmp_path, NODES_CONF)
    repair_nodes_conf(path, my_ip="10.0.0.10", resolve=map_resolver(NEW))
    before = path.stat()
    report = repair_nodes_conf(path, my_ip="10.0.0.10", resolve=map_resolver(NEW))
    assert not report.changed
    after = path.stat()
    # Not rewritten at all: same inode (no rename), same modification time.
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert path.read_bytes() == EXPECTED.encode()
    assert [p.name for p in tmp_path.iterdir()] == ["nodes.conf"]  # no temporary left


def test_names_that_do_not_resolve_keep_their_address(tmp_path: Path) -> None:
    path = write(tmp_path, NODES_CONF)
    # node-2 and node-5 are not up yet: their pods have no DNS record.
    partial = {k: v for k, v in NEW.items() if not k.startswith(("node-2", "node-5"))}
    report = repair_nodes_conf(path, my_ip="10.0.0.10", resolve=map_resolver(partial))
    assert report.unresolved == ("node-2.courseredis.local", "node-5.courseredis.local")
    assert len(report.changes) == 4
    text = path.read_text()
    assert "38f215f94f84238c667fd8b56c5a2ec0e552ddf4 127.0.0.1:59639@46377,node-2" in text
    assert "d67224d129ba99f36cf9f5a36068f9c6f57c916c 127.0.0.1:45051@36319,node-5" in text
    # Once they resolve, the next run moves them too and the result is the full repair.
    repair_nodes_conf(path, my_ip="10.0.0.10", resolve=map_resolver(NEW))
    assert path.read_bytes() == EXPECTED.encode()


def test_repair_when_resolved_waits_for_late_names(tmp_path: Path) -> None:
    path = write(tmp_path, NODES_CONF)
    calls: list[str] = []
    pauses: list[float] = []

    def late(name: str) -> str | None:
        # node-2's pod gets its IP (and its DNS record) a little after the others.
        calls.append(name)
        if name.startswith("node-2") and calls.count(name) < 3:
            return None
        return NEW[name]

    report = repair_when_resolved(
        path, my_ip="10.0.0.10", resolve=late, wait_s=60, poll_s=0.5, sleep=pauses.append
    )
    assert pauses == [0.5, 0.5]
    assert path.read_bytes() == EXPECTED.encode()
    assert len(report.changes) == 6
    assert report.unresolved == ()


def test_repair_when_resolved_gives_up_after_the_wait(tmp_path: Path) -> None:
    path = write(tmp_path, NODES_CONF)
    partial = map_resolver({k: v for k, v in NEW.items() if not k.startswith("node-2")})
    pauses: list[float] = []
    report = repair_when_resolved(
        path, my_ip="10.0.0.10", resolve=partial, wait_s=0, sleep=pauses.append
    )
    assert pauses == []
    assert report.unresolved == ("node-2.courseredis.local",)
    assert len(report.changes) == 5


def test_a_peer_already_at_its_address_is_not_a_change(tmp_path: Path) -> None:
    path = write(tmp_path, NODES_CONF)
    same = dict.fromkeys(NEW, "127.0.0.1")
    report = repair_nodes_conf(path, my_ip="127.0.0.1", resolve=same.get)
    assert not report.changed
    assert path.read_text() == NODES_CONF


def test_peers_without_hostname_and_noaddr_entries_are_left_alone(tmp_path: Path) -> None:
    text = (
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 10.1.0.1:6379@16379 myself,master - 0 0 1 "
        "connected 0-16383\r\n"
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb 10.1.0.2:6379@16379 slave "
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 0 0 1 connected\r\n"
        "cccccccccccccccccccccccccccccccccccccccc :0@0,redis-2.redis master,noaddr - 0 0 0 "
        "disconnected\r\n"
        "vars currentEpoch 1 lastVoteEpoch 0\r\n"
    )
    path = write(tmp_path, text)
    report = repair_nodes_conf(path, my_ip="10.2.0.1", resolve=lambda name: "10.2.0.3")
    assert report.anonymous == ("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",)
    assert [c.node_id[0] for c in report.changes] == ["a"]
    # CRLF line ends and every other byte as they were.
    assert path.read_bytes() == text.replace("10.1.0.1:", "10.2.0.1:").encode()


def test_redis_7_2_auxiliary_fields_are_kept(tmp_path: Path) -> None:
    text = (
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 10.1.0.1:6379@16379,redis-0.redis,"
        "tls-port=0,shard-id=1234 myself,master - 0 0 1 connected 0-16383\n"
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb 10.1.0.2:6379@16379,redis-1.redis,"
        "tls-port=0,shard-id=1234 slave aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 0 0 1 connected\n"
        "cccccccccccccccccccccccccccccccccccccccc 10.1.0.3:6379@16379,,tls-port=0,"
        "shard-id=5678 master - 0 0 2 connected\n"
    )
    path = write(tmp_path, text)
    resolve = map_resolver({"redis-1.redis": "10.2.0.2"})
    report = repair_nodes_conf(path, my_ip="10.2.0.1", resolve=resolve)
    assert report.anonymous == ("cccccccccccccccccccccccccccccccccccccccc",)
    expected = text.replace("10.1.0.1:", "10.2.0.1:").replace("10.1.0.2:", "10.2.0.2:")
    assert path.read_text() == expected


def test_ipv6_addresses(tmp_path: Path) -> None:
    text = (
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa fd00::1:6379@16379,redis-0.redis myself,master"
        " - 0 0 1 connected 0-16383\n"
    )
    path = write(tmp_path, text)
    repair_nodes_conf(path, my_ip="fd00::2", resolve=map_resolver({}))
    assert path.read_text() == text.replace("fd00::1:", "fd00::2:")


def test_mode_is_kept(tmp_path: Path) -> None:
    path = write(tmp_path, NODES_CONF)
    path.chmod(0o640)
    repair_nodes_conf(path, my_ip="10.0.0.10", resolve=map_resolver(NEW))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_missing_file_is_a_first_start(tmp_path: Path) -> None:
    report = repair_nodes_conf(tmp_path / "nodes.conf", my_ip="10.0.0.1")
    assert not report.exists
    assert not report.changed
    assert not (tmp_path / "nodes.conf").exists()


def test_a_file_locked_by_a_running_node_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, NODES_CONF)
    with path.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # what redis-server holds
        with pytest.raises(RepairError, match="locked"):
            repair_nodes_conf(path, my_ip="10.0.0.10", resolve=map_resolver(NEW))
    assert path.read_text() == NODES_CONF


def test_garbage_from_a_resolver_or_for_my_ip_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, NODES_CONF)
    with pytest.raises(RepairError, match="not an IP address"):
        repair_nodes_conf(path, my_ip="node-0", resolve=map_resolver(NEW))
    with pytest.raises(RepairError, match=r"node-4\.courseredis\.local resolved to"):
        repair_nodes_conf(path, my_ip="10.0.0.10", resolve=lambda name: "nowhere")
    assert path.read_text() == NODES_CONF


def test_dns_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    assert dns_resolve("localhost") == "127.0.0.1"

    def no_such_name(name: str) -> str:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "gethostbyname", no_such_name)
    assert dns_resolve("redis-3.redis-headless.prod.svc.cluster.local") is None


def test_map_resolver_is_case_insensitive_and_knows_only_its_names() -> None:
    resolve = map_resolver({"Node-0.Example.": "10.0.0.1"})
    assert resolve("node-0.example") == "10.0.0.1"
    assert resolve("node-1.example") is None


def test_parse_map() -> None:
    assert parse_map("a=10.0.0.1, b=fd00::1,") == {"a": "10.0.0.1", "b": "fd00::1"}
    with pytest.raises(ValueError, match="not host=ip"):
        parse_map("a")
    with pytest.raises(ValueError, match="not an IP"):
        parse_map("a=b")


# --- CLI -----------------------------------------------------------------------------------


def test_cli_with_an_explicit_map(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, NODES_CONF)
    mapping = ",".join(f"{name}={ip}" for name, ip in NEW.items())
    assert main(["--nodes-conf", str(path), "--my-ip", "10.0.0.10", "--map", mapping]) == 0
    assert path.read_bytes() == EXPECTED.encode()
    out = capsys.readouterr().out
    assert "c292ca9d node-0.courseredis.local: 127.0.0.1:41831@40845" in out
    assert out.rstrip().endswith("6 address(es) rewritten")


def test_cli_errors_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, NODES_CONF)
    assert main(["--nodes-conf", str(path), "--my-ip", "not-an-ip"]) == 1
    assert main(["--nodes-conf", str(path), "--my-ip", "10.0.0.1", "--map", "x"]) == 1
    assert capsys.readouterr().err.count("error: ") == 2
    assert path.read_text() == NODES_CONF


def test_module_entry_point_on_a_first_start(tmp_path: Path) -> None:
    """Exactly what the chart's init container runs, before the node ever wrote nodes.conf."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "courseredis.cluster_repair",
            "--nodes-conf",
            str(tmp_path / "nodes.conf"),
            "--my-ip",
            "10.1.2.3",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "first start" in result.stdout
    assert not (tmp_path / "nodes.conf").exists()


def test_cli_with_dns_starts_with_what_resolves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def only_node_1(name: str) -> str:
        if name == "node-1.courseredis.local":
            return "10.0.0.11"
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "gethostbyname", only_node_1)
    path = write(tmp_path, NODES_CONF)
    assert main(["--nodes-conf", str(path), "--my-ip", "10.0.0.10", "--wait", "0"]) == 0
    text = path.read_text()
    assert "10.0.0.10:41831@40845,node-0" in text
    assert "10.0.0.11:57295@48709,node-1" in text
    assert text.count("127.0.0.1:") == 4
    out = capsys.readouterr().out
    assert "node-5.courseredis.local does not resolve: its entry is left as it was" in out

"""The engine per stack: what the stack files pin, how the local stack picks its server, and
what it says when the machine runs another version than the stack names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from courseredis import engines
from courseredis.engines import (
    ENGINE_ENV,
    PINNED,
    EngineError,
    LocalEngine,
    local_engine,
    parse_version,
    server_version,
    wanted_engine,
)
from courseredis.environments import REPO_ROOT, RedisTopology, StackConfigError, load_environment
from courseredis.local import LocalStack
from courseredis.local.processes import RedisServerMissingError, redis_server_binary
from courseredis.stack_file import stack_file_path
from infra.settings import StackSettings
from tests.support import run_engine


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_stack_pins_a_maintained_release_of_its_engine(env: str) -> None:
    topology = load_environment(env).redis
    assert topology.engine == "redis"
    assert topology.version == PINNED["redis"]
    assert topology.image == ("redis", f"{PINNED['redis']}-trixie")


def test_valkey_is_its_own_official_image() -> None:
    topology = load_environment("prod").redis.model_copy(
        update={"engine": "valkey", "version": PINNED["valkey"]}
    )
    assert topology.image == ("valkey/valkey", f"{PINNED['valkey']}-trixie")


def _raw(**changes: object) -> dict[str, object]:
    raw = load_environment("prod").redis.model_dump(by_alias=True)
    raw.update(changes)
    return raw


def test_an_engine_without_a_version_takes_its_pinned_release() -> None:
    assert RedisTopology.from_config(_raw(engine="valkey", version="")).version == PINNED["valkey"]
    raw = _raw()
    del raw["version"]
    assert RedisTopology.from_config(raw).version == PINNED["redis"]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"engine": "keydb"}, "redis.engine: input should be 'redis' or 'valkey'"),
        ({"version": "8"}, "redis.version: version '8' must be a full release like 8.10.2"),
        ({"version": "latest"}, "must be a full release"),
        ({"version": 8.1}, "redis.version: input should be a valid string"),
    ],
)
def test_an_unpinned_or_unknown_engine_is_refused_naming_the_key(
    changes: dict[str, object], reason: str
) -> None:
    with pytest.raises(StackConfigError, match=reason.replace(".", r"\.").replace("'", ".")):
        RedisTopology.from_config(_raw(**changes), source="Pulumi.prod.yaml")


def test_parse_version() -> None:
    assert parse_version("8.10.2") == (8, 10, 2)
    for bad in ("8.10", "v8.10.2", "8.10.2-trixie", ""):
        with pytest.raises(ValueError, match="full release"):
            parse_version(bad)


def test_the_wanted_engine_is_the_stacks_unless_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    assert wanted_engine("redis", "8.10.2") == ("redis", "8.10.2")
    # The other engine is wanted at its own pinned release, not at the stack's version.
    assert wanted_engine("redis", "8.10.2", "valkey") == ("valkey", PINNED["valkey"])
    assert wanted_engine("redis", "8.10.2", "redis") == ("redis", "8.10.2")
    monkeypatch.setenv(ENGINE_ENV, "valkey")
    assert wanted_engine("redis", "8.10.2") == ("valkey", PINNED["valkey"])
    assert wanted_engine("redis", "8.10.2", "redis") == ("redis", "8.10.2")  # explicit wins
    monkeypatch.setenv(ENGINE_ENV, "keydb")
    with pytest.raises(EngineError, match="COURSEREDIS_ENGINE='keydb': the engines are redis"):
        wanted_engine("redis", "8.10.2")


def test_a_substitute_version_is_said_in_one_line() -> None:
    same = LocalEngine("valkey", "9.1.4", "/usr/bin/valkey-server", "valkey", "9.1.4")
    assert same.note is None
    older = LocalEngine("valkey", "8.0.1", "/usr/bin/valkey-server", "valkey", "9.1.4")
    assert older.note == (
        "engine: valkey 9.1.4 is wanted; this machine runs valkey 8.0.1 "
        "(/usr/bin/valkey-server), the nearest its packages offer"
    )


@pytest.mark.parametrize("engine", ["redis", "valkey"])
def test_the_machine_offers_both_engines(engine: engines.Engine) -> None:
    found = local_engine(engine, PINNED[engine])
    assert Path(found.binary).name == f"{engine}-server"
    assert parse_version(found.version) >= (7, 0, 0)
    assert redis_server_binary(f"{engine}-server") == found.binary


def test_a_missing_engine_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("courseredis.engines.shutil.which", lambda name: None)
    engines._binary_version.cache_clear()
    try:
        with pytest.raises(RedisServerMissingError, match="bookworm-backports"):
            redis_server_binary("valkey-server")
    finally:
        engines._binary_version.cache_clear()


def test_info_tells_the_engines_apart() -> None:
    # Valkey answers redis_version 7.2.4 for old clients; its own version is elsewhere.
    valkey = {"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "8.0.1"}
    assert server_version(valkey) == ("valkey", (8, 0, 1))
    assert server_version({"redis_version": "7.0.15"}) == ("redis", (7, 0, 15))


def test_the_image_digest_is_a_digest() -> None:
    config = load_environment("prod").config
    digest = "sha256:" + "a" * 64
    deployment = {**config["redisDeployment"], "imageDigest": digest}
    settings = StackSettings.from_config("prod", {**config, "redisDeployment": deployment})
    assert settings.redis_deployment.image_digest == digest
    deployment["imageDigest"] = "sha256:abc"
    with pytest.raises(StackConfigError, match=r"redisDeployment\.imageDigest"):
        StackSettings.from_config("prod", {**config, "redisDeployment": deployment})


def test_up_with_another_engine_says_which_runs_and_records_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    cli = [sys.executable, "-m", "courseredis.local"]
    up = subprocess.run(
        [*cli, "up", "--env", "dev", "--redis-only", "--engine", "valkey", "--root", str(root)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    try:
        assert up.returncode == 0, up.stderr
        running = local_engine("valkey", PINNED["valkey"])
        assert f"engine: valkey {running.version} (" in up.stdout
        recorded = json.loads(stack_file_path(root).read_text())["redis"]["engine"]
        assert (recorded["name"], recorded["wanted_name"]) == ("valkey", "valkey")
        assert recorded["version"] == running.version
        assert recorded["wanted_version"] == PINNED["valkey"]
        if running.version != PINNED["valkey"]:
            assert recorded["note"] in up.stdout.splitlines()
        assert "connect: valkey-cli -p" in up.stdout
    finally:
        subprocess.run([*cli, "down", "--root", str(root)], capture_output=True, timeout=60)


def test_the_fixtures_run_the_engine_of_the_run(stack: LocalStack) -> None:
    """The second test run (`COURSEREDIS_ENGINE=valkey`) does run Valkey, and the first Redis."""
    assert stack.engine is not None and stack.engine.name == run_engine()
    for node in stack.nodes:
        host, port = node.rsplit(":", 1)
        with redis.Redis(
            host=host, port=int(port), username=stack.username, password=stack.password
        ) as client:
            info = {key: value for key, value in client.info("server").items()}
        assert server_version(info)[0] == run_engine()

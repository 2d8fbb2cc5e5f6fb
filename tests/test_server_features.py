"""Detection of native primitives: what each real server offers, what a user may send.

The machine's engines offer none (the lock tests' `host-*` targets); these pin what the
newer servers in podman offer, and why the sessions keep their scripts where HSETEX exists.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from courseredis import keys, server_features
from courseredis.patterns.sessions import Sessions
from courseredis.server_features import LUA_ONLY, Primitives
from tests import newer_servers
from tests.newer_servers import NewerServer
from tests.support import assert_follows_schema


@pytest.fixture(scope="session")
def newer_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NewerServer]:
    yield from newer_servers.serve("redis-8.0", tmp_path_factory)


@pytest.fixture(scope="session")
def newer_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NewerServer]:
    yield from newer_servers.serve("valkey-8.1", tmp_path_factory)


def test_valkey_8_1_offers_set_ifeq_and_neither_compare_and_delete(newer_valkey):
    with newer_valkey.client() as client:
        assert server_features.detect(client) == Primitives(renew=True)


def test_redis_8_0_offers_hash_field_ttl_only(newer_redis):
    with newer_redis.client() as client:
        assert server_features.detect(client) == Primitives(hash_field_ttl=True)


def test_a_user_who_may_not_send_the_command_keeps_the_script(newer_valkey):
    password = secrets.token_hex(8)
    with newer_valkey.client() as admin:
        # May run the scripts and COMMAND on lock keys, not SET: the renewal probe is refused.
        admin.execute_command(
            "ACL", "SETUSER", "no-set", "on", f">{password}", "-@all", "+command",
            "+evalsha", "+eval", "+get", "+pexpire", "~lock:*",
        )  # fmt: skip
        try:
            with newer_valkey.client() as user:
                user.execute_command("AUTH", "no-set", password)
                assert server_features.detect(user) == LUA_ONLY
        finally:
            admin.execute_command("ACL", "DELUSER", "no-set")


def test_the_switch_forces_the_scripts(newer_valkey, monkeypatch):
    monkeypatch.setenv(server_features.NATIVE_ENV, "off")
    with newer_valkey.client() as client:
        assert server_features.detect(client) == LUA_ONLY


def test_detection_is_asked_once_per_client(newer_valkey):
    with newer_valkey.client() as client:
        first = server_features.primitives(client)
        client.config_resetstat()
        assert server_features.primitives(client) is first
        assert "cmdstat_command|info" not in client.info("commandstats")


def test_hsetex_gives_fields_a_ttl_and_the_key_none_so_sessions_keep_their_scripts(newer_redis):
    with newer_redis.client() as client:
        key = keys.session("00000000-0000-4000-8000-000000000001")
        client.execute_command(
            "HSETEX", key, "PX", 60_000, "FIELDS", 2, "user_id", "1", "last_activity", "1"
        )
        assert client.pttl(key) == -1  # what the key schema and the audit read: no TTL
        assert all(0 < ttl <= 60_000 for ttl in client.execute_command(
            "HPTTL", key, "FIELDS", 2, "user_id", "last_activity"))  # fmt: skip
        client.delete(key)
        session = Sessions(client).create(42, ["student"])
        assert_follows_schema(client, keys.session(session.session_id))

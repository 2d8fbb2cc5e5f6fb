"""The Lua loader: a script's prelude is put in at load time; the SHA is Redis's own."""

from __future__ import annotations

import hashlib
from importlib.resources import files

from courseredis import keys
from courseredis.patterns.evalsha import evalsha
from courseredis.patterns.lua import load
from tests.support import flush_scripts

_SCRIPTS = files("courseredis.patterns.lua")
INCLUDING = ("blacklist_revoke", "refresh_rotate", "session_create", "session_touch")


def _file(name: str) -> str:
    return _SCRIPTS.joinpath(f"{name}.lua").read_text()


def test_an_include_line_is_replaced_by_the_prelude_after_the_contract():
    prelude = _file("prelude_now").rstrip("\n")
    for name in INCLUDING:
        script = load(name)
        assert "--#include" not in script.source, name
        assert script.source.count(prelude) == 1, name
        # The contract still opens the script: the prelude comes after it.
        assert script.source.startswith(_file(name).split("\n", 1)[0]), name
        assert script.source.index("]]") < script.source.index(prelude), name


def test_a_script_without_an_include_is_loaded_as_written():
    script = load("compare_and_set")
    assert script.source == _file("compare_and_set")
    assert script.sha == hashlib.sha1(script.source.encode()).hexdigest()


def test_the_sha_is_the_one_redis_computes_for_the_loaded_text(client):
    script = load("session_create")
    assert script.sha == hashlib.sha1(script.source.encode()).hexdigest()
    key = keys.session("5b9ad1d6-6c2c-4a53-9b53-2c1b3f1e2a10")
    flush_scripts(client)
    evalsha(client.execute_command, script, (key,), ("7", "student", 60_000))  # cached by EVAL
    # Found by our SHA: Redis hashed the same text.
    now_ms = client.execute_command("EVALSHA", script.sha, 1, key, "7", "student", 60_000)
    assert int(client.hget(key, "created_at")) == now_ms
    client.delete(key)

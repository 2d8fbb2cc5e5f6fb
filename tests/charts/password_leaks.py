"""The attack: every non-admin account tries every way it has to read a password.

Run against a real redis-server loaded with the ACL file and config the deployment uses.
`assert_no_account_reads_a_password` first makes the server hold passwords where commands
could show them (the slow log records every command, AUTH and HELLO of every account, a
CONFIG SET of `masterauth`, an ACL SETUSER), then, as each account:

- runs the commands that show passwords when allowed (CONFIG GET, ACL LIST/GETUSER/LOG,
  MONITOR, DEBUG, CLIENT LIST, SLOWLOG GET, INFO, Lua calling CONFIG/ACL, ...);
- asks Redis (`ACL DRYRUN`, as admin) which of all its commands the account may run, runs
  each of those it may (with placeholder arguments), and reads a replication stream if it
  may PSYNC.

Every answer is searched for every password. A refusal is fine; a reply holding a password
is the finding. Commands in the `admin` or `dangerous` categories the account may run must
also be in `REVIEWED`, so a grant added later is looked at on purpose.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoPermissionError, RedisError, ResponseError
from redis.retry import Retry

ADMIN = "admin"

# What shows or could show a password, tried by every account whatever its ACL says.
PROBES: tuple[tuple[str, ...], ...] = (
    ("CONFIG", "GET", "*"),
    ("CONFIG", "GET", "masterauth"),
    ("CONFIG", "GET", "requirepass"),
    ("ACL", "LIST"),
    ("ACL", "GETUSER", ADMIN),
    ("ACL", "GETUSER", "replication"),
    ("ACL", "LOG"),
    ("DEBUG", "OBJECT", "x"),
    ("DEBUG", "JMAP"),
    ("CLIENT", "LIST"),
    ("CLIENT", "INFO"),
    ("SLOWLOG", "GET", "-1"),
    ("INFO", "everything"),
    ("LATENCY", "DOCTOR"),
    ("MEMORY", "DOCTOR"),
    ("CLUSTER", "NODES"),
    ("MODULE", "LIST"),
    ("FUNCTION", "DUMP"),
    ("COMMAND", "DOCS", "config"),
    ("EVAL", "return redis.call('CONFIG', 'GET', '*')", "0"),
    ("EVAL", "return redis.call('ACL', 'LIST')", "0"),
    ("EVAL", "return redis.call('CONFIG', 'GET', 'masterauth')", "0"),
)

# Admin or dangerous commands a non-admin account is granted on purpose, each read here for
# passwords: the exporter's figures (Redis redacts AUTH, HELLO AUTH, sensitive CONFIG SETs
# and ACL SETUSER in the slow log) and what a replica sends its master.
REVIEWED = frozenset(
    {
        "info",
        "slowlog|get",
        "slowlog|len",
        "latency|latest",
        "latency|histogram",
        "psync",
        "replconf",
    }
)
# Commands that turn the connection into a stream: never run through redis-py.
STREAMING = frozenset({"monitor", "psync", "sync", "subscribe", "psubscribe", "ssubscribe"})


def assert_no_account_reads_a_password(
    port: int, passwords: Mapping[str, str], host: str = "127.0.0.1"
) -> None:
    """`passwords`: every account's name -> password, the admin's included."""
    secrets = list(passwords.values())
    admin = _client(host, port, ADMIN, passwords[ADMIN])
    try:
        _plant_passwords(admin, host, port, passwords)
        everything = [c.decode() for c in admin.execute_command("COMMAND", "LIST")]
        dangerous = {
            c.decode()
            for category in ("admin", "dangerous")
            for c in admin.execute_command("COMMAND", "LIST", "FILTERBY", "ACLCAT", category)
        }
        findings: list[str] = []
        for user, password in passwords.items():
            if user == ADMIN:
                continue
            findings += _probe(host, port, user, password, secrets)
            allowed = _allowed(admin, user, everything)
            unreviewed = sorted(set(allowed) & dangerous - REVIEWED)
            findings += [f"{user} may run {name}: not reviewed" for name in unreviewed]
            if unreviewed:
                continue  # running an unknown admin command could do harm; the finding stands
            findings += _run_allowed(host, port, user, password, allowed, secrets)
        assert findings == [], "\n".join(findings)
    finally:
        admin.close()


def _plant_passwords(
    admin: redis.Redis, host: str, port: int, passwords: Mapping[str, str]
) -> None:
    """Leave passwords wherever a command could show them afterwards."""
    admin.execute_command("CONFIG", "SET", "slowlog-log-slower-than", 0)  # log everything
    admin.execute_command("CONFIG", "SET", "slowlog-max-len", 1024)
    for user, password in passwords.items():
        client = redis.Redis(host=host, port=port, username=user, password=password)
        try:
            client.execute_command("HELLO", "2", "AUTH", user, password)
        except ResponseError:
            pass
        finally:
            client.close()
    reply = admin.execute_command("CONFIG", "GET", "masterauth")  # [] when it is not set
    masterauth = reply[1] if len(reply) == 2 else b""
    if masterauth:
        admin.execute_command(
            "CONFIG", "SET", "masterauth", masterauth
        )  # the same value: a rotation's command
    admin.execute_command("ACL", "SETUSER", "rotated", "off", f">{passwords[ADMIN]}")
    admin.execute_command("ACL", "DELUSER", "rotated")


def _leaks(label: str, reply: Any, secrets: list[str]) -> list[str]:
    text = _flatten(reply)
    return [f"{label} shows a password" for secret in secrets if secret in text]


def _flatten(reply: Any) -> str:
    if isinstance(reply, bytes):
        return reply.decode(errors="replace")
    if isinstance(reply, dict):
        return " ".join(_flatten(k) + " " + _flatten(v) for k, v in reply.items())
    if isinstance(reply, list | tuple | set):
        return " ".join(_flatten(r) for r in reply)
    return str(reply)


def _client(host: str, port: int, user: str, password: str) -> redis.Redis:
    """Replies as Redis sends them: redis-py's parsers choke on some of these commands."""
    client = redis.Redis(
        host=host, port=port, username=user, password=password, retry=Retry(NoBackoff(), 0)
    )
    client.response_callbacks.clear()
    return client


def _probe(host: str, port: int, user: str, password: str, secrets: list[str]) -> list[str]:
    findings: list[str] = []
    client = _client(host, port, user, password)
    try:
        for command in PROBES:
            label = f"{user}: {' '.join(command[:3])}"
            try:
                reply = client.execute_command(*command)
            except ResponseError as error:
                findings += _leaks(label + " (its error)", str(error), secrets)
                continue
            findings += _leaks(label, reply, secrets)
        try:
            client.execute_command("MONITOR")
            findings.append(f"{user}: MONITOR is allowed (it shows every command)")
        except NoPermissionError:
            pass
    finally:
        client.close()
    return findings


def _placeholders(name: str, count: int) -> list[str]:
    return [*name.split("|"), *["x"] * count]


def _allowed(admin: redis.Redis, user: str, commands: list[str]) -> dict[str, list[str]]:
    """Each command `user` may run (per ACL DRYRUN), with arguments Redis accepts for it."""
    allowed: dict[str, list[str]] = {}
    for name in commands:
        for count in range(5):
            args = _placeholders(name, count)
            try:
                verdict = admin.execute_command("ACL", "DRYRUN", user, *args)
            except ResponseError as error:
                if "wrong number of arguments" in str(error):
                    continue  # try with one argument more
                break  # an unknown subcommand, say: not a command the user can run
            if verdict == b"OK":  # else the reply says why the user may not
                allowed[name] = args
            break
    return allowed


def _run_allowed(
    host: str,
    port: int,
    user: str,
    password: str,
    allowed: Mapping[str, list[str]],
    secrets: list[str],
) -> list[str]:
    findings: list[str] = []
    client = _client(host, port, user, password)
    try:
        for name, args in sorted(allowed.items()):
            if name in STREAMING:
                if name in ("psync", "sync"):
                    findings += _leaks(
                        f"{user}: {name}", _stream(host, port, user, password), secrets
                    )
                continue
            try:
                reply = client.execute_command(*args)
            except RedisError as error:
                findings += _leaks(f"{user}: {name} (its error)", str(error), secrets)
                client.close()
                client = _client(host, port, user, password)
                continue
            findings += _leaks(f"{user}: {name}", reply, secrets)
    finally:
        client.close()
    return findings


def _stream(host: str, port: int, user: str, password: str, seconds: float = 1.5) -> bytes:
    """What a replica receives: a full resync (the RDB) and the stream after it."""
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(_resp("AUTH", user, password))
        assert sock.recv(5) == b"+OK\r\n"  # PSYNC is refused while a reply is pending
        sock.settimeout(0.2)
        sock.sendall(_resp("PSYNC", "?", "-1"))
        received = b""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            received += chunk
    assert b"FULLRESYNC" in received, received[:200]
    return received


def _resp(*args: str) -> bytes:
    out = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return out

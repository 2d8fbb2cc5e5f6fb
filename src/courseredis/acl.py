"""Redis ACL users generated from the key schema: one per service, plus the admin.

A service's root permissions hold only what every client needs to connect, find cluster
slots and load Lua, on no key. Each pattern it uses adds one Redis 7 selector binding that
pattern's commands to that pattern's keys: read-write for the patterns it writes, read-only
(`%R~`) for those it only reads. So the gateway can check a revocation but not delete one,
and no service can run another pattern's commands on its keys. Everything dangerous
(`FLUSHALL`, `KEYS`, `CONFIG`, `DEBUG`, ...) is denied because it is never granted: the
rules start from `-@all`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

from courseredis import keys
from courseredis.redis_config import AclUser, admin_user
from courseredis.services import registry

# What any client of ours sends whatever it does: the handshake, cluster topology
# discovery (redis-py asks CLUSTER SLOTS/SHARDS and COMMAND for key positions), Redis time
# for the Lua scripts, and script loading.
BASE_COMMANDS = (
    "+hello",
    "+auth",
    "+ping",
    "+client|setname",
    # Not `+client|setinfo`: Redis 7.0 has no such subcommand, and an ACL file naming an
    # unknown command is refused whole. redis-py ignores the error CLIENT SETINFO gets.
    "+client|id",
    "+readonly",
    "+cluster|slots",
    "+cluster|shards",
    "+cluster|nodes",
    "+cluster|info",
    "+cluster|myid",
    "+command",
    "+time",
    "+evalsha",
    "+eval",
    "+script|load",
    "+script|exists",
)


def key_prefixes(service: str) -> tuple[str, ...]:
    """The key globs a service may touch, from the patterns it writes or reads."""
    uses = registry.service(service).uses
    used = [p for p in keys.PATTERNS if uses(p)]
    return tuple(dict.fromkeys(_glob(service, p) for p in used))


def _glob(service: str, pattern: keys.KeyPattern) -> str:
    # Each consumer's claims are its own: a service may not mark another's events.
    return f"idem:{service}:*" if pattern is keys.IDEMPOTENCY else pattern.prefix + "*"


def commands(service: str) -> tuple[str, ...]:
    """The root rules: no keys, only what every client sends, and WAIT for a service that
    confirms its writes with replicas (auth: a failover must not bring a revoked token
    back)."""
    wait = ("+wait",) if registry.service(service).waits_for_replicas else ()
    return ("-@all", *BASE_COMMANDS, *wait)


def _write_selector(glob: str, pattern: keys.KeyPattern) -> tuple[str, ...]:
    cmds = pattern.write_commands + pattern.read_commands
    # Scripts name their keys, so EVALSHA is checked against the keys too.
    return (f"~{glob}", "+evalsha", "+eval", *(f"+{c}" for c in cmds))


def selectors(service: str) -> tuple[tuple[str, ...], ...]:
    """One selector per pattern the service uses: its commands on its keys only."""
    record = registry.service(service)
    out: list[tuple[str, ...]] = []
    for pattern in keys.PATTERNS:
        if pattern in record.writes:
            out.append(_write_selector(_glob(service, pattern), pattern))
        elif pattern in record.reads:
            out.append((f"%R~{_glob(service, pattern)}", *(f"+{c}" for c in pattern.read_commands)))
    return tuple(out)


def service_user(service: str, password: str) -> AclUser:
    registry.service(service)  # UnknownService (a ValueError) names the known ones
    return AclUser(
        name=service,
        password=password,
        key_patterns=(),
        commands=commands(service),
        selectors=selectors(service),
    )


def all_users(
    admin_password: str, service_passwords: Mapping[str, str], loadtest_password: str
) -> dict[str, AclUser]:
    """The admin (everything, for operations and the smoke suite), one user per service and
    the redis_direct load suite's (`loadtest_user`)."""
    missing = set(registry.NAMES) - set(service_passwords)
    if missing:
        raise ValueError(f"no password for services {sorted(missing)}")
    if LOADTEST_USER in registry.NAMES:
        raise ValueError(f"a service may not be called {LOADTEST_USER!r}")
    users = {"admin": admin_user(admin_password)}
    for service in registry.NAMES:
        users[service] = service_user(service, service_passwords[service])
    users[LOADTEST_USER] = loadtest_user(loadtest_password)
    return users


# --- the redis_direct load suite's own user -------------------------------------------------
#
# `loadtests/redis_direct.py` drives the patterns' library classes against Redis. It logs in
# as this user, never as the admin or a service: its password sits in a load run's
# Secret or stack.json, so it may touch only keys the suite makes, on the commands their
# patterns send. The suite builds its identifiers from the constants below, and the user's
# key globs come from the same constants, so neither can drift from the other.

LOADTEST_USER = "loadtest"
# Integer ids (users, courses) from here up, below 5e9: ten digits starting with 4, far
# above any id the database hands out.
LOADTEST_ID_BASE = 4_000_000_000
LOADTEST_ID_LIMIT = 5_000_000_000
# UUIDs (token ids, refresh families, sessions) the suite makes start with these 8 hex digits.
LOADTEST_UUID_PREFIX = "10ad7e57"
# Names (rate-limit routes, idempotency consumers) the suite uses start with this; no route
# or consumer of the services does.
LOADTEST_NAME = "loadtest"
# The patterns the suite runs: one user class each (the rate limiter, the lock, the cache,
# the blacklist, refresh tokens, sessions, idempotency).
LOADTEST_PATTERNS = (
    keys.RATE_LIMIT_USER,
    keys.ENROLLMENT_LOCK,
    keys.COURSE_CACHE,
    keys.JWT_REVOKED,
    keys.REFRESH_TOKEN,
    keys.SESSION,
    keys.IDEMPOTENCY,
)
_LOADTEST_FIELD_GLOBS = {
    "int": "4?????????",  # [LOADTEST_ID_BASE, LOADTEST_ID_LIMIT)
    "uuid": f"{LOADTEST_UUID_PREFIX}-*",
    "name": f"{LOADTEST_NAME}*",
    "token": "*",  # an event id: any, under a consumer name that is the suite's
}


def loadtest_uuid() -> str:
    """A random UUID (version 4) inside the suite's keys."""
    return str(uuid.UUID(LOADTEST_UUID_PREFIX + uuid.uuid4().hex[8:]))


def loadtest_glob(pattern: keys.KeyPattern) -> str:
    """The glob of the suite's keys of `pattern`: every field of the template held to the
    suite's identifiers."""
    return re.sub(
        r"<[a-z_]+:([a-z]+)>", lambda field: _LOADTEST_FIELD_GLOBS[field.group(1)], pattern.template
    )


def loadtest_user(password: str) -> AclUser:
    """The redis_direct suite's user: what every client sends, and each of its patterns'
    commands on the suite's own keys of that pattern only. No WAIT, no admin command."""
    return AclUser(
        name=LOADTEST_USER,
        password=password,
        key_patterns=(),
        commands=("-@all", *BASE_COMMANDS),
        selectors=tuple(_write_selector(loadtest_glob(p), p) for p in LOADTEST_PATTERNS),
    )

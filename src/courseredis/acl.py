"""Redis ACL users generated from the key schema: one per service, plus the admin.

A service may touch only the key prefixes of the patterns it writes or reads, and run only
the commands those patterns use (`KeyPattern.write_commands` / `read_commands`), plus what
every client needs to connect, find cluster slots and run the patterns' Lua. Everything
dangerous (`FLUSHALL`, `KEYS`, `CONFIG`, `DEBUG`, ...) is denied because it is never
granted: the rules start from `-@all`.
"""

from __future__ import annotations

from collections.abc import Mapping

from courseredis import keys
from courseredis.redis_config import AclUser, admin_user

# What any client of ours sends whatever it does: the handshake, cluster topology
# discovery (redis-py asks CLUSTER SLOTS/SHARDS and COMMAND for key positions), Redis time
# for the Lua scripts, and script loading.
BASE_COMMANDS = (
    "+hello",
    "+auth",
    "+ping",
    "+client|setname",
    "+client|setinfo",
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
    globs: list[str] = []
    for pattern in keys.PATTERNS:
        if service not in pattern.writers + pattern.readers:
            continue
        if pattern is keys.IDEMPOTENCY:
            # Each consumer's claims are its own: a service may not mark another's events.
            globs.append(f"idem:{service}:*")
        else:
            globs.append(pattern.prefix + "*")
    return tuple(dict.fromkeys(globs))


def commands(service: str) -> tuple[str, ...]:
    granted: list[str] = ["-@all", *BASE_COMMANDS]
    for pattern in keys.PATTERNS:
        if service in pattern.writers:
            granted += [f"+{c}" for c in pattern.write_commands + pattern.read_commands]
        elif service in pattern.readers:
            granted += [f"+{c}" for c in pattern.read_commands]
    return tuple(dict.fromkeys(granted))


def service_user(service: str, password: str) -> AclUser:
    if service not in keys.SERVICES:
        raise ValueError(f"unknown service {service!r}; known: {keys.SERVICES}")
    return AclUser(
        name=service,
        password=password,
        key_patterns=key_prefixes(service),
        commands=commands(service),
    )


def all_users(admin_password: str, service_passwords: Mapping[str, str]) -> dict[str, AclUser]:
    """The admin (everything, for operations and the smoke suite) and one user per service."""
    missing = set(keys.SERVICES) - set(service_passwords)
    if missing:
        raise ValueError(f"no password for services {sorted(missing)}")
    users = {"admin": admin_user(admin_password)}
    for service in keys.SERVICES:
        users[service] = service_user(service, service_passwords[service])
    return users

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


# Auth confirms revocations with a replica (`WAIT`, REDIS_REPLICA_ACKS) before a logout
# answers: a failover must not bring a revoked token back.
EXTRA_COMMANDS = {"auth": ("+wait",)}


def commands(service: str) -> tuple[str, ...]:
    """The root rules: no keys, only what every client sends (and auth's WAIT)."""
    return ("-@all", *BASE_COMMANDS, *EXTRA_COMMANDS.get(service, ()))


def selectors(service: str) -> tuple[tuple[str, ...], ...]:
    """One selector per pattern the service uses: its commands on its keys only."""
    record = registry.service(service)
    out: list[tuple[str, ...]] = []
    for pattern in keys.PATTERNS:
        if pattern in record.writes:
            cmds = pattern.write_commands + pattern.read_commands
            # Scripts name their keys, so EVALSHA is checked against the keys too.
            out.append(
                (f"~{_glob(service, pattern)}", "+evalsha", "+eval", *(f"+{c}" for c in cmds))
            )
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


def all_users(admin_password: str, service_passwords: Mapping[str, str]) -> dict[str, AclUser]:
    """The admin (everything, for operations and the smoke suite) and one user per service."""
    missing = set(registry.NAMES) - set(service_passwords)
    if missing:
        raise ValueError(f"no password for services {sorted(missing)}")
    users = {"admin": admin_user(admin_password)}
    for service in registry.NAMES:
        users[service] = service_user(service, service_passwords[service])
    return users

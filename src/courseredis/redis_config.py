"""`redis.conf` and ACL files for one node, rendered from an environment's `RedisTopology`.

The local stack writes these files next to each `redis-server` it starts; the chart renders
the same settings for Kubernetes. Keeping them in one function means the memory policy,
persistence and cluster settings a laptop runs are the ones production runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from courseredis.environments import RedisTopology

# Cache entries and security data (JWT revocations, refresh tokens, sessions) share one
# instance. Every eviction policy, even the `volatile-*` ones (all those keys carry a TTL),
# may evict a revocation, and an evicted revocation silently re-validates a revoked token:
# a security hole. With `noeviction` the cache's own TTLs bound its memory, and a full Redis
# refuses writes with an explicit OOM error the services can alert on, instead of quietly
# dropping security state.
MAXMEMORY_POLICY = "noeviction"

# Data is replicated; fsync once a second bounds the loss on a power cut to about a second
# of writes without paying a disk flush per command.
APPENDFSYNC = "everysec"

DEFAULT_ADMIN_USER = "admin"

# How long a Lua script (or function) may run before Redis answers BUSY to everyone else and
# accepts SCRIPT KILL (`busy-reply-threshold`, `lua-time-limit` before Redis 7). Our scripts
# touch a handful of keys and take microseconds; one that runs for a second is a runaway
# (or a service user's hostile EVAL: services may EVAL, only the admin may SCRIPT KILL).
# 1 s, not the 5 s default: clients fail fast with BUSY instead of hanging for 5 s, the
# operator can kill it sooner, and it stays well under cluster-node-timeout (2 s), so a
# runaway is met with BUSY and a kill before peers would start a failover.
BUSY_REPLY_THRESHOLD_MS = 1000

_ACL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# The ACL file and redis.conf split on whitespace; a quote would need escaping rules that
# differ between the two. Generated passwords (secrets.token_urlsafe) never need either.
_ACL_PASSWORD = re.compile(r"^[!-~]+$")
_FORBIDDEN_IN_PASSWORD = frozenset("\"'")


@dataclass(frozen=True)
class AclUser:
    """One ACL user: an account limited to key patterns, pub/sub channels and commands.

    `key_patterns` are glob patterns without the `~` (e.g. `"course:*"`), `commands` are ACL
    rules as Redis spells them (`"+@all"`, `"-@dangerous"`, `"+get"`), and `channel_patterns`
    are pub/sub channel globs without the `&`; none means the user may not use pub/sub.
    """

    name: str
    password: str
    key_patterns: tuple[str, ...]
    commands: tuple[str, ...]
    channel_patterns: tuple[str, ...] = ()
    # Redis 7 selectors, each `(<rules>)`: commands allowed only on the keys named with them,
    # so a user may write one prefix and only read another.
    selectors: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        if not _ACL_NAME.match(self.name):
            raise ValueError(f"ACL user name {self.name!r} must match {_ACL_NAME.pattern}")
        if not _ACL_PASSWORD.match(self.password) or _FORBIDDEN_IN_PASSWORD & set(self.password):
            raise ValueError(
                f"password of ACL user {self.name!r} must be printable ASCII without "
                "spaces or quotes"
            )
        selector_rules = [rule for selector in self.selectors for rule in selector]
        for pattern in (
            *self.key_patterns,
            *self.channel_patterns,
            *self.commands,
            *selector_rules,
        ):
            if not pattern or any(c.isspace() for c in pattern):
                raise ValueError(f"ACL rule {pattern!r} of {self.name!r} is empty or has spaces")
        for rule in self.commands:
            if rule[0] not in "+-":
                raise ValueError(f"ACL command rule {rule!r} of {self.name!r} must start +/-")

    def acl_line(self) -> str:
        """The user as one line of an ACL file (`user <name> on >password ~keys &chans +cmds`)."""
        keys = [f"~{pattern}" for pattern in self.key_patterns]
        # Redis 7 already defaults to no channels, but saying it keeps the file independent of
        # `acl-pubsub-default`.
        channels = [f"&{pattern}" for pattern in self.channel_patterns] or ["resetchannels"]
        selectors = [f"({' '.join(selector)})" for selector in self.selectors]
        return " ".join(
            [
                "user",
                self.name,
                "on",
                f">{self.password}",
                *keys,
                *channels,
                *self.commands,
                *selectors,
            ]
        )


def admin_user(password: str, name: str = DEFAULT_ADMIN_USER) -> AclUser:
    """The operator account: every key, channel and command."""
    return AclUser(
        name=name,
        password=password,
        key_patterns=("*",),
        commands=("+@all",),
        channel_patterns=("*",),
    )


REPLICATION_USER = "replication"

# What a replica sends its master (`masteruser`/`masterauth`): AUTH (always allowed), PING,
# REPLCONF (listening-port, capa, ACK) and PSYNC. Failover needs nothing more: a cluster
# failover is agreed on the cluster bus, which is not ACL-checked, and a manual
# `CLUSTER FAILOVER` is sent by the admin. No key, no CONFIG: the password this account
# writes into every node's config must not open more than the stream of writes.
REPLICATION_COMMANDS = ("-@all", "+ping", "+replconf", "+psync")


def replication_user(password: str, name: str = REPLICATION_USER) -> AclUser:
    """The account replicas authenticate to their master with, and nothing else."""
    return AclUser(name=name, password=password, key_patterns=(), commands=REPLICATION_COMMANDS)


DEFAULT_USER_LINE = "user default off resetchannels ~* &* +@all"


def render_acl_file(users: Mapping[str, AclUser]) -> str:
    """An ACL file (`aclfile`) with `default` disabled and one line per user.

    `default` is what an unauthenticated connection becomes; turning it off means every
    client must name an account, so a service that lost its credentials fails loudly
    instead of running with full rights.
    """
    # Off, yet with full permissions: Redis 7.0 replays the AOF as `default`, and silently
    # drops MULTI/EXEC blocks (the effects of our Lua scripts) that user may not run
    # (redis/redis#14541), so sessions vanished on every restart. An off user cannot log in.
    lines = [DEFAULT_USER_LINE]
    for name, user in sorted(users.items()):
        if name != user.name:
            raise ValueError(f"ACL users mapping key {name!r} names user {user.name!r}")
        if name == "default":
            raise ValueError("the default user stays off; give the account another name")
        lines.append(user.acl_line())
    return "\n".join(lines) + "\n"


def render_redis_conf(
    topology: RedisTopology,
    *,
    port: int,
    cluster_port: int | None,
    bind: str,
    data_dir: Path,
    acl_file: Path,
    announce_hostname: str | None = None,
    announce_ip: str | None = None,
    preferred_endpoint: Literal["hostname", "ip"] = "hostname",
    pidfile: Path | None,
    logfile: Path | None,
    daemonize: bool,
    replication_user: str | None = None,
    replication_password: str | None = None,
) -> str:
    """The `redis.conf` of one node of `topology`.

    `cluster_port` sets the cluster bus port (Redis >= 7) so it need not be `port + 10000`;
    it is only valid in cluster mode. `announce_hostname` is the stable name the node gives
    its peers and clients in cluster mode (a StatefulSet pod's DNS name), so the cluster
    survives pods coming back with new IPs; `preferred_endpoint` says whether redirections
    and `CLUSTER SLOTS` then name that host (the default, for Kubernetes) or the IP (the
    local stack, whose names resolve nowhere). `announce_ip` is the address the node gives
    its peers instead of the one they see it connect from: set it to the node's current
    address so that, after a restart on a new address, the node corrects what its peers
    recorded. `replication_user`/`replication_password` are the
    ACL account a replica authenticates to its master with; set them on every cluster node,
    since any master may become a replica after a failover.
    """
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    clustered = topology.mode == "cluster"
    if not clustered and (
        cluster_port is not None or announce_hostname is not None or announce_ip is not None
    ):
        raise ValueError(
            "cluster_port, announce_hostname and announce_ip only apply to cluster mode"
        )
    if preferred_endpoint not in ("hostname", "ip"):
        raise ValueError(f"preferred_endpoint is hostname or ip, not {preferred_endpoint!r}")
    if (replication_user is None) != (replication_password is None):
        raise ValueError("replication_user and replication_password go together")

    conf: list[tuple[str, str]] = [
        ("bind", bind),
        ("port", str(port)),
        # Protected mode only guards the passwordless `default` user, which is off: the ACL
        # is what protects the node, and protected mode would refuse pod-to-pod traffic.
        ("protected-mode", "no"),
        ("daemonize", _yes_no(daemonize)),
        ("dir", _quote(str(data_dir))),
        ("aclfile", _quote(str(acl_file))),
        ("maxmemory", topology.maxmemory),
        ("maxmemory-policy", MAXMEMORY_POLICY),
        # A master streams a full sync straight to its replica; waiting the default 5 s to
        # batch more replicas only delays every first sync (after a start or a failover)
        # when each master has one or two replicas.
        ("repl-diskless-sync-delay", "0"),
        ("busy-reply-threshold", str(BUSY_REPLY_THRESHOLD_MS)),
    ]
    if pidfile is not None:
        conf.append(("pidfile", _quote(str(pidfile))))
    # An empty logfile sends logs to stdout, which is /dev/null once daemonized.
    conf.append(("logfile", _quote(str(logfile)) if logfile is not None else '""'))

    if topology.persistence == "aof":
        conf += [("appendonly", "yes"), ("appendfsync", APPENDFSYNC)]
    else:
        # No AOF and no RDB snapshots: a node with persistence `none` starts empty.
        conf += [("appendonly", "no"), ("save", '""')]

    if replication_user is not None and replication_password is not None:
        conf += [("masteruser", replication_user), ("masterauth", replication_password)]

    if clustered:
        conf += [
            ("cluster-enabled", "yes"),
            # Relative to `dir`: the file that must survive restarts lives with the data.
            ("cluster-config-file", "nodes.conf"),
            ("cluster-node-timeout", str(topology.cluster_node_timeout_ms)),
            # Serving a partial keyspace would let some keys of a multi-key flow succeed
            # while others fail; refuse all writes until every slot has an owner.
            ("cluster-require-full-coverage", "yes"),
            ("cluster-allow-replica-migration", "yes"),
        ]
        if cluster_port is not None:
            conf.append(("cluster-port", str(cluster_port)))
        if announce_ip is not None:
            conf.append(("cluster-announce-ip", announce_ip))
        if announce_hostname is not None:
            conf += [
                # Recorded by every peer in its nodes.conf (`ip:port@cport,hostname`): what
                # `cluster_repair` resolves to fix the peers' addresses after a restart.
                ("cluster-announce-hostname", announce_hostname),
                # With `hostname`, redirections (MOVED/ASK) and CLUSTER SLOTS/SHARDS name the
                # stable host, not an IP that dies with the pod.
                ("cluster-preferred-endpoint-type", preferred_endpoint),
            ]

    return "".join(f"{key} {value}\n" for key, value in conf)


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _quote(value: str) -> str:
    """Quote a config value that contains spaces; Redis reads `"..."` with C escapes."""
    if value and not any(c.isspace() or c in "\"'\\" for c in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'

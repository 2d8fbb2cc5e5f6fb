"""The commands tried as each service's ACL user, to show what its ACL lets it do.

One table for the two checks that use it: the smoke suite asks each deployed node for its
verdict (`ACL DRYRUN`, nothing run), the chaos scenario `access` runs the commands as the
service on a throwaway cluster. Two copies had drifted apart, each probing commands the
other did not; here is the union, so neither checks less than the other.
"""

from __future__ import annotations

# An invocation of each command the key schema grants, with arguments of the right arity
# (Redis checks arity before the ACL): `{k}` is the key, `{g}` a consumer group. They are
# harmless when they do run: a value with a TTL, a capped stream.
INVOCATIONS: dict[str, tuple[str, ...]] = {
    "get": ("GET", "{k}"),
    "set": ("SET", "{k}", "probe", "PX", "60000"),
    "del": ("DEL", "{k}"),
    "exists": ("EXISTS", "{k}"),
    "type": ("TYPE", "{k}"),
    "pexpire": ("PEXPIRE", "{k}", "60000"),
    "hset": ("HSET", "{k}", "f", "v"),
    "hget": ("HGET", "{k}", "f"),
    "hmget": ("HMGET", "{k}", "f"),
    "hgetall": ("HGETALL", "{k}"),
    "zadd": ("ZADD", "{k}", "1", "m"),
    "zremrangebyscore": ("ZREMRANGEBYSCORE", "{k}", "0", "1"),
    "zcount": ("ZCOUNT", "{k}", "0", "1"),
    "zrangebyscore": ("ZRANGEBYSCORE", "{k}", "0", "1"),
    "zrange": ("ZRANGE", "{k}", "0", "1"),
    "zcard": ("ZCARD", "{k}"),
    "xadd": ("XADD", "{k}", "MAXLEN", "~", "100", "*", "f", "v"),
    "xgroup": ("XGROUP", "CREATE", "{k}", "{g}", "$", "MKSTREAM"),
    "xreadgroup": ("XREADGROUP", "GROUP", "{g}", "c", "COUNT", "1", "STREAMS", "{k}", ">"),
    "xack": ("XACK", "{k}", "{g}", "0-1"),
    "xautoclaim": ("XAUTOCLAIM", "{k}", "{g}", "c", "0", "0-0"),
    "xtrim": ("XTRIM", "{k}", "MAXLEN", "100"),
    "xlen": ("XLEN", "{k}"),
    "xinfo": ("XINFO", "STREAM", "{k}"),
    "xpending": ("XPENDING", "{k}", "{g}"),
    "xrange": ("XRANGE", "{k}", "-", "+", "COUNT", "1"),
}

# Commands no pattern uses, on the service's own keys: each would break a schema rule.
UNUSED_ON_OWN_KEYS: tuple[tuple[str, ...], ...] = (
    ("PERSIST", "{k}"),  # strip the TTL
    ("RENAME", "{k}", "{k}"),  # move a key (same slot: itself)
    ("GETDEL", "{k}"),
    ("APPEND", "{k}", "x"),
    ("SETRANGE", "{k}", "0", "x"),
    ("OBJECT", "ENCODING", "{k}"),
    ("DUMP", "{k}"),
    ("RESTORE", "{k}", "0", "x", "REPLACE"),
    ("SORT", "{k}"),
)

# Keyless commands no service may run, on any node: each would let one compromised
# service read or hurt every other service's data, or the cluster itself.
DANGEROUS: tuple[tuple[str, ...], ...] = (
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("KEYS", "*"),
    ("SCAN", "0"),
    ("RANDOMKEY",),
    ("DBSIZE",),
    ("CONFIG", "GET", "maxmemory"),
    ("CONFIG", "GET", "maxmemory-policy"),
    ("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"),
    ("DEBUG", "SLEEP", "0"),
    ("ACL", "LIST"),
    ("ACL", "SETUSER", "probe-nobody"),
    ("ACL", "SETUSER", "default", "on", "nopass", "+@all", "~*"),
    ("CLIENT", "LIST"),
    ("CLIENT", "KILL", "TYPE", "normal"),
    ("SCRIPT", "FLUSH"),
    ("FUNCTION", "FLUSH"),
    ("FUNCTION", "LIST"),
    ("SAVE",),
    ("BGSAVE",),
    ("BGREWRITEAOF",),
    ("SLOWLOG", "GET"),
    ("INFO", "keyspace"),
    ("MEMORY", "STATS"),
    ("REPLICAOF", "NO", "ONE"),
    ("CLUSTER", "RESET", "SOFT"),
    ("CLUSTER", "FAILOVER", "TAKEOVER"),
    ("CLUSTER", "FORGET", "0" * 40),
    ("MIGRATE", "127.0.0.1", "1", "", "0", "1000", "KEYS", "x"),
    ("PUBLISH", "channel", "x"),
    # Last: where one of these is wrongly granted, the connection (or the node) is gone.
    ("MONITOR",),
    ("SHUTDOWN",),
    ("SHUTDOWN", "NOSAVE"),
)


def fill(template: tuple[str, ...], key: str, group: str = "acl-probe") -> tuple[str, ...]:
    """A probe's arguments with its key and consumer group put in."""
    return tuple(part.replace("{k}", key).replace("{g}", group) for part in template)

"""The Redis ACL file the program stores in a Secret: the package's users, replication and
the exporter.

`courseredis.acl.all_users` is the one definition of the admin, the per-service users and
the redis_direct load suite's, `courseredis.redis_config.replication_user` the one of the
account replicas authenticate with (the local stack's cluster uses it too); the metrics
exporter is the only account Kubernetes adds, so it is declared here, with the read-only
commands `redis_exporter` sends and no keys at all.
"""

from __future__ import annotations

from collections.abc import Mapping

from courseredis.acl import all_users
from courseredis.redis_config import (
    REPLICATION_USER,
    AclUser,
    render_acl_file,
    replication_user,
)
from infra.values import EXPORTER_USER

# What redis_exporter runs on a scrape: the handshake, INFO, CLUSTER INFO, the slow log and
# latency figures. It reads no key. Not CONFIG GET: `CONFIG GET *` answers `masterauth`, the
# replication password, in clear (a per-parameter grant does not exist), so the chart runs
# the exporter with REDIS_EXPORTER_CONFIG_COMMAND=- and the figures it would have read there
# (maxmemory) come from INFO. The slow log is safe to read: Redis redacts the arguments of
# AUTH, HELLO and sensitive CONFIG SETs in it (tests/charts/test_no_password_leaks.py).
EXPORTER_COMMANDS = (
    "-@all",
    "+auth",
    "+hello",
    "+ping",
    "+client|setname",
    "+select",
    "+info",
    "+dbsize",
    "+cluster|info",
    "+slowlog|get",
    "+slowlog|len",
    "+latency|latest",
    "+latency|histogram",
    "+memory|stats",
)


def exporter_user(password: str) -> AclUser:
    return AclUser(
        name=EXPORTER_USER,
        password=password,
        key_patterns=(),
        commands=EXPORTER_COMMANDS,
    )


def acl_file(
    admin_password: str,
    service_passwords: Mapping[str, str],
    exporter_password: str,
    replication_password: str,
    loadtest_password: str,
) -> str:
    """The whole ACL file: `default` off, the admin, one user per service, the redis_direct
    load suite's, replication and the exporter."""
    users = all_users(admin_password, service_passwords, loadtest_password)
    for name in (EXPORTER_USER, REPLICATION_USER):
        if name in users:
            raise ValueError(f"a service may not be called {name!r}")
    users[EXPORTER_USER] = exporter_user(exporter_password)
    users[REPLICATION_USER] = replication_user(replication_password)
    return render_acl_file(users)

"""The Redis ACL file the program stores in a Secret: the package's users plus the exporter.

`courseredis.acl.all_users` is the one definition of the admin and the per-service users;
the metrics exporter is the only account Kubernetes adds, so it is declared here, with the
read-only commands `redis_exporter` sends and no keys at all.
"""

from __future__ import annotations

from collections.abc import Mapping

from courseredis.acl import all_users
from courseredis.redis_config import AclUser, render_acl_file
from infra.values import EXPORTER_USER

# What redis_exporter runs on a scrape: the handshake, INFO, CONFIG GET (maxmemory and
# friends), CLUSTER INFO, the slow log and latency figures. It reads no key.
EXPORTER_COMMANDS = (
    "-@all",
    "+auth",
    "+hello",
    "+ping",
    "+client|setname",
    "+select",
    "+info",
    "+dbsize",
    "+config|get",
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
    admin_password: str, service_passwords: Mapping[str, str], exporter_password: str
) -> str:
    """The whole ACL file: `default` off, the admin, one user per service, the exporter."""
    users = all_users(admin_password, service_passwords)
    if EXPORTER_USER in users:
        raise ValueError(f"a service may not be called {EXPORTER_USER!r}")
    users[EXPORTER_USER] = exporter_user(exporter_password)
    return render_acl_file(users)

"""The local stack gives replication its own account, as Kubernetes does (issue 13).

Its cluster nodes once authenticated to their master as the admin, so every node's
`masterauth` was the admin password. Now a replica links up as `replication`, and no
account but the admin reads any password, by any command it is allowed, on a local node.
"""

from __future__ import annotations

from pathlib import Path

import redis

from courseredis.environments import load_environment
from courseredis.local import stop_stack
from courseredis.local.nodes import node_directory
from courseredis.local.stack import start_nodes
from courseredis.redis_config import REPLICATION_USER
from courseredis.waiting import wait_until
from tests.charts.password_leaks import assert_no_account_reads_a_password

PROD = load_environment("prod").redis


def _conf_value(conf: Path, key: str) -> str:
    for line in conf.read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return value.strip()
    raise AssertionError(f"{conf} has no {key}")


def test_a_local_replica_links_up_as_replication_and_no_account_reads_a_password(
    tmp_path: Path,
) -> None:
    stack = start_nodes(PROD, tmp_path, env="prod", count=2)
    try:
        assert stack.password is not None
        conf = node_directory(stack.data_dir, 0) / "redis.conf"
        assert _conf_value(conf, "masteruser") == REPLICATION_USER
        replication_password = _conf_value(conf, "masterauth")
        assert replication_password != stack.password

        master_port, replica_port = stack.ports
        with (
            redis.Redis(
                stack.hosts[0], master_port, username="admin", password=stack.password
            ) as master,
            redis.Redis(
                stack.hosts[1], replica_port, username="admin", password=stack.password
            ) as replica,
        ):
            master.execute_command(
                "CLUSTER",
                "MEET",
                stack.hosts[1],
                replica_port,
                _conf_value(node_directory(stack.data_dir, 1) / "redis.conf", "cluster-port"),
            )
            master_id = master.execute_command("CLUSTER", "MYID")

            def replicating() -> bool:
                try:
                    replica.execute_command("CLUSTER", "REPLICATE", master_id)
                except redis.ResponseError:
                    return False  # the replica does not know the master yet
                return True

            # REPLICATE once, then wait for the link, with room for a loaded machine: the
            # former loop re-sent REPLICATE every 100 ms for 15 s, and once under CI load
            # gave up just before the link came up.
            wait_until(replicating, timeout_s=30, what="the replica to know its master")
            wait_until(
                lambda: replica.info("replication").get("master_link_status") == "up",
                timeout_s=60,
                what="the replica's link to its master (as user replication)",
                last_seen=lambda: str(replica.info("replication")),
            )

        assert_no_account_reads_a_password(
            master_port,
            host=stack.hosts[0],
            passwords={
                "admin": stack.password,
                REPLICATION_USER: replication_password,
                **stack.users,
            },
        )
    finally:
        stop_stack(stack)

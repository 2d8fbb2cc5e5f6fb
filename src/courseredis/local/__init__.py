"""The local stack: real `redis-server` processes on loopback, shaped like an environment.

`python -m courseredis.local up --env prod` starts the same topology `Pulumi.prod.yaml`
describes (a 3x2 cluster) and the test fixtures start theirs through `start_stack` or
`running_stack`. Nodes take free ports, so several stacks and test sessions can run side by
side; they are daemonized, so a stack outlives the command that started it, and they are
stopped only by the PIDs recorded when they started. `restart_stack` stops every node and
starts it again on another loopback address, as Kubernetes does when all pods are rescheduled.
"""

from courseredis.local.nodes import ADMIN_USER
from courseredis.local.processes import LocalStackError, RedisServerMissingError
from courseredis.local.stack import (
    LocalStack,
    check_stack,
    restart_stack,
    running_stack,
    start_nodes,
    start_stack,
    stop_stack,
)

__all__ = [
    "ADMIN_USER",
    "LocalStack",
    "LocalStackError",
    "RedisServerMissingError",
    "check_stack",
    "restart_stack",
    "running_stack",
    "start_nodes",
    "start_stack",
    "stop_stack",
]

"""Free TCP ports on loopback, chosen by the kernel."""

from __future__ import annotations

import socket


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports that were free a moment ago.

    All sockets stay bound until every port is chosen, so one call never returns the same
    port twice. The ports are released before `redis-server` binds them, so another
    process may take one in between: callers must retry a node that fails to bind.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()

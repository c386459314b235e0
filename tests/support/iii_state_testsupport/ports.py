"""Free loopback ports for test servers (never a port another process holds)."""

from __future__ import annotations

import socket
import threading

from .environment import ServerStartError

__all__ = ["LOOPBACK", "free_cluster_port", "free_port", "port_is_free"]

LOOPBACK = "127.0.0.1"

# Highest port whose Redis cluster bus port (port + 10000) is still valid.
_MAX_CLUSTER_PORT = 65535 - 10000

_recent_ports: set[int] = set()
_ports_lock = threading.Lock()


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether ``port`` on ``host`` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` (loopback) that is free right now (bind to port 0).

    Ports handed out recently by this process are not handed out again.
    """
    with _ports_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port: int = sock.getsockname()[1]
            if port not in _recent_ports:
                _recent_ports.add(port)
                return port
    raise ServerStartError("could not find a free loopback port")


def free_cluster_port(host: str = LOOPBACK) -> int:
    """A free port P <= 55535 whose Redis cluster bus port P + 10000 is free too."""
    for _ in range(500):
        port = free_port(host)
        if port <= _MAX_CLUSTER_PORT and port_is_free(port + 10000, host):
            return port
    raise ServerStartError("could not find a free port pair (P, P+10000) for a Redis cluster node")

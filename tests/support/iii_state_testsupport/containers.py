"""Test servers in Docker containers via testcontainers (only with a reachable Docker engine)."""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .environment import ServerStartError, ServerUnavailable
from .resp import RespError, redis_command

__all__ = [
    "ContainerInfo",
    "can_use_testcontainers",
    "docker_available",
    "memcached_container",
    "redis_container",
]


@dataclass(frozen=True)
class ContainerInfo:
    """A server running in a Docker container started via testcontainers."""

    kind: str
    host: str
    port: int
    url: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@functools.lru_cache(maxsize=1)
def docker_available() -> bool:
    """True when ``docker info`` succeeds within 5 s (cached per process)."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        done = subprocess.run(
            [docker, "info"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def can_use_testcontainers() -> bool:
    """True when the ``testcontainers`` package is importable and Docker answers."""
    try:
        spec = importlib.util.find_spec("testcontainers")
    except (ImportError, ValueError):
        return False
    return spec is not None and docker_available()


@contextlib.contextmanager
def _container(kind: str, image: str, internal_port: int, scheme: str | None) -> Iterator[ContainerInfo]:
    if not can_use_testcontainers():
        raise ServerUnavailable(
            f"{kind} via testcontainers (needs a running Docker engine)",
            "pip install testcontainers, and start a Docker engine",
        )
    core: Any = importlib.import_module("testcontainers.core.container")
    container: Any = core.DockerContainer(image).with_exposed_ports(internal_port)
    container.start()
    try:
        host = str(container.get_container_host_ip())
        port = int(container.get_exposed_port(internal_port))
        address = f"{host}:{port}"
        info = ContainerInfo(
            kind=kind, host=host, port=port, url=f"{scheme}://{address}" if scheme else address
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if kind == "redis":
                    ready = redis_command(host, port, "PING", timeout=2.0) == "PONG"
                else:
                    with socket.create_connection((host, port), timeout=2.0) as sock:
                        sock.sendall(b"version\r\n")
                        ready = sock.recv(64).startswith(b"VERSION ")
            except (OSError, RespError, ValueError):
                ready = False
            if ready:
                break
            if time.monotonic() > deadline:
                raise ServerStartError(f"{kind} container did not answer on {address}")
            time.sleep(0.2)
        yield info
    finally:
        container.stop()


@contextlib.contextmanager
def redis_container(image: str = "redis:7-alpine") -> Iterator[ContainerInfo]:
    """Redis in Docker via testcontainers; ``.url`` is ``redis://host:port``."""
    with _container("redis", image, 6379, "redis") as info:
        yield info


@contextlib.contextmanager
def memcached_container(image: str = "memcached:1.6-alpine") -> Iterator[ContainerInfo]:
    """memcached in Docker via testcontainers; ``.url`` is ``host:port``."""
    with _container("memcached", image, 11211, None) as info:
        yield info

"""``memcached`` on a free loopback port (``-M``, ``-m``, ``-I`` and other flags per server)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .environment import require_binary
from .managed import ManagedServer, ServerInfo
from .ports import LOOPBACK

__all__ = ["MemcachedInfo", "MemcachedServer", "memcached_server"]


@dataclass(frozen=True)
class MemcachedInfo(ServerInfo):
    memory_mb: int
    args: tuple[str, ...]


class MemcachedServer(ManagedServer[MemcachedInfo]):
    """``memcached -l 127.0.0.1 -p PORT -U 0 -m MEMORY_MB [extra_args]``.

    ``extra_args`` may carry e.g. ``("-M",)`` (error instead of evicting) or
    ``("-I", "2m")`` (max item size).  As root ``-u root`` is added (memcached
    refuses to run as root otherwise) unless ``-u`` is given."""

    kind = "memcached"
    graceful_stop = False  # memcached takes ~1 s to honour SIGTERM and keeps nothing

    def __init__(
        self,
        *,
        memory_mb: int = 64,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        binary: str | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        super().__init__(port=port, startup_timeout=startup_timeout)
        self.memory_mb = memory_mb
        self.extra_args = tuple(extra_args)
        self._binary_arg = binary
        self._binary = ""

    def _check_available(self) -> None:
        self._binary = require_binary("memcached", self._binary_arg)

    def _command(self, port: int) -> list[str]:
        args = [self._binary, "-l", LOOPBACK, "-p", str(port), "-U", "0", "-m", str(self.memory_mb)]
        if os.geteuid() == 0 and "-u" not in self.extra_args:
            args += ["-u", "root"]
        return args + list(self.extra_args)

    def _probe(self, port: int, pid: int) -> bool:
        with socket.create_connection((LOOPBACK, port), timeout=1.0) as sock:
            sock.sendall(b"version\r\nstats\r\n")
            data = b""
            while not data.endswith(b"END\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    return False
                data += chunk
            return data.startswith(b"VERSION ") and b"STAT pid %d\r\n" % pid in data

    def _make_info(self, port: int, pid: int, data_dir: Path, log_file: Path) -> MemcachedInfo:
        return MemcachedInfo(
            kind=self.kind,
            host=LOOPBACK,
            port=port,
            pid=pid,
            data_dir=data_dir,
            log_file=log_file,
            memory_mb=self.memory_mb,
            args=self.extra_args,
        )

    def __enter__(self) -> MemcachedServer:
        self.start()
        return self


@contextlib.contextmanager
def memcached_server(
    memory_mb: int = 64, extra_args: Sequence[str] = (), *, binary: str | None = None
) -> Iterator[MemcachedServer]:
    """A started ``MemcachedServer`` (``.info.address`` is ``127.0.0.1:PORT``)."""
    with MemcachedServer(memory_mb=memory_mb, extra_args=extra_args, binary=binary) as server:
        yield server

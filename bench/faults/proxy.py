"""A small loopback TCP proxy that can break the connections through it on purpose.

Faults:
- ``reset()``: every open connection is reset (RST) at once, both sides;
- ``cut_next_reply()``: the next bytes the server sends back on any connection are thrown away
  and that connection is reset: the request reached the server, its reply never arrives (the
  case that must surface as an unknown outcome, never as a silent retry);
- ``stall(seconds)``: replies are held back for a while, then delivered (a slow server).

Threads only, standard library only. The proxy listens on a free loopback port and forwards
to one upstream ``host:port``; the upstream may go away and come back (server restarts).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"
_CHUNK = 65536


def _hard_close(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer sees a reset, not an orderly end of stream."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


@dataclass
class Counters:
    connections: int = 0
    resets: int = 0
    cut_replies: int = 0
    stalls: int = 0


class _Link:
    """One client connection and its upstream connection, pumped by one thread."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy, self.client, self.upstream = proxy, client, upstream
        self.dead = threading.Event()

    def kill(self) -> None:
        if not self.dead.is_set():
            self.dead.set()
            _hard_close(self.client)
            _hard_close(self.upstream)

    def pump(self) -> None:
        try:
            while not self.dead.is_set():
                ready, _, _ = select.select([self.client, self.upstream], [], [], 0.2)
                for sock in ready:
                    data = sock.recv(_CHUNK)
                    if not data:
                        self.kill()
                        return
                    if sock is self.client:
                        self.upstream.sendall(data)
                    elif self.proxy._take_cut():
                        self.kill()
                        return
                    else:
                        self.proxy._wait_stall()
                        self.client.sendall(data)
        except (OSError, ValueError):
            self.kill()
        finally:
            self.proxy._forget(self)


class FaultProxy:
    """``FaultProxy(upstream_port)``; ``.port`` is where clients connect. Use as a context manager."""

    def __init__(self, upstream_port: int, upstream_host: str = LOOPBACK) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.counters = Counters()
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._cuts = 0
        self._stall_until = 0.0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(128)
        # accept() wakes up now and then to see whether the proxy was closed
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    # -- faults ------------------------------------------------------------------------------
    def reset(self) -> int:
        """Reset every open connection; returns how many there were."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.kill()
        self.counters.resets += len(links)
        return len(links)

    def cut_next_reply(self, count: int = 1) -> None:
        with self._lock:
            self._cuts += count

    def stall(self, seconds: float) -> None:
        self.counters.stalls += 1
        self._stall_until = max(self._stall_until, time.monotonic() + seconds)

    # -- internals ---------------------------------------------------------------------------
    def _take_cut(self) -> bool:
        with self._lock:
            if self._cuts <= 0:
                return False
            self._cuts -= 1
        self.counters.cut_replies += 1
        return True

    def _wait_stall(self) -> None:
        pause = self._stall_until - time.monotonic()
        if pause > 0:
            time.sleep(pause)

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.upstream, timeout=2.0)
                upstream.settimeout(None)
            except OSError:
                _hard_close(client)  # the server is down: the client sees a reset, as it would
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(self, client, upstream)
            with self._lock:
                self._links.add(link)
            self.counters.connections += 1
            threading.Thread(target=link.pump, name="fault-proxy-link", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.reset()
        self._thread.join(2)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

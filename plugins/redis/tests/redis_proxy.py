"""A loopback TCP proxy for fault tests: reset connections, swallow a reply, refuse clients.

Two threads per connection pump bytes each way. ``reset_all()`` aborts every open
connection (RST, so the client sees a reset, not a polite close). ``drop_next_reply()``
makes the next server-to-client chunk vanish and resets that connection: the command
reached Redis, its reply never reaches the client — the "sent but unknown" case.
``refusing()`` closes the listening socket, so a client's connect fails with ECONNREFUSED
and nothing can have been sent (accepting and then resetting would not do: the kernel
completes the handshake before ``accept``, the client sends its command, and the reset that
follows is indistinguishable from a lost reply).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

LOOPBACK = "127.0.0.1"


def _abort(sock: socket.socket) -> None:
    """Wake any thread blocked on ``sock`` and close it with a bare RST (no FIN first)."""
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RD)  # wakes our own blocked recv; sends nothing to the peer
    with suppress(OSError):
        sock.close()  # linger 0: the peer gets a RST


class _Pair:
    def __init__(self, proxy: TcpProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy, self.client, self.server = proxy, client, server
        self.closed = threading.Event()
        self.pumps: list[threading.Thread] = []

    def start(self) -> None:
        for source, target, upstream in ((self.client, self.server, True), (self.server, self.client, False)):
            pump = threading.Thread(target=self._pump, args=(source, target, upstream), daemon=True)
            self.pumps.append(pump)
            pump.start()

    def _pump(self, source: socket.socket, target: socket.socket, upstream: bool) -> None:
        try:
            while not self.closed.is_set():
                data = source.recv(65536)
                if not data:
                    break
                if not upstream and self.proxy._take_drop():
                    self.proxy.dropped_replies += 1
                    break  # the reply is swallowed; the connection dies below
                target.sendall(data)
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            _abort(self.client)
            _abort(self.server)
            self.proxy._forget(self)


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream``; see the module docstring."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self._listener.getsockname()[1]
        self._listen_lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._lock = threading.Lock()
        self._drop = 0
        self._skip = 0
        self._stopped = threading.Event()
        self.dropped_replies = 0
        self.resets = 0
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return  # this listener was closed (refusing, or the proxy stopped)
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                _abort(client)
                continue
            pair = _Pair(self, client, server)
            with self._lock:
                self._pairs.add(pair)
            pair.start()

    def _take_drop(self) -> bool:
        with self._lock:
            if not self._drop:
                return False
            if self._skip:
                self._skip -= 1
                return False
            self._drop -= 1
            return True

    def _forget(self, pair: _Pair) -> None:
        with self._lock:
            self._pairs.discard(pair)

    def drop_next_reply(self, count: int = 1, *, skip: int = 0) -> None:
        """Let ``skip`` server-to-client chunks through, then swallow ``count`` (resetting
        their connections)."""
        with self._lock:
            self._drop, self._skip = count, skip

    def reset_all(self) -> int:
        """Abort every open connection; returns how many there were.

        Returns only once the resets have gone out: a socket closed while a pump thread is
        still inside ``recv`` on it is released (and its RST sent) when that call returns,
        so without the join a client could still send on a connection it thinks is open.
        """
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.close()
        for pair in pairs:
            for pump in pair.pumps:
                pump.join(timeout=5)
        self.resets += len(pairs)
        return len(pairs)

    def _stop_listening(self) -> None:
        with self._listen_lock:
            _abort(self._listener)

    def _listen_again(self) -> None:
        with self._listen_lock:
            if self._stopped.is_set():
                return
            # create_server sets SO_REUSEADDR, so the port is free again at once.
            self._listener = socket.create_server((LOOPBACK, self.port))
            threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    @contextmanager
    def refusing(self) -> Iterator[None]:
        """While inside: new connections are refused (ECONNREFUSED); open ones stay."""
        self._stop_listening()
        try:
            yield
        finally:
            self._listen_again()

    def refuse_for(self, seconds: float) -> None:
        """Refuse new connections for ``seconds``, starting now (returns at once)."""
        self._stop_listening()
        timer = threading.Timer(seconds, self._listen_again)
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        self._stopped.set()
        self._stop_listening()
        self.reset_all()


@contextmanager
def tcp_proxy(upstream_host: str, upstream_port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(upstream_host, upstream_port)
    try:
        yield proxy
    finally:
        proxy.close()

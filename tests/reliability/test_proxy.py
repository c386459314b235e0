"""The fault campaign's loopback proxy does what it claims (so its faults are real)."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest

from bench.faults.proxy import FaultProxy


class _Echo(socketserver.BaseRequestHandler):
    seen: ClassVar[list[bytes]] = []

    def handle(self) -> None:
        while data := self.request.recv(1024):
            _Echo.seen.append(data)
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Echo.seen = []
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _client(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    return sock


def _recv_or_reset(sock: socket.socket) -> bytes | None:
    try:
        return sock.recv(1024)
    except ConnectionResetError:
        return None


def test_forwards_both_ways(echo: int) -> None:
    with FaultProxy(echo) as proxy, _client(proxy) as sock:
        sock.sendall(b"ping")
        assert sock.recv(1024) == b"ping"


def test_reset_breaks_every_open_connection(echo: int) -> None:
    with FaultProxy(echo) as proxy, _client(proxy) as a, _client(proxy) as b:
        for sock in (a, b):
            sock.sendall(b"x")
            assert sock.recv(1024) == b"x"
        assert proxy.reset() == 2
        for sock in (a, b):
            assert _recv_or_reset(sock) in (None, b"")


def test_cut_delivers_the_request_and_drops_its_reply(echo: int) -> None:
    with FaultProxy(echo) as proxy, _client(proxy) as sock:
        proxy.cut_next_reply()
        sock.sendall(b"write")
        assert _recv_or_reset(sock) in (None, b"")
        assert b"write" in b"".join(_Echo.seen)  # the server got it: the outcome is unknown
        assert proxy.counters.cut_replies == 1
    with FaultProxy(echo) as proxy, _client(proxy) as sock:  # and later connections work again
        sock.sendall(b"again")
        assert sock.recv(1024) == b"again"


def test_stall_holds_replies_back(echo: int) -> None:
    with FaultProxy(echo) as proxy, _client(proxy) as sock:
        proxy.stall(0.5)
        started = time.monotonic()
        sock.sendall(b"slow")
        assert sock.recv(1024) == b"slow"
        assert time.monotonic() - started >= 0.45


def test_upstream_down_resets_the_client() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with FaultProxy(port) as proxy:
        try:
            sock = _client(proxy)
        except ConnectionResetError:
            return  # the reset can land during the handshake: the client saw it, which is the point
        with sock:
            assert _recv_or_reset(sock) in (None, b"")

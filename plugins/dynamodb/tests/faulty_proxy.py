"""A loopback HTTP proxy in front of a DynamoDB endpoint that injects faults on request.

Not a server manager: it forwards to a server the shared fixtures started, and lets a test say
"throttle the next 3 PutItem", "apply the next PutItem but cut the reply", "drop the next PutItem",
"corrupt the next GetItem reply" or "hold the next GetItem for 0.5 s"; ``then`` runs a function
(another writer, say) after the faulty request was handled and before its client hears back.
It counts what it saw per operation, so a test can prove a request was sent exactly once.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

THROTTLE = "throttle"  # answer 400 ThrottlingException without forwarding
SERVER_ERROR = "server-error"  # forward (so it is applied), then answer 500
CUT_REPLY = "cut-reply"  # forward (so it is applied), then close the connection without a reply
DROP = "drop"  # close the connection without forwarding (nothing applied; the client cannot tell)
CORRUPT = "corrupt"  # forward, then change `marker` in the reply body (its CRC32 no longer matches)
DELAY = "delay"  # wait `delay` seconds, then forward


class FaultyProxy:
    """``url`` forwards to ``upstream``; ``fail(operation, action, times)`` arms a fault."""

    def __init__(
        self, upstream: str, delay: float = 0.5, marker: bytes = b"marker", tls: ssl.SSLContext | None = None
    ) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.delay = delay
        self.marker = marker
        self.seen: Counter[str] = Counter()
        #: every request received: (operation, headers, body), so tests can check what was sent
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self._faults: dict[str, list[tuple[str, Callable[[], object] | None]]] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                proxy._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        scheme = "http"
        if tls is not None:  # clients speak https to the proxy; it forwards in plain http
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def fail(
        self, operation: str, action: str, times: int = 1, then: Callable[[], object] | None = None
    ) -> None:
        with self._lock:
            self._faults.setdefault(operation, []).extend([(action, then)] * times)

    def _next_fault(self, operation: str) -> tuple[str | None, Callable[[], object] | None]:
        with self._lock:
            self.seen[operation] += 1
            queue = self._faults.get(operation)
            return queue.pop(0) if queue else (None, None)

    def _forward(
        self, handler: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
            conn.request("POST", handler.path, body=body, headers=headers)
            reply = conn.getresponse()
            return reply.status, reply.getheaders(), reply.read()
        finally:
            conn.close()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
        operation = handler.headers.get("X-Amz-Target", "").rpartition(".")[2]
        with self._lock:
            self.received.append((operation, dict(handler.headers.items()), body))
        fault, then = self._next_fault(operation)
        if fault == DROP:
            self._cut(handler, then)
            return
        if fault == THROTTLE:
            error = {
                "__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                "message": "Rate exceeded",
            }
            self._reply(handler, 400, [], json.dumps(error).encode())
            return
        if fault == DELAY:
            time.sleep(self.delay)
        status, headers, payload = self._forward(handler, body)
        if fault == CUT_REPLY:
            self._cut(handler, then)
            return
        if fault == SERVER_ERROR:
            error = {"__type": "com.amazon.coral.service#InternalServerError", "message": "injected"}
            self._reply(handler, 500, [], json.dumps(error).encode())
            return
        if fault == CORRUPT:
            # Still valid JSON, just another value: only the CRC32 can tell.
            payload = payload.replace(self.marker, self.marker[:-1] + b"t")
        self._reply(handler, status, headers, payload)

    @staticmethod
    def _cut(handler: BaseHTTPRequestHandler, then: Callable[[], object] | None) -> None:
        if then is not None:
            then()
        handler.close_connection = True
        handler.connection.close()

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        handler.send_response(status)
        skip = {"content-length", "connection", "transfer-encoding", "date", "server"}
        for name, value in headers:
            if name.lower() not in skip:
                handler.send_header(name, value)
        if not any(name.lower() == "content-type" for name, _ in headers):
            handler.send_header("Content-Type", "application/x-amz-json-1.0")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def start(self) -> FaultyProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def faulty_proxy(
    upstream: str, delay: float = 0.5, tls: ssl.SSLContext | None = None
) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(upstream, delay, tls=tls).start()
    try:
        yield proxy
    finally:
        proxy.stop()

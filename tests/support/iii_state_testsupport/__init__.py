"""Throw-away test servers for iii-state's own test suites (unpublished: never on an index).

Handles (``RedisServer``, ``RedisCluster``, ``MemcachedServer``, ``DynaliteServer``,
``MotoServer``) have ``start()``/``stop()`` and work as context managers; ``handle.info`` is a
small frozen dataclass with the connection facts (host, port, url, pid, data dir, ...).  The
functions ``redis_server()``, ``redis_cluster()``, ``memcached_server()``, ``dynalite_server()``
and ``moto_server()`` are context managers yielding a started handle.

A missing binary raises ``ServerUnavailable`` whose message says exactly what to install.  A
server that is installed but fails to come up raises ``ServerStartError`` (a real error, not a
reason to skip).  The pytest fixtures over these handles are in :mod:`.fixtures`, loaded by the
``iii_state_testsupport`` pytest plugin this package registers.

Modules: :mod:`.environment` (variables, hints, errors), :mod:`.ports`, :mod:`.managed` (one
server process), :mod:`.resp`, :mod:`.tls`, :mod:`.redis`, :mod:`.redis_cluster`,
:mod:`.memcached`, :mod:`.dynamodb` (+ :mod:`.moto_runner`), :mod:`.containers`; which of
these serves each shared server: :mod:`.choice`.
"""

from __future__ import annotations

from .choice import MODE_ENV, Served, served, server_mode, server_unavailable
from .containers import (
    CONTAINER_KINDS,
    ContainerInfo,
    DockerEngine,
    docker_engine,
    image_for,
    remove_orphans,
    run_container,
    unavailable_reason,
)
from .dynamodb import (
    DynaliteServer,
    HttpEndpointInfo,
    MotoServer,
    dynalite_server,
    dynamodb_call,
    dynamodb_headers,
    find_dynalite,
    moto_server,
)
from .environment import (
    DYNALITE_BINARY_ENV,
    DYNALITE_VERSION,
    DYNAMODB_URL_ENV,
    INSTALL_HINTS,
    MEMCACHED_SERVERS_ENV,
    MOTO_PYTHON_ENV,
    REDIS_CLUSTER_URL_ENV,
    REDIS_URL_ENV,
    ServerStartError,
    ServerUnavailable,
    address_of,
    ci_mode,
    external_url,
    split_addresses,
)
from .managed import ManagedServer, ServerInfo
from .memcached import MemcachedInfo, MemcachedServer, memcached_server
from .ports import LOOPBACK, free_cluster_port, free_port
from .redis import AclUser, RedisServer, RedisServerInfo, find_valkey_server, redis_server
from .redis_cluster import RedisCluster, RedisClusterInfo, redis_cluster
from .resp import RespConnection, RespError, RespReply, redis_command
from .tls import TlsFiles, generate_tls_files

__all__ = [
    "DYNALITE_BINARY_ENV",
    "DYNALITE_VERSION",
    "DYNAMODB_URL_ENV",
    "INSTALL_HINTS",
    "LOOPBACK",
    "MEMCACHED_SERVERS_ENV",
    "MOTO_PYTHON_ENV",
    "REDIS_CLUSTER_URL_ENV",
    "REDIS_URL_ENV",
    "AclUser",
    "CONTAINER_KINDS",
    "MODE_ENV",
    "ContainerInfo",
    "DockerEngine",
    "Served",
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
    "RespReply",
    "ServerInfo",
    "ServerStartError",
    "ServerUnavailable",
    "TlsFiles",
    "address_of",
    "docker_engine",
    "image_for",
    "remove_orphans",
    "run_container",
    "served",
    "server_mode",
    "server_unavailable",
    "unavailable_reason",
    "ci_mode",
    "dynalite_server",
    "dynamodb_call",
    "dynamodb_headers",
    "external_url",
    "find_dynalite",
    "find_valkey_server",
    "free_cluster_port",
    "free_port",
    "generate_tls_files",
    "memcached_server",
    "moto_server",
    "redis_cluster",
    "redis_command",
    "redis_server",
    "split_addresses",
]

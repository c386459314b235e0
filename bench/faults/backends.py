"""The servers the fault campaign breaks: how to start each, reach it through the proxy, and
what it promises (durable or not)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Client timeouts short enough that a stalled server shows up within the run.
TIMEOUT = 2.0


@dataclass(frozen=True)
class Backend:
    name: str
    #: starts a managed server (``iii_state_testsupport``); ``.port``, ``.kill()``, ``.start()``
    server: Callable[[], Any]
    #: the store's adapter name and config, reaching the server at ``host:port``; the second
    #: argument names the run (a key prefix), so every store of one run sees the same data
    adapter: str
    config: Callable[[str, str], dict[str, Any]]
    #: acknowledged writes survive a server kill (Redis with AOF appendfsync always)
    durable: bool
    description: str


def _redis_server() -> Any:
    from iii_state_testsupport import RedisServer

    return RedisServer(appendonly=True)


def _memcached_server() -> Any:
    from iii_state_testsupport import MemcachedServer

    return MemcachedServer()


def _dynalite_server() -> Any:
    from iii_state_testsupport import DynaliteServer

    for name, value in (("AWS_ACCESS_KEY_ID", "faults"), ("AWS_SECRET_ACCESS_KEY", "faults")):
        os.environ.setdefault(name, value)
    return DynaliteServer(persistent=True)


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend(
            "redis",
            _redis_server,
            "redis",
            lambda address, run: {
                "redis_url": f"redis://{address}",
                "socket_timeout": TIMEOUT,
                "connect_timeout": TIMEOUT,
            },
            durable=True,
            description="redis-server, AOF on with appendfsync always",
        ),
        Backend(
            "memcached",
            _memcached_server,
            "memcached",
            lambda address, run: {
                "servers": [address],
                "key_prefix": f"{run}:",
                "timeout": TIMEOUT,
                "connect_timeout": TIMEOUT,
            },
            durable=False,
            description="memcached (memory only: a restart empties it)",
        ),
        Backend(
            "dynamodb",
            _dynalite_server,
            "dynamodb",
            lambda address, run: {
                "endpoint_url": f"http://{address}",
                "table_name": run,
                "create_table": True,
                "read_timeout": TIMEOUT,
                "connect_timeout": TIMEOUT,
            },
            durable=True,
            description="dynalite with a LevelDB store on disk",
        ),
    )
}

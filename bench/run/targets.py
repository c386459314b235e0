"""The adapters ``python -m bench`` can run: how to start each one's server and open both sides.

Servers come from the shared ``iii_state_testsupport`` module (loopback, free port,
own temp dir, stopped by pid). A target whose server cannot start is reported, not skipped
silently.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from iii_state_core import StateStore, open_store

from .raw import RawSide


@dataclass
class Session:
    """One opened target: our store, the raw client beside it, and facts for the report."""

    store: StateStore
    raw: RawSide
    scope: str
    #: Opens another store on the same backend (for the scaling runs, which need empty scopes).
    reopen: Callable[[], StateStore]
    facts: dict[str, str] = field(default_factory=dict)
    #: The server process's pid, where one was started here (its CPU time is read from /proc).
    server_pid: int | None = None
    #: The adapter's name and the config ``store`` was opened with, for a bench that opens its
    #: own stores on the same server with other settings (``bench.expiry``: ``expiry_events``).
    adapter: str = ""
    adapter_config: dict[str, Any] = field(default_factory=dict)


Opener = Callable[[], contextlib.AbstractContextManager[Session]]


@dataclass(frozen=True)
class Target:
    name: str
    title: str
    open: Opener
    #: Seconds one store.set costs, roughly: how many keys the 100,000-key runs can afford.
    bulk_fill_threads: int = 1


def _scope() -> str:
    return f"bench-{secrets.token_hex(3)}"


def _kv_file(fsync: bool = False) -> Opener:
    @contextlib.contextmanager
    def session() -> Iterator[Session]:
        from .raw_kv import RawSqlite, sqlite_dir

        folder = tempfile.mkdtemp(prefix="iii-bench-kv-")
        config = {"store_method": "file_based", "file_path": folder, "fsync": fsync}
        store = open_store(adapter="kv", adapter_config=config)
        raw = RawSqlite(sqlite_dir(folder), fsync)
        try:
            import sqlite3

            synchronous = "FULL" if fsync else "NORMAL"
            yield Session(
                store, raw, _scope(), lambda: open_store(adapter="kv", adapter_config=config),
                {"backend": f"SQLite {sqlite3.sqlite_version} (WAL, synchronous={synchronous})"},
                adapter="kv", adapter_config=config,
            )  # fmt: skip
        finally:
            raw.close()
            store.close()
            shutil.rmtree(folder, ignore_errors=True)

    return session


@contextlib.contextmanager
def _kv_memory() -> Iterator[Session]:
    from .raw_kv import RawDict

    store = open_store(adapter="kv", adapter_config={"store_method": "in_memory"})
    try:
        yield Session(
            store, RawDict(), _scope(), lambda: store, {"backend": "process memory"},
            adapter="kv", adapter_config={"store_method": "in_memory"},
        )  # fmt: skip
    finally:
        store.close()


@contextlib.contextmanager
def _redis() -> Iterator[Session]:
    from iii_state_testsupport import redis_server

    from .raw_redis import RawRedis, server_version

    with redis_server() as server:
        url = server.url
        config = {"redis_url": url}
        store = open_store(adapter="redis", adapter_config=config)
        raw = RawRedis(url)
        try:
            yield Session(
                store, raw, _scope(), lambda: open_store(adapter="redis", adapter_config=config),
                {"backend": f"redis-server {server_version(raw.client)} (no persistence), loopback"},
                server.pid, adapter="redis", adapter_config=config,
            )  # fmt: skip
        finally:
            raw.close()
            store.close()


@contextlib.contextmanager
def _memcached() -> Iterator[Session]:
    from iii_state_testsupport import memcached_server

    from .raw_memcached import RawMemcached

    with memcached_server() as server:
        servers = [server.address]
        config: dict[str, Any] = {"servers": servers, "key_prefix": f"b{secrets.token_hex(3)}:"}
        store = open_store(adapter="memcached", adapter_config=config)
        raw = RawMemcached(servers[0])
        try:
            yield Session(
                store, raw, _scope(), lambda: open_store(adapter="memcached", adapter_config=config),
                {"backend": f"memcached {raw.version()}, loopback"},
                server.pid, adapter="memcached", adapter_config=config,
            )  # fmt: skip
        finally:
            raw.close()
            store.close()


def _dynamodb(kind: str) -> Opener:
    @contextlib.contextmanager
    def opener() -> Iterator[Session]:
        from iii_state_testsupport import dynalite_server, moto_server

        from .raw_dynamodb import DUMMY_ENV, RawDynamo, server_facts

        for name, value in DUMMY_ENV.items():  # neither server checks them; boto3 wants some
            os.environ.setdefault(name, value)
        with dynalite_server() if kind == "dynalite" else moto_server() as server:
            endpoint = server.url
            table = f"iii-bench-{secrets.token_hex(4)}"
            config = {"table_name": table, "endpoint_url": endpoint, "create_table": True}
            store = open_store(adapter="dynamodb", adapter_config=config)
            raw = RawDynamo(endpoint, table)
            try:
                yield Session(
                    store, raw, _scope(), lambda: open_store(adapter="dynamodb", adapter_config=config),
                    {"backend": f"{server_facts(kind)}, loopback"},
                    server.pid, adapter="dynamodb", adapter_config=config,
                )  # fmt: skip
            finally:
                store.close()

    return opener


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("kv", "kv (file_based: SQLite WAL) vs raw sqlite3", _kv_file()),
        # Not in the default runs: the file store with `fsync: true`, where every commit waits for
        # the disk, so one call per entry pays a flush that a batch pays once.
        Target(
            "kv-fsync",
            "kv (file_based, fsync: true: SQLite WAL, synchronous=FULL) vs raw sqlite3",
            _kv_file(fsync=True),
        ),
        Target("kv-memory", "kv (in_memory) vs a raw locked dict", _kv_memory),
        Target("redis", "redis vs raw redis-py", _redis),
        Target("memcached", "memcached vs raw pymemcache", _memcached),
        Target("dynamodb", "dynamodb on dynalite vs raw boto3", _dynamodb("dynalite"), bulk_fill_threads=8),
        Target("dynamodb-moto", "dynamodb on moto vs raw boto3", _dynamodb("moto"), bulk_fill_threads=4),
    )
}

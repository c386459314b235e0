"""Failures are errors, never misses: dead servers, lost replies, restarts, foreign data."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from iii_state_testsupport import free_port

from iii_state_core import (
    BackendError,
    ConfigError,
    StateStore,
    UnknownOutcomeError,
    open_async_store,
    open_store,
)


def _node_of(store: StateStore, scope: str, key: str) -> Any:
    adapter: Any = store.adapter
    return adapter._cluster.node(adapter._codec.data_key(scope, key))


def test_an_unreachable_server_is_a_clear_error_at_open() -> None:
    config = {"servers": f"127.0.0.1:{free_port()}", "connect_timeout": 0.5}
    with pytest.raises(BackendError, match=r"memcached at 127\.0\.0\.1:\d+"):
        open_store(adapter="memcached", adapter_config=config)


def test_a_dead_server_fails_its_keys_and_never_remaps_them(
    memcached_server_factory: Callable[..., Any], open_memcached: Callable[..., StateStore]
) -> None:
    first, second = memcached_server_factory(), memcached_server_factory()
    store = open_memcached([first.address, second.address], connect_timeout=0.5, timeout=0.5)
    keys = [f"k{i}" for i in range(40)]
    for key in keys:
        store.set("s", key, key)
    on_first = [k for k in keys if _node_of(store, "s", k).name == first.address]
    on_second = [k for k in keys if k not in on_first]
    assert on_first and on_second, "rendezvous hashing should use both servers"
    first.kill()
    for key in on_first[:3]:
        with pytest.raises(BackendError) as info:
            store.get("s", key)
        assert info.value.code == "GET_ERROR" and first.address in str(info.value)
        with pytest.raises(BackendError):
            store.set("s", key, "elsewhere")
    assert [store.get("s", k) for k in on_second] == on_second
    first.start()  # same port, empty: its keys are gone, nothing moved to the other server
    assert store.get("s", on_first[0]) is None
    assert store.set("s", on_first[0], "back").old_value is None


def test_a_lost_reply_is_an_unknown_outcome_and_a_failed_read_is_not(
    memcached_server_factory: Callable[..., Any], open_memcached: Callable[..., StateStore]
) -> None:
    server = memcached_server_factory()
    store = open_memcached([server.address], timeout=0.3)
    store.set("s", "k", 1)  # now the adapter knows the item's cas: the next set is one store
    server.pause()
    try:
        with pytest.raises(UnknownOutcomeError, match="may or may not have been applied") as info:
            store.set("s", "k", 2)
        assert info.value.code == "SET_ERROR"
        with pytest.raises(BackendError) as read_info:
            store.get("s", "k")
        assert not isinstance(read_info.value, UnknownOutcomeError)
    finally:
        server.resume()
    assert store.get("s", "k") in (1, 2)


def test_a_restarted_server_is_a_fresh_empty_store_not_an_error(
    memcached_server_factory: Callable[..., Any], open_memcached: Callable[..., StateStore]
) -> None:
    server = memcached_server_factory()
    store = open_memcached([server.address])
    store.set("s", "k", 1)
    store.set("s", "k", 2)
    server.restart()
    # the remembered cas belongs to the old server process and must not be used
    assert store.set("s", "k", 3).old_value is None
    assert store.get("s", "k") == 3 and store.list_keys("s") == ["k"]
    server.restart()
    # a read on a pooled connection the server closed is simply sent again
    assert store.get("s", "k") is None and store.list_keys("s") == []


def test_a_store_with_another_index_layout_is_refused(
    memcached_servers: list[str], open_memcached: Callable[..., StateStore]
) -> None:
    first = open_memcached(memcached_servers)
    prefix = first.adapter.describe().rsplit("'", 2)[-2]
    with pytest.raises(ConfigError, match="scope_shards=16"):
        open_memcached(memcached_servers, key_prefix=prefix, scope_shards=8)
    assert open_memcached(memcached_servers, key_prefix=prefix).get("s", "k") is None


def test_foreign_data_under_the_prefix_is_a_clear_error(
    memcached_servers: list[str], open_memcached: Callable[..., StateStore]
) -> None:
    store = open_memcached(memcached_servers)
    adapter: Any = store.adapter
    mc_key = adapter._codec.data_key("s", "k")
    adapter._cluster.node(mc_key).store(mc_key, b"written by another program", None)
    with pytest.raises(BackendError, match="not in the iii-state format") as info:
        store.get("s", "k")
    assert info.value.code == "GET_ERROR"


def test_threads_sharing_one_store_lose_no_update(
    memcached_servers_pair: list[str], open_memcached: Callable[..., StateStore]
) -> None:
    store = open_memcached(memcached_servers_pair)
    increment = [{"type": "increment", "path": "n", "by": 1}]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(100):
                store.update("s", "counter", increment)
                store.set("s", "last", threading.get_ident())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert store.get("s", "counter") == {"n": 600}


def test_the_async_store_drives_the_same_adapter(memcached_servers: list[str]) -> None:
    config = {"servers": memcached_servers, "key_prefix": "async-test:"}

    async def main() -> Any:
        store = open_async_store(adapter="memcached", adapter_config=config)
        try:
            await store.set("a", "k", {"n": 0})
            increment = [{"type": "increment", "path": "n", "by": 1}]
            await asyncio.gather(*(store.update("a", "k", increment) for _ in range(20)))
            value = await store.get("a", "k")
            await store.delete("a", "k")
            return value
        finally:
            await store.close()

    assert asyncio.run(main()) == {"n": 20}

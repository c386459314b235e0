"""The item size limit is read from the server, declared, and enforced with clear errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from iii_state_memcached import MemcachedAdapter
from iii_state_memcached.adapter import NAME_ALLOWANCE, value_limit

from iii_state_core import StateStore, ValueTooLargeError


def test_the_class_declares_the_default_one_megabyte_limit() -> None:
    caps = MemcachedAdapter.capabilities
    assert caps.max_value_bytes == value_limit(1024 * 1024)
    assert caps.may_evict and not caps.durable and caps.shared and caps.ordered_listing
    assert caps.max_key_bytes is None and caps.max_scope_bytes is None


def test_a_two_megabyte_server_declares_and_takes_values_up_to_its_limit(
    memcached_server_factory: Callable[..., Any], open_memcached: Callable[..., StateStore]
) -> None:
    server = memcached_server_factory(extra_args=("-I", "2m"))
    store = open_memcached([server.address])
    limit = type(store.adapter).capabilities.max_value_bytes
    assert limit == value_limit(2 * 1024 * 1024) > 2_000_000
    assert type(store.adapter) is not MemcachedAdapter and isinstance(store.adapter, MemcachedAdapter)
    # the largest value, under a scope and key as long as the allowance promises
    scope, key = "s" * (NAME_ALLOWANCE // 2), "k" * (NAME_ALLOWANCE // 2)
    at = "v" * (limit - 2)
    store.set(scope, key, at)
    assert store.get(scope, key) == at
    assert store.list_keys(scope) == [key]
    with pytest.raises(ValueTooLargeError):
        store.set(scope, key, at + "v")
    assert store.get(scope, key) == at


def test_names_beyond_the_allowance_refuse_only_the_largest_values(
    memcached_servers: list[str], open_memcached: Callable[..., StateStore]
) -> None:
    store = open_memcached(memcached_servers)
    limit = type(store.adapter).capabilities.max_value_bytes
    assert limit is not None
    key = "k" * (2 * NAME_ALLOWANCE)
    with pytest.raises(ValueTooLargeError, match="together with its scope and key") as info:
        store.set("s", key, "v" * (limit - 2))
    assert info.value.code == "VALUE_TOO_LARGE"
    assert store.get("s", key) is None and store.list_keys("s") == []
    store.set("s", key, "v" * (limit - 2 - 2 * NAME_ALLOWANCE))
    assert store.list_keys("s") == [key]


def test_a_scope_outgrowing_small_items_splits_its_index_instead_of_filling_up(
    memcached_server_factory: Callable[..., Any], open_memcached: Callable[..., StateStore]
) -> None:
    """Layout 1 refused new keys once a scope's 16 buckets filled 16 items (about 900 keys of
    1 KiB with -I 64k); the index tree splits leaves instead, so the scope keeps growing."""
    server = memcached_server_factory(memory_mb=16, extra_args=("-I", "64k", "-o", "slab_chunk_max=32768"))
    store = open_memcached([server.address])
    keys = [f"{i:04d}" + "k" * 1020 for i in range(1200)]
    for i, key in enumerate(keys):
        store.set("s", key, i)
    assert sorted(store.list_keys("s")) == keys
    assert sorted(store.list("s")) == list(range(1200))

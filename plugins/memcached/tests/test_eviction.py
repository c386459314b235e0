"""Memory pressure: eviction drops entries cleanly; ``-M`` makes writes fail clearly instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from iii_state_core import BackendError, StateStore

VALUE = 4000  # bytes per value: a few hundred fit in a 4 MB server


def _value(i: int) -> str:
    return f"{i:06d}" + "x" * (VALUE - 6)


def test_evicted_entries_vanish_from_listings_without_errors(
    memcached_server_factory: Callable[..., Any], open_memcached: Callable[..., StateStore]
) -> None:
    server = memcached_server_factory(memory_mb=4)
    store = open_memcached([server.address])
    adapter: Any = store.adapter
    for i in range(50):
        store.set("kept", f"k{i}", _value(i))
    assert adapter.count("kept") == 50  # probed: a count trusts this while nothing is evicted
    for i in range(3000):
        store.set("ev", f"k{i}", _value(i))  # never an error: memcached evicts old items instead
        if i % 50 == 0:  # keep the index of "kept" (not its values) recently used
            adapter._cluster.get_many(leaf.key for leaf in _leaves(adapter, "kept"))
    stats = adapter._cluster.nodes[0].stats()
    assert stats[b"evictions"] > 1000, "the server must really have evicted entries"
    # the leaves of "kept" still list all 50, most values are evicted: the count sees the
    # evictions (before a walk prunes the leaves)
    assert len(adapter._index.entries_of("kept", _leaves(adapter, "kept")[0])) == 50
    counted = adapter.count("kept")
    assert counted == len(_entries(store, "kept")) < 50
    keys = store.list_keys("ev")
    assert 0 < len(keys) < 3000
    for key, value in _entries(store, "ev"):
        assert value == _value(int(key[1:])), f"{key} listed with another entry's value"
    assert sorted(_value(int(k[1:])) for k in keys) == sorted(store.list("ev"))
    assert store.list_groups() == ["ev"]
    survivor = keys[-1]
    assert store.get("ev", survivor) == _value(int(survivor[1:]))
    assert store.delete("ev", "k0") is None  # evicted long ago: a miss, not an error


def _leaves(adapter: Any, scope: str) -> list[Any]:
    step, found = adapter._index.leaves(scope), []
    while (leaf := step()) is not None:
        found.append(leaf)
    return found


def _entries(store: StateStore, scope: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    cursor = None
    while True:
        page = store.list_entries(scope, cursor, 100)
        out += page.entries
        if page.done:
            return out
        cursor = page.next_cursor


def test_without_eviction_writes_fail_clearly_and_keep_what_was_stored(
    memcached_server_factory: Callable[..., Any], open_memcached: Callable[..., StateStore]
) -> None:
    server = memcached_server_factory(memory_mb=4, extra_args=("-M",))
    store = open_memcached([server.address])
    stored: list[int] = []
    with pytest.raises(BackendError, match="out of memory") as info:
        for i in range(3000):
            store.set("full", f"k{i}", _value(i))
            stored.append(i)
    assert info.value.code == "SET_ERROR" and "-M" in str(info.value)
    refused = len(stored)
    assert 50 < refused < 3000
    assert store.get("full", f"k{refused}") is None, "a refused new key stores nothing"
    assert sorted(store.list_keys("full")) == sorted(f"k{i}" for i in stored), "nor is it listed"
    # an existing entry whose new value finds no memory keeps its previous value
    with pytest.raises(BackendError, match="keeps its previous value"):
        store.set("full", "k1", _value(10**5))
    assert store.get("full", "k1") == _value(1)
    assert store.update("full", "k2", [{"type": "set", "path": "", "value": "small"}]).new_value == "small"
    # deleting frees memory; then writes succeed again
    for i in stored[-20:]:
        assert store.delete("full", f"k{i}") == _value(i)
    store.set("full", f"k{refused}", _value(refused))
    assert store.get("full", f"k{refused}") == _value(refused)
    assert all(store.get("full", f"k{i}") == _value(i) for i in stored[3:-20])
    assert store.list_groups() == ["full"]

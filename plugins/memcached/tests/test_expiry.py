"""Entry expiry on memcached: the deadline lives in the record, memcached's own lifetime follows it
(plus the grace a sweeper needs), and listings and counts hide expired entries."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from iii_state_memcached import records

from iii_state_core import StateStore


def _lifetime(store: StateStore, scope: str, key: str) -> int | None:
    """memcached's remaining lifetime of the entry's item, in seconds (-1: none)."""
    adapter: Any = store.adapter
    mc_key = adapter._codec.data_key(scope, key)
    return adapter._cluster.remaining([mc_key]).get(mc_key)


def test_native_lifetime_follows_the_deadline_plus_the_grace(
    memcached_config: dict[str, Any], open_memcached: Callable[..., StateStore]
) -> None:
    store = open_memcached(memcached_config["servers"], expired_grace_s=60)
    store.set("s", "plain", 1)
    assert _lifetime(store, "s", "plain") == -1
    store.set("s", "k", {"a": 1}, ttl_ms=10_000)
    left = _lifetime(store, "s", "k")
    assert left is not None and 60 + 9 <= left <= 60 + 11
    adapter: Any = store.adapter
    mc_key = adapter._codec.data_key("s", "k")
    item = adapter._cluster.node(mc_key).get(mc_key)
    assert item[0] == records.MAGIC_EXPIRING
    record = records.find(item, mc_key, b"s", b"k")
    assert record is not None and record.deadline is not None
    store.expire("s", "k", None)  # no deadline: the item is kept until evicted, in the old format
    assert _lifetime(store, "s", "k") == -1
    assert adapter._cluster.node(mc_key).get(mc_key)[0] == records.MAGIC
    store.update("s", "k", [], ttl_ms=30_000)
    left = _lifetime(store, "s", "k")
    assert left is not None and 60 + 29 <= left <= 60 + 31
    store.set("s", "k", 2)  # a set without ttl_ms clears the deadline, natively too
    assert _lifetime(store, "s", "k") == -1


def test_expired_entries_are_neither_counted_nor_listed_and_their_scope_is_not_churned(
    memcached_config: dict[str, Any], open_memcached: Callable[..., StateStore]
) -> None:
    store = open_memcached(memcached_config["servers"])
    for i in range(30):
        store.set("mixed", f"k{i:02d}", i, ttl_ms=300 if i % 3 == 0 else None)
        store.set("gone", f"k{i:02d}", i, ttl_ms=300)
    written = time.monotonic()
    assert store.list_entries("mixed", None, 5).total == 30
    time.sleep(max(0.0, written + 0.33 - time.monotonic()))
    page = store.list_entries("mixed", None, 100)
    assert page.total == 20 and len(page.entries) == 20
    assert store.list_entries("gone", None, 100).total == 0
    adapter: Any = store.adapter
    shard = adapter._codec.scope_shard_key("gone")
    node = adapter._cluster.node(shard)
    before = node.gets(shard)[1]
    assert "gone" not in store.list_groups() and "mixed" in store.list_groups()
    # expired values stay (invisible) for a sweeper: the scope stays indexed, unchanged
    assert node.gets(shard)[1] == before
    store.set("gone", "k00", "back")
    assert store.list_keys("gone") == ["k00"] and "gone" in store.list_groups()

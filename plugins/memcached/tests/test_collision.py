"""Pairs forced onto the same hashed memcached key still read back as their own.

The hook: a digest that returns the same bytes for everything, so every name too long to be
encoded lands in one data item (and every long scope in one tree of index nodes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from iii_state_core import StateStore

LONG = "k" * 300  # too long for the readable encoding: these names are hashed


def same(data: bytes) -> bytes:
    return b"\x00" * 24


@pytest.fixture
def colliding(memcached_servers: list[str], open_memcached: Callable[..., StateStore]) -> StateStore:
    return open_memcached(memcached_servers, digest=same)


def _item_of(store: StateStore, scope: str, key: str) -> bytes:
    adapter: Any = store.adapter
    return adapter._codec.data_key(scope, key)  # type: ignore[no-any-return]


def test_two_pairs_on_one_hashed_key_read_back_as_their_own(colliding: StateStore) -> None:
    a, b = ("scope-a", LONG + "a"), ("scope-b", LONG + "b")
    assert _item_of(colliding, *a) == _item_of(colliding, *b), "the hook must force a collision"
    assert colliding.set(*a, {"mine": "a"}).old_value is None
    assert colliding.set(*b, {"mine": "b"}).old_value is None
    assert colliding.get(*a) == {"mine": "a"}
    assert colliding.get(*b) == {"mine": "b"}
    assert colliding.set(*a, {"mine": "a2"}).old_value == {"mine": "a"}
    assert colliding.get(*b) == {"mine": "b"}
    assert colliding.list_keys("scope-a") == [a[1]] and colliding.list("scope-b") == [{"mine": "b"}]


def test_a_colliding_pair_that_was_never_written_reads_as_missing(colliding: StateStore) -> None:
    colliding.set("s", LONG + "1", 1)
    assert colliding.get("s", LONG + "2") is None
    assert colliding.delete("s", LONG + "2") is None
    assert colliding.get("s", LONG + "1") == 1


def test_delete_update_and_cas_touch_only_their_own_record(colliding: StateStore) -> None:
    one, two = LONG + "1", LONG + "2"
    colliding.set("s", one, {"n": 1})
    colliding.set("s", two, {"n": 10})
    colliding.update("s", one, [{"type": "increment", "path": "n", "by": 1}])
    assert colliding.compare_and_set("s", two, {"n": 10}, {"n": 11}).swapped
    assert colliding.compare_and_set("s", LONG + "3", None, 3).swapped
    assert colliding.get("s", one) == {"n": 2} and colliding.get("s", two) == {"n": 11}
    assert colliding.delete("s", one) == {"n": 2}
    assert colliding.get("s", one) is None
    assert colliding.get("s", two) == {"n": 11} and colliding.get("s", LONG + "3") == 3
    assert sorted(colliding.list_keys("s")) == [two, LONG + "3"]
    assert colliding.delete("s", two) == {"n": 11}
    assert colliding.delete("s", LONG + "3") == 3
    assert colliding.list_keys("s") == [] and "s" not in colliding.list_groups()


def test_long_scopes_sharing_index_nodes_keep_separate_listings(colliding: StateStore) -> None:
    first, second = "S" * 300 + "1", "S" * 300 + "2"
    adapter: Any = colliding.adapter
    assert adapter._codec.node_key(first, 0, 0) == adapter._codec.node_key(second, 0, 0)
    for i in range(20):
        colliding.set(first, f"k{i}", i)
        colliding.set(second, f"k{i}", -i)
    colliding.delete(first, "k0")
    assert sorted(colliding.list_keys(first)) == sorted(f"k{i}" for i in range(1, 20))
    assert sorted(colliding.list(second)) == sorted(-i for i in range(20))
    assert {first, second} <= set(colliding.list_groups())
    for i in range(20):
        colliding.delete(first, f"k{i}")
    groups = colliding.list_groups()
    assert first not in groups and second in groups


def test_batch_gets_are_one_multi_get_and_colliding_pairs_stay_apart(
    colliding: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iii_state_memcached.nodes import Node

    colliding.set_many("s", {f"{LONG}{i}": i for i in range(5)})
    multi: list[int] = []
    real = Node.get_many
    monkeypatch.setattr(Node, "get_many", lambda self, keys: multi.append(len(keys)) or real(self, keys))
    monkeypatch.setattr(Node, "get", lambda self, key: pytest.fail("a batch read went out alone"))
    keys = [f"{LONG}{i}" for i in range(7)]
    assert colliding.get_many("s", keys) == {k: (i if i < 5 else None) for i, k in enumerate(keys)}
    assert multi == [1]  # every name hashed to one item: fetched once

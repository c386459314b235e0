"""The listing index: sharding of large scopes, crashes between steps, and racing repairs."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from iii_state_memcached import records

from iii_state_core import BackendError, StateStore


def _adapter(store: StateStore) -> Any:
    return store.adapter


def _leaves(store: StateStore, scope: str) -> list[Any]:
    """The scope's index leaves in hash order, read straight from the servers."""
    index = _adapter(store)._index
    step, found = index.leaves(scope), []
    while (leaf := step()) is not None:
        found.append(leaf)
    return found


def _indexed(store: StateStore, scope: str) -> dict[str, int]:
    """What the scope's index lists, read straight from the servers."""
    index = _adapter(store)._index
    found: dict[str, int] = {}
    for leaf in _leaves(store, scope):
        found.update(index.entries_of(scope, leaf))
    return found


def _walk(store: StateStore, scope: str, limit: int) -> list[str]:
    keys: list[str] = []
    page = store.list_entries(scope, None, limit)
    keys += [k for k, _ in page.entries]
    while not page.done:
        page = store.list_entries(scope, page.next_cursor, limit)
        keys += [k for k, _ in page.entries]
    return keys


@pytest.fixture
def store(memcached_servers: list[str], open_memcached: Callable[..., StateStore]) -> StateStore:
    return open_memcached(memcached_servers)


def test_a_scope_of_2500_kibibyte_keys_splits_into_small_leaves_and_is_walked_exactly_once(
    store: StateStore,
) -> None:
    keys = [f"{i:05d}-" + "x" * 1018 for i in range(2500)]
    for i, key in enumerate(keys):
        store.set("big", key, i)
    adapter = _adapter(store)
    leaves = _leaves(store, "big")
    sizes = [len(leaf.item or b"") for leaf in leaves]
    assert len(leaves) > 2_500_000 // adapter._index.leaf_bytes, "the index split into many leaves"
    assert sum(sizes) > 2_500_000 and max(sizes) <= adapter._index.leaf_bytes + 1100
    assert [leaf.low for leaf in leaves][1:] == [leaf.high for leaf in leaves][:-1], "leaves tile the hashes"
    walked = _walk(store, "big", 97)
    assert Counter(walked) == Counter(keys), "each key exactly once"
    assert sorted(store.list("big")) == list(range(2500))
    for key in keys[:100]:
        store.delete("big", key)
    assert len(store.list_keys("big")) == 2400 and len(_indexed(store, "big")) == 2400


def _before_storing(
    store: StateStore, monkeypatch: pytest.MonkeyPatch, marker: bytes, action: Callable[[], None]
) -> None:
    """Run ``action`` just before any store of an item whose key contains ``marker`` (both the
    plain store and the store that probes the index after it)."""
    node = _adapter(store)._cluster.nodes[0]
    real_store, real_probing = node.store, node.store_probing

    def plain(mc_key: bytes, *args: Any, **kwargs: Any) -> Any:
        if marker in mc_key:
            action()
        return real_store(mc_key, *args, **kwargs)

    def probing(mc_key: bytes, *args: Any, **kwargs: Any) -> Any:
        if marker in mc_key:
            action()
        return real_probing(mc_key, *args, **kwargs)

    monkeypatch.setattr(node, "store", plain)
    monkeypatch.setattr(node, "store_probing", probing)


@pytest.mark.parametrize("first_key", [True, False], ids=["new-scope", "known-leaf"])
def test_a_crash_between_indexing_and_storing_leaves_no_ghost_in_listings(
    store: StateStore, monkeypatch: pytest.MonkeyPatch, first_key: bool
) -> None:
    scope = "s-new" if first_key else "s"
    if not first_key:
        store.set(scope, "kept", 1)  # this process now knows the leaf: the create takes the fast path

    def crash() -> None:
        raise BackendError("simulated crash after the index was written")

    _before_storing(store, monkeypatch, b"ghost", crash)
    with pytest.raises(BackendError):
        store.set(scope, "ghost", 2)
    monkeypatch.undo()
    assert "ghost" in _indexed(store, scope), "the crash left an index entry (expected)"
    assert store.get(scope, "ghost") is None
    assert store.list_keys(scope) == ([] if first_key else ["kept"])
    assert "ghost" not in _indexed(store, scope), "listing pruned the ghost"
    assert (scope in store.list_groups()) is not first_key
    store.set(scope, "ghost", 3)
    assert sorted(store.list_keys(scope)) == (["ghost"] if first_key else ["ghost", "kept"])


def test_a_crash_between_deleting_and_unindexing_is_cleaned_up(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.set("gone", "only", {"v": 1})
    index = _adapter(store)._index

    def crash(scope: str, entries: dict[str, int]) -> None:
        raise BackendError("simulated crash after the value was deleted")

    monkeypatch.setattr(index, "drop_entries", crash)
    assert store.delete("gone", "only") == {"v": 1}, "the delete happened and says so"
    monkeypatch.undo()
    assert "only" in _indexed(store, "gone")
    assert "gone" not in store.list_groups(), "an all-ghost scope is not listed"
    assert _indexed(store, "gone") == {}, "and its ghosts and scope entry were pruned"
    shard = _adapter(store)._codec.scope_shard_key("gone")
    assert "gone" not in records.load_shard(_adapter(store)._cluster.node(shard).get(shard), shard)


@pytest.mark.parametrize("first_key", [True, False], ids=["new-scope", "known-leaf"])
def test_a_pruner_racing_a_creator_cannot_unlist_the_new_value(
    store: StateStore, monkeypatch: pytest.MonkeyPatch, first_key: bool
) -> None:
    """The creator indexed the key; a listing sees no value yet and prunes the entry as a ghost;
    then the value is stored. The creator's re-check must put the entry back."""
    others = [] if first_key else ["other"]
    for key in others:
        store.set("race", key, 0)

    def listing_runs_first() -> None:
        assert store.list_keys("race") == others  # prunes the entry: no value yet
        assert "racer" not in _indexed(store, "race")
        assert ("race" in store.list_groups()) is not first_key  # an empty scope is pruned too

    _before_storing(store, monkeypatch, b"racer", listing_runs_first)
    store.set("race", "racer", 1)
    monkeypatch.undo()
    assert sorted(store.list_keys("race")) == sorted(["racer", *others])
    assert "race" in store.list_groups()


def test_a_delete_racing_a_create_keeps_the_new_entry_listed(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleter A removes the value, creator B stores a new one, then A unindexes: A only removes
    the entry if it still names A's generation, which B's indexing replaced."""
    store.set("dc", "k", "old")
    index = _adapter(store)._index
    real_drop = index.drop_entries

    def create_in_between(scope: str, entries: dict[str, int]) -> None:
        monkeypatch.setattr(index, "drop_entries", real_drop)
        assert store.set("dc", "k", "new").old_value is None
        real_drop(scope, entries)

    monkeypatch.setattr(index, "drop_entries", create_in_between)
    assert store.delete("dc", "k") == "old"
    assert store.list("dc") == ["new"]
    assert store.get("dc", "k") == "new"


def test_a_bad_cursor_is_a_clear_error(store: StateStore) -> None:
    store.set("c", "a", 1)
    adapter = _adapter(store)
    for bad in ("nonsense", "[-1, \"a\"]", "[18446744073709551616, \"a\"]", "[0, 1]", "[true, \"a\"]"):
        with pytest.raises(Exception, match="cursor"):
            adapter.scan("c", bad, 10)


def test_a_walk_keeps_nothing_per_key_in_the_process(store: StateStore) -> None:
    """A walk's memory is bounded by the page: it must not fill the pair-encoding cache of the
    hot paths with every key it lists (that cache alone made a 100,000-key walk peak at 19
    times a 1,000-key one)."""
    for i in range(1500):
        store.set("walked", f"k{i}", i)
    cache = _adapter(store)._codec.data_key
    cache.cache_clear()
    assert len(_walk(store, "walked", 100)) == 1500
    assert cache.cache_info().currsize < 100


def test_list_entries_counts_the_scope_from_its_index_without_reading_values(
    memcached_config: dict[str, Any],
    open_memcached: Callable[..., StateStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first page's ``total`` comes from the adapter's ``count`` (index leaves plus a presence
    probe), not from the core walking every value; a ghost and a hashed key are counted right."""
    store = open_memcached(memcached_config["servers"])
    adapter = _adapter(store)
    long_key = "L" * 400  # too long to encode: a hashed data key
    for i in range(300):
        store.set("counted", f"k{i:03d}", i)
    store.set("counted", long_key, "long")
    # a value gone behind the index's back (evicted): indexed, not counted
    mc_key = adapter._codec.data_key("counted", "k007")
    node = adapter._cluster.node(mc_key)
    assert node.delete(mc_key, node.gets(mc_key)[1]) is True
    assert adapter.count("counted") == 300
    assert adapter.count("never-written") == 0

    scans: list[object] = []
    real_scan = adapter.scan
    monkeypatch.setattr(adapter, "scan", lambda *args: scans.append(args) or real_scan(*args))
    page = store.list_entries("counted", None, 10)
    assert page.total == 300 and len(page.entries) == 10
    assert len(scans) == 1, "the page was scanned once; the total did not walk the values"


def test_a_count_probes_again_only_what_the_servers_counters_say_may_have_changed(
    memcached_config: dict[str, Any],
    open_memcached: Callable[..., StateStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A count probes each key once; later counts of unchanged leaves probe only the keys not
    found lasting, and stay exact through what leaves no trace in a leaf: a value deleted
    behind the index (a crashed delete), a lasting entry given a deadline that then passes, and
    a value stored late for an entry that was a ghost."""
    store = open_memcached(memcached_config["servers"])
    adapter = _adapter(store)
    codec, cluster = adapter._codec, adapter._cluster
    for i in range(30):
        store.set("trusted", f"k{i:02d}", i)
    store.set("trusted", "L" * 400, "hashed")  # a hashed data key: its value is always read
    probed: list[int] = []
    real = cluster.remaining
    monkeypatch.setattr(cluster, "remaining", lambda keys: probed.append(len(keys)) or real(keys))
    assert adapter.count("trusted") == 31 and sum(probed) == 30
    probed.clear()
    assert adapter.count("trusted") == 31 and sum(probed) == 0, "nothing changed: nothing probed"

    mc_key = codec.data_key("trusted", "k05")  # deleted by a client that died before unindexing
    node = cluster.node(mc_key)
    assert node.delete(mc_key, node.gets(mc_key)[1]) is True
    assert adapter.count("trusted") == 30

    # lasting until now, given a deadline by each way a write can (the leaf does not change)
    ways: list[Callable[[str], object]] = [
        lambda key: store.set("trusted", key, 6, ttl_ms=40),
        lambda key: store.update("trusted", key, [{"type": "set", "path": "n", "value": 1}], ttl_ms=40),
        lambda key: store.expire("trusted", key, 40),
        lambda key: store.batch([{"op": "set", "scope": "trusted", "key": key, "value": 6, "ttl_ms": 40}]),
    ]
    for n, give_a_deadline in enumerate(ways):
        assert adapter.count("trusted") == 30 - n
        give_a_deadline(f"k{6 + n:02d}")
        time.sleep(0.08)
        assert store.get("trusted", f"k{6 + n:02d}") is None
        assert adapter.count("trusted") == 29 - n, f"way {n}"
    probed.clear()
    assert adapter.count("trusted") == 26 and sum(probed) == 5  # the expired four and k05, again

    # a ghost (a creator died between indexing and storing), then its value stored after all
    adapter._index.put_entry("trusted", "late", 7)
    assert adapter.count("trusted") == 26
    late = codec.data_key("trusted", "late")
    record = records.Record(b"trusted", b"late", 7, b"1", None)
    cluster.node(late).store(late, records.replaced(None, late, record), None)
    probed.clear()
    assert adapter.count("trusted") == 27 and sum(probed) == 6
    assert store.get("trusted", "late") == 1


def test_a_first_page_counts_from_the_counters_and_leaves_its_scan_read(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On one server, a first page's scan reads the server's counters with its leaves and the
    count after it starts from there: a scope at rest costs the scan's requests only. Its total
    still sees a value deleted behind the index; another scope's count reads its own."""
    adapter = _adapter(store)
    for i in range(150):
        store.set("handed", f"k{i:03d}", i)
    store.set("other", "a", 1)
    assert store.list_entries("handed", None, 100).total == 150  # probes: nothing trusted yet
    node = adapter._cluster.nodes[0]
    reads: list[str] = []
    for name in ("liveness", "get_many", "get_many_after_liveness", "remaining"):
        real = getattr(node, name)
        monkeypatch.setattr(node, name, lambda *a, _real=real, _name=name: reads.append(_name) or _real(*a))
    page = store.list_entries("handed", None, 100)
    assert page.total == 150 and len(page.entries) == 100
    assert reads == ["get_many_after_liveness", "get_many"], "leaves with the counters, then values"

    mc_key = adapter._codec.data_key("handed", "k010")  # deleted by a client that died before unindexing
    assert node.delete(mc_key, node.gets(mc_key)[1]) is True
    assert store.list_entries("handed", None, 100).total == 149
    store.list_entries("handed", None, 100)
    assert adapter.count("other") == 1 and adapter.count("handed") == 149


def test_the_presence_probe_answers_each_key_in_order(store: StateStore) -> None:
    """``remaining`` (the probe under ``count``): a lifetime per key in the keys' order, ``None``
    for a missing one, ``-1`` for one without a lifetime, over the all-lasting shortcut and the
    line-by-line reading alike, and across more than one request's worth of keys."""
    adapter = _adapter(store)
    for i in range(1200):
        store.set("probed", f"k{i:04d}", i)
    store.set("probed", "brief", 1, ttl_ms=600_000)
    codec, cluster = adapter._codec, adapter._cluster
    lasting = [codec.data_key("probed", f"k{i:04d}") for i in range(1200)]
    assert cluster.remaining(lasting) == [-1] * 1200
    absent, brief = codec.data_key("probed", "absent"), codec.data_key("probed", "brief")
    mixed = [lasting[0], absent, brief, *lasting[1:1100]]
    left = cluster.remaining(mixed)
    assert left[:2] == [-1, None] and left[3:] == [-1] * 1099
    assert left[2] is not None and left[2] > 600
    assert cluster.remaining([]) == []


def test_a_page_over_emptied_leaves_reads_them_in_batches(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leaves never merge: after most keys of a large scope are deleted a page still steps over
    their leaves, but several per request, not one round trip each."""
    keys = [f"{i:04d}-" + "x" * 400 for i in range(1500)]
    for key in keys:
        store.set("emptied", key, 1)
    for key in keys[5:]:
        store.delete("emptied", key)
    leaves = len(_leaves(store, "emptied"))
    assert leaves > 40
    node = _adapter(store)._index.home("emptied")
    reads: list[int] = []
    real = node.get_many
    monkeypatch.setattr(node, "get_many", lambda batch: reads.append(len(batch)) or real(batch))
    page = store.list_entries("emptied", None, 100)
    assert sorted(k for k, _ in page.entries) == keys[:5] and page.total == 5 and page.done
    # count and scan each walk every leaf, several per request (one each: 2 * leaves)
    assert len(reads) <= 2 * (leaves // 3 + 2), (len(reads), leaves)

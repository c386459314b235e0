"""The sweeper's bulk requests (issue 16, its CPU per event): cas-checked appends of many index
leaves in one request, index drops of a chunk from a warm and a cold process, quiet pipelined
stores, pipelined replies read in bulk, a chunk's second candidate of one pair resolved from the
chunk's own read, and the GIL hand-overs. Real memcached throughout."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from iii_state_memcached import pace, records
from iii_state_memcached.nodes import CasStore, Node, Stored

from iii_state_core import BackendError, StateStore, ValueTooLargeError, open_store
from iii_state_core.expiry import now_ms


@pytest.fixture
def store(memcached_servers: list[str], open_memcached: Callable[..., StateStore]) -> StateStore:
    return open_memcached(memcached_servers)


def _node(store: StateStore) -> Node:
    node: Node = store.adapter._cluster.nodes[0]  # type: ignore[attr-defined]
    return node


def _key(store: StateStore, name: str) -> bytes:
    prefix: bytes = store.adapter._codec.prefix  # type: ignore[attr-defined]
    return prefix + name.encode()


# -- node primitives ---------------------------------------------------------------------------


def test_store_many_appends_only_to_items_still_at_their_cas(store: StateStore) -> None:
    node = _node(store)
    a, b, c = _key(store, "qa"), _key(store, "qb"), _key(store, "qc")
    for key in (a, b, c):
        assert node.store(key, b"<" + key[-2:], None).ok
    (_, cas_a, _), (_, cas_b, _), (_, cas_c, _) = node.gets(a), node.gets(b), node.gets(c)
    assert cas_a is not None and cas_b is not None and cas_c is not None
    assert node.store(c, b"changed", cas_c).ok  # c moves on: its remembered cas is stale
    replies = node.store_many(
        [CasStore(a, b"+appended", cas_a), CasStore(b, b"whole", cas_b), CasStore(c, b"+late", cas_c)],
        append=[True, False, True],
    )
    first, second, third = replies
    assert isinstance(first, Stored) and first.ok
    assert isinstance(second, Stored) and second.ok
    assert isinstance(third, Stored) and not third.ok
    assert node.gets(a)[:2] == (b"<qa+appended", first.cas)  # the cas of the whole item
    assert node.gets(b)[:2] == (b"whole", second.cas)
    assert node.get(c) == b"changed"
    # a missing item is not created by an append
    gone = _key(store, "qgone")
    (reply,) = node.store_many([CasStore(gone, b"x", first.cas)], append=[True])
    assert isinstance(reply, Stored) and not reply.ok
    assert node.get(gone) is None


def test_set_all_stores_quietly_and_reports_a_refusal(store: StateStore) -> None:
    node = _node(store)
    items = [(_key(store, f"set{i}"), b"v%d" % i) for i in range(300)]
    node.set_all(items, 60)
    assert node.get_many([k for k, _ in items]) == dict(items)
    too_large = b"x" * (2 * 1024 * 1024)  # past the test server's item size limit
    with pytest.raises(BackendError, match="refused"):
        node.set_all([(_key(store, "big0"), b"small"), (_key(store, "big1"), too_large)], 60)
    # the refusal closed that connection; the next request is in step on another
    node.set_all([(_key(store, "after"), b"ok")], 60)
    assert node.get(_key(store, "after")) == b"ok"
    node.set_all([], 60)  # nothing to send: no request


def test_a_refused_store_in_a_pipeline_leaves_the_next_request_in_step(store: StateStore) -> None:
    node = _node(store)
    keys = [_key(store, f"add{i}") for i in range(3)]
    with pytest.raises(ValueTooLargeError):  # as pymemcache's reader raised it
        node.add_all([(keys[0], b"a"), (keys[1], b"x" * (2 * 1024 * 1024)), (keys[2], b"c")], 60)
    assert node.gets(keys[0])[0] == b"a"  # sent before the refusal: applied
    assert node.add_all([(keys[0], b"again"), (_key(store, "add9"), b"new")], 60) == [False, True]
    assert node.get(_key(store, "add9")) == b"new"


# -- the index's drops -------------------------------------------------------------------------


def _indexed(store: StateStore, scope: str) -> dict[str, int]:
    index = store.adapter._index  # type: ignore[attr-defined]
    step, found = index.leaves(scope), {}
    while (leaf := step()) is not None:
        found.update(index.entries_of(scope, leaf))
    return found


def _generations(store: StateStore, scope: str, keys: list[str]) -> dict[str, int]:
    adapter: Any = store.adapter
    out = {}
    for key in keys:
        mc_key = adapter._codec.data_key(scope, key)
        item = adapter._cluster.node(mc_key).get(mc_key)
        record = records.find(item, mc_key, scope.encode(), key.encode())
        assert record is not None
        out[key] = record.generation
    return out


def test_dropping_many_entries_from_a_warm_and_a_cold_process(
    memcached_servers: list[str], open_memcached: Callable[..., StateStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drops spread over many leaves (splits, compactions included) leave exactly the entries
    not dropped, whether the dropping process remembers the leaves (it wrote them) or not, and
    a drop naming another generation than the entry's leaves it listed."""
    writer = open_memcached(memcached_servers)
    keys = [f"key-{i:04d}" for i in range(1500)]
    for at in range(0, len(keys), 500):
        writer.set_many("s", {key: i for i, key in enumerate(keys[at : at + 500], at)})
    generations = _generations(writer, "s", keys)
    assert _indexed(writer, "s") == generations
    adapter: Any = writer.adapter
    assert len(_leaf_keys(writer, "s")) > 4  # spread over many leaves: the drops are too
    sent: list[bool] = []  # per leaf store of the drops: appended (or stored whole)
    real = Node.store_many

    def spying(node: Node, stores: list[CasStore], *, append: Any = None) -> Any:
        sent.extend(append or [False] * len(stores))
        return real(node, stores, append=append)

    monkeypatch.setattr(Node, "store_many", spying)
    # warm: the writer's own process remembers its leaves
    for at, size in [(0, 40), (40, 60), (100, 300), (400, 100), (500, 100)]:
        adapter._index.drop_entries("s", {key: generations[key] for key in keys[at : at + size]})
    # few records appended, many stored whole with the leaf, full leaves compacted: all ran
    assert True in sent and False in sent
    left = {key: generations[key] for key in keys[600:]}
    assert _indexed(writer, "s") == left
    # cold: another process over the same prefix knows no leaf
    cold: Any = open_store(adapter="memcached", adapter_config=_config_of(writer)).adapter
    try:
        stale = {keys[700]: generations[keys[700]] ^ 1}  # names another generation: kept
        cold._index.drop_entries("s", {**{key: generations[key] for key in keys[800:1400]}, **stale})
        left = {key: generations[key] for key in keys[600:800] + keys[1400:]}
        assert _indexed(writer, "s") == left
        # and the writer, whose remembered leaves are stale now, drops the rest but one
        adapter._index.drop_entries("s", {key: left[key] for key in list(left)[1:]})
        assert _indexed(writer, "s") == {keys[600]: generations[keys[600]]}
    finally:
        cold.close()


def _leaf_keys(store: StateStore, scope: str) -> list[bytes]:
    index = store.adapter._index  # type: ignore[attr-defined]
    step, found = index.leaves(scope), []
    while (leaf := step()) is not None:
        found.append(leaf.key)
    return found


def _config_of(store: StateStore) -> dict[str, Any]:
    adapter: Any = store.adapter
    return {
        "servers": [node.name for node in adapter._cluster.nodes],
        "key_prefix": adapter._codec.prefix.decode(),
    }


# -- a chunk's second candidate of one pair --------------------------------------------------------


@pytest.fixture
def sweeping(memcached_config: dict[str, Any]) -> Iterator[StateStore]:
    config = {"adapter": {"name": "memcached", "config": memcached_config}, "expiry_events": True}
    with open_store(config) as opened:
        assert opened._sweeper is not None
        opened._sweeper.stop()
        yield opened


@pytest.mark.parametrize("stale_first", [True, False], ids=["stale-first", "stale-second"])
def test_a_second_candidate_of_one_pair_in_a_chunk_costs_no_claim_of_its_own(
    sweeping: StateStore, ahead: list[int], stale_first: bool
) -> None:
    """A write that created its entry again after a lost race noted its deadline twice, with two
    generations: the chunk's read of the item tells which candidate names the record, and the
    other is settled without a claim of its own (before, it went alone: five round trips)."""
    adapter: Any = sweeping.adapter
    sched = adapter._schedule
    deadline = now_ms() + 10
    if stale_first:
        sched.note("s", "k", 12345, deadline)
    sweeping.set("s", "k", "v", ttl_ms=deadline - now_ms())
    sweeping.set("s", "other", "w", ttl_ms=10)
    mc_key = adapter._codec.data_key("s", "k")
    record = records.find(adapter._cluster.node(mc_key).get(mc_key), mc_key, b"s", b"k")
    assert record is not None and record.deadline is not None
    if not stale_first:
        sched.note("s", "k", record.generation ^ 1, record.deadline)
    else:
        sched.note("s", "k", 12345, record.deadline)  # the stale one, at the record's deadline
    ahead[0] = 1_000

    def alone(*_args: Any) -> Any:
        raise AssertionError("a candidate of a pair already in the chunk was claimed alone")

    adapter._lease = alone
    taken = adapter.take_expired(50)
    adapter.ack_expired(taken)
    assert sorted((k, v) for _, k, v, _ in taken) == [("k", b'"v"'), ("other", b'"w"')]
    assert adapter.take_expired(50) == []
    assert sweeping.get("s", "k") is None


# -- records and pace ------------------------------------------------------------------------------


def test_alone_reads_a_single_expiring_record_as_find_does_and_nothing_else() -> None:
    one = records.Record(b"scope", b"key", 7, b"value", 1_234)
    item = records.pack([one])
    assert records.alone(item, b"scope", b"key") == one == records.find(item, b"k", b"scope", b"key")
    assert records.pack([records.alone(item, b"scope", b"key")]) == item  # type: ignore[list-item]
    assert records.alone(item, b"scope", b"other") is None
    two = records.pack([one, records.Record(b"scope", b"k2", 8, b"v", 99)])
    assert records.alone(two, b"scope", b"key") is None  # shared with a colliding pair
    assert records.alone(records.pack([one._replace(deadline=None)]), b"scope", b"key") is None
    assert records.alone(item[:-1], b"scope", b"key") is None  # torn


def test_breathe_releases_the_gil_once_per_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [10**12]
    slept: list[float] = []
    monkeypatch.setattr(pace, "_clock", lambda: clock[0])
    monkeypatch.setattr(pace, "_sleep", slept.append)
    monkeypatch.setattr(pace, "_last", [clock[0]])
    pace.breathe()
    clock[0] += pace.SLICE_NS - 1
    pace.breathe()
    assert slept == []
    clock[0] += 1
    pace.breathe()
    pace.breathe()
    assert slept == [0]
    clock[0] += pace.SLICE_NS
    pace.breathe()
    assert slept == [0, 0]

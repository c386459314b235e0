"""Decision 0022: a count keeps trusting its last probe across deletes made through iii-state
(any process of the store), and probes again after any delete it cannot account for."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from iii_state_memcached.nodes import OutOfMemoryError
from pymemcache.client.base import Client  # type: ignore[import-untyped]

from iii_state_core import StateStore, UnknownOutcomeError, open_store


@pytest.fixture
def two_processes(memcached_config: dict[str, Any]) -> Iterator[tuple[StateStore, StateStore]]:
    """Two stores over the same servers and prefix: what two worker replicas are."""
    counting = open_store(adapter="memcached", adapter_config=memcached_config)
    deleting = open_store(adapter="memcached", adapter_config=memcached_config)
    yield counting, deleting
    deleting.close()
    counting.close()


def _adapter(store: StateStore) -> Any:
    return store.adapter


def _ended(store: StateStore) -> None:
    """Let ``store``'s tracked deletes be ended: its next request to each server reads the
    replies of the ends it sent without waiting (another process's count may find a delete in
    flight until the server has run its end, and then probes)."""
    for node in _adapter(store)._cluster.nodes:
        node.stats()


def _raw_delete(adapter: Any, mc_key: bytes, node: Any = None) -> bool:
    """Delete an item as another program would: plain pymemcache, no iii-state bookkeeping."""
    host, _, port = (node or adapter._cluster.node(mc_key)).name.rpartition(":")
    client = Client((host, int(port)), default_noreply=False)
    try:
        return bool(client.delete(mc_key, noreply=False))
    finally:
        client.close()


def test_a_count_trusts_tracked_deletes_and_probes_after_any_other(
    two_processes: tuple[StateStore, StateStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    counting, deleting = two_processes
    adapter: Any = counting.adapter
    codec = adapter._codec
    for i in range(40):
        counting.set("listed", f"k{i:02d}", i)
    for i in range(6):
        counting.set("other", f"o{i}", i)
    probed: list[int] = []
    real = adapter._cluster.remaining
    monkeypatch.setattr(adapter._cluster, "remaining", lambda keys: probed.append(len(keys)) or real(keys))

    def delete(scope: str, key: str) -> Any:
        value = deleting.delete(scope, key)
        _ended(deleting)
        return value

    def count() -> tuple[int, int]:
        probed.clear()
        return adapter.count("listed"), sum(probed)

    assert count() == (40, 40)
    assert count() == (40, 0)

    # deletes through iii-state, from another process: in another scope, nothing to probe; in
    # this one, only the leaf that changed (one leaf here) — and exact
    assert delete("other", "o0") == 0
    assert count() == (40, 0), "a tracked delete in another scope is not a reason to probe"
    assert delete("listed", "k00") == 0
    assert count() == (39, 39)
    assert delete("other", "o1") == 1
    assert delete("other", "o2") == 2
    assert count() == (39, 0)
    # an item no index entry names, deleted by the adapter's bookkeeping (a swept schedule
    # slot, a claimed stash, an emptied scope shard): counted, so no reason to probe either
    slot = codec.prefix + b"x-test"
    node = _adapter(deleting)._cluster.node(slot)
    assert node.store(slot, b"1", None).ok
    assert node.delete_counted(slot, node.gets(slot)[1]) is True
    _ended(deleting)
    assert count() == (39, 0)

    # another program deletes a listed value (the index still lists it): seen, by probing
    assert _raw_delete(adapter, codec.data_key("listed", "k05"))
    assert count() == (38, 39)
    assert count() == (38, 1), "the ghost is probed each count; the rest is trusted again"
    # another program deletes anything on the servers: probe again, still exact
    assert _raw_delete(adapter, codec.data_key("other", "o3"))
    assert count() == (38, 39)

    # a tracked delete that did not reach the index (its unindexing failed): seen
    unindex = _adapter(deleting)._index
    failing = lambda *_a: (_ for _ in ()).throw(RuntimeError("index down"))  # noqa: E731
    with monkeypatch.context() as patch:
        patch.setattr(unindex, "drop_entries", failing)
        assert delete("listed", "k06") == 6
    assert count() == (37, 39)

    # a lasting entry given a deadline after tracked deletes: the deadline signal still counts
    assert count() == (37, 2)
    assert delete("other", "o4") == 4
    deleting.set("listed", "k20", 20, ttl_ms=40)
    _ended(deleting)
    time.sleep(0.08)
    assert count()[0] == 36

    # the delete counter itself deleted (or evicted) by something else: probe, still exact
    assert count()[1] == 3
    nodes = adapter._cluster.nodes
    assert any([_raw_delete(adapter, codec.removes_key, node) for node in nodes])
    assert count() == (36, 39)
    assert delete("other", "o5") == 5  # recreates the counter: probe once more, then trust
    assert count()[0] == 36
    assert count() == (36, 3)


def test_a_delete_begun_and_never_ended_makes_counts_probe(
    two_processes: tuple[StateStore, StateStore],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A process killed between deleting a value and unindexing it: the delete was begun on
    the server's counter and never ended, so every count probes (and stays exact) until it is."""
    counting, deleting = two_processes
    adapter: Any = counting.adapter
    for i in range(20):
        counting.set("crash", f"k{i:02d}", i)
    probed: list[int] = []
    real = adapter._cluster.remaining
    monkeypatch.setattr(adapter._cluster, "remaining", lambda keys: probed.append(len(keys)) or real(keys))
    assert adapter.count("crash") == 20 and adapter.count("crash") == 20
    probed.clear()
    assert adapter.count("crash") == 20 and sum(probed) == 0

    mc_key = _adapter(deleting)._codec.data_key("crash", "k03")
    node = _adapter(deleting)._cluster.node(mc_key)
    assert node.delete_tracked(mc_key, node.gets(mc_key)[1]) is True  # ...and the process dies
    for _ in range(2):
        probed.clear()
        assert adapter.count("crash") == 19 and sum(probed) == 20
    node.end_tracked(reflected=False)  # (this shared server's counter back to rest)
    _ended(deleting)
    probed.clear()
    assert adapter.count("crash") == 19 and sum(probed) == 20
    probed.clear()
    assert adapter.count("crash") == 19 and sum(probed) == 1  # only the ghost

    # an end whose reply is not read at once: its error (the counter gone) is read, and
    # logged, by the next request on that connection, which still gets its own reply
    assert _raw_delete(_adapter(deleting), _adapter(deleting)._codec.removes_key, node)
    node.end_tracked(reflected=True)
    with caplog.at_level("WARNING", logger="iii_state.memcached"):
        assert _adapter(deleting).count("crash") == 19
    assert "unexpected reply ending a delete" in caplog.text
    assert deleting.get("crash", "k04") == 4


def test_a_refused_begin_reports_the_delete_as_unknown(
    two_processes: tuple[StateStore, StateStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The begin and the ``md`` go in one request: when the server refuses the begin (no memory
    to create the counter), the ``md`` still ran, so the delete is an unknown outcome, never a
    refusal that changed nothing."""
    store = two_processes[0]
    store.set("refused", "k", 1)
    adapter = _adapter(store)
    node = adapter._cluster.node(adapter._codec.data_key("refused", "k"))
    real = node._send_all

    def begin_refused(conn: Any, op: str, commands: list[bytes]) -> list[bytes]:
        replies = real(conn, op, commands)
        if commands[0].startswith(b"ma ") and len(commands) == 2:
            raise OutOfMemoryError("memcached is out of memory: the delete was refused")
        return replies

    monkeypatch.setattr(node, "_send_all", begin_refused)
    with pytest.raises(UnknownOutcomeError, match="may or may not have been applied"):
        store.delete("refused", "k")
    monkeypatch.undo()
    assert store.get("refused", "k") is None

"""The sweeper's pipelined claims and its resume (issue 16): a sweep stopped at its limit goes on
where it stopped, claims batched per slot stay exactly-once against racing writers and failures,
and a candidate a sweeper skipped as its own lease comes up again. Real memcached; the adapter's
clock is moved instead of sleeping through leases."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from iii_state_memcached import nodes, schedule

from iii_state_core import BackendError, StateStore, open_store
from iii_state_core.expiry import now_ms


@pytest.fixture
def stores(memcached_config: dict[str, Any]) -> Iterator[list[StateStore]]:
    """Two stores with expiry events over the same servers and prefix, sweepers stopped."""
    config = {
        "adapter": {"name": "memcached", "config": memcached_config},
        "expiry_events": True,
    }
    with open_store(config) as one, open_store(config) as two:
        for store in (one, two):
            assert store._sweeper is not None
            store._sweeper.stop()
        yield [one, two]


def _walked(adapter: Any) -> list[Any]:
    """Record every candidate handed to the adapter's claims (``_lease_many``)."""
    seen: list[Any] = []
    claim = adapter._lease_many

    def counting(candidates: Any, until: int) -> Any:
        seen.extend(candidates)
        return claim(candidates, until)

    adapter._lease_many = counting
    return seen


def _scheduled(adapter: Any, around: int) -> list[Any]:
    """Every candidate in the schedule's slot items within 2 s of ``around`` (epoch ms)."""
    sched = adapter._schedule
    first = (around - 2_000) // schedule.SLOT_MS
    keys = [sched.codec.slot_key(slot) for slot in range(first, first + 16_000 // schedule.SLOT_MS)]
    found = sched.cluster.get_many(keys)
    return [c for key in keys if key in found for c in schedule._parse(found[key])[0]]


def _expired(store: StateStore, count: int, ahead: list[int]) -> None:
    """Entries ``k0``… of scope ``s`` written with a 10 ms TTL, the clock then moved 1 s on: all
    expired, their slots due. Written from the start of a schedule slot, so they share one slot
    (on a busy machine six writes could straddle two, and the first slot's chunk of one was then
    claimed on its own: a test failing a chunk's request saw that one claim succeed)."""
    time.sleep(((-(now_ms() + 10)) % schedule.SLOT_MS + 2) / 1000)
    for i in range(count):
        store.set("s", f"k{i}", i, ttl_ms=10)
    ahead[0] = 1_000


def test_a_sweep_stopped_at_its_limit_goes_on_where_it_stopped(
    stores: list[StateStore], ahead: list[int]
) -> None:
    store = stores[0]
    adapter: Any = store.adapter
    written = now_ms()
    for i in range(12):
        store.set("s", f"k{i:02d}", i, ttl_ms=10)
    scheduled = _scheduled(adapter, written)
    assert sorted({c.key for c in scheduled}) == [f"k{i:02d}" for i in range(12)]
    ahead[0] = 1_000  # their slots are due
    walked = _walked(adapter)
    taken = []
    for _ in range(3):
        batch = adapter.take_expired(5)
        adapter.ack_expired(batch)
        taken += batch
    assert sorted(k for _, k, _, _ in taken) == [f"k{i:02d}" for i in range(12)]
    # each candidate handed to a claim once: a stopped walk does not start its slot again (the
    # schedule may hold a key twice: a write that retried noted its deadline again)
    assert sorted(walked) == sorted(scheduled), [c.key for c in walked]
    assert adapter.take_expired(5) == []


def test_a_resumed_slot_recreated_after_its_delete_is_walked_from_its_start(
    stores: list[StateStore], ahead: list[int]
) -> None:
    store = stores[0]
    adapter: Any = store.adapter
    store.set("s", "a", 1, ttl_ms=10)
    ahead[0] = 1_000
    assert [k for _, k, _, _ in adapter.take_expired(5)] == ["a"]  # its slot walked and deleted
    # a late candidate lands in that slot again (a writer between choosing a deadline and
    # appending): a new, shorter item the remembered offset must not skip into
    mc_key = adapter._codec.data_key("s", "a")
    item = adapter._cluster.node(mc_key).get(mc_key)
    assert item is None
    store.set("s", "b", 2, ttl_ms=10)
    ahead[0] = 2_000
    assert [k for _, k, _, _ in adapter.take_expired(5)] == ["b"]


def test_pipelined_takes_losing_to_a_writer_deliver_each_expiry_once(
    stores: list[StateStore], ahead: list[int]
) -> None:
    """A writer replaces some expired entries between the sweep's read of their items and its
    takes: those takes lose their cas race and the writer's values stay; every expiry is still
    delivered exactly once (the sweeper's stash came first, the writer's finds it)."""
    store, other = stores
    adapter: Any = store.adapter
    _expired(store, 10, ahead)
    real = nodes.Node.delete_tracked_many
    raced: list[bool] = []

    def racing(self: nodes.Node, deletes: list[tuple[bytes, bytes]]) -> list[bool]:
        if not raced:
            raced.append(True)
            for i in range(0, 10, 3):  # after the stashes were added, before the takes
                assert other.set("s", f"k{i}", f"new{i}").old_value is None  # expired: missing
        return real(self, deletes)

    nodes.Node.delete_tracked_many = racing  # type: ignore[method-assign]
    try:
        first = adapter.take_expired(100)
    finally:
        nodes.Node.delete_tracked_many = real  # type: ignore[method-assign]
    adapter.ack_expired(first)
    assert raced
    ahead[0] = 30_000  # every lease and every writer's stash candidate is due
    later = []
    for sweeper in (adapter, other.adapter, adapter):
        batch = sweeper.take_expired(100)
        sweeper.ack_expired(batch)
        later += batch
    # mostly claimed by the racing sweep (its stashes came first); a key whose only claimable
    # candidate the sweep had not reached before the writer came is the writer's stash, later
    assert len(first) >= 6
    delivered = sorted((k, v) for _, k, v, _ in first + later)
    assert delivered == sorted((f"k{i}", b"%d" % i) for i in range(10))
    for i in range(10):
        assert store.get("s", f"k{i}") == (f"new{i}" if i % 3 == 0 else None)
    assert sorted(store.list_keys("s")) == sorted(f"k{i}" for i in range(0, 10, 3))


def test_pipelined_claims_racing_a_writer_thread_and_another_sweeper_are_exactly_once(
    stores: list[StateStore], ahead: list[int]
) -> None:
    one, two = stores
    count = 300
    for i in range(count):
        one.set("s", f"k{i}", i, ttl_ms=10)
    ahead[0] = 1_000
    delivered: list[tuple[str, bytes]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set() and i < count:
            two.set("s", f"k{i}", f"new{i}")  # replaces an expired entry (stashing it) or a new value
            i += 7

    def sweep(store: StateStore) -> None:
        adapter: Any = store.adapter
        while not stop.is_set():
            batch = adapter.take_expired(40)
            adapter.ack_expired(batch)
            with lock:
                delivered.extend((k, v) for _, k, v, _ in batch)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=sweep, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    threads[0].join()
    ahead[0] = 30_000  # the writer's stashes' candidates come due
    for _ in range(200):
        with lock:
            if len(delivered) >= count:
                break
        stop.wait(0.02)
    stop.set()
    for thread in threads[1:]:
        thread.join()
    for store in stores + stores:  # what a slow machine left: drained here, then nothing more
        adapter: Any = store.adapter
        batch = adapter.take_expired(1000)
        adapter.ack_expired(batch)
        delivered.extend((k, v) for _, k, v, _ in batch)
    for store in stores:
        assert store.adapter.take_expired(1000) == []
    assert sorted(delivered) == sorted((f"k{i}", b"%d" % i) for i in range(count))


def test_a_take_failing_inside_the_pipeline_loses_nothing(stores: list[StateStore], ahead: list[int]) -> None:
    """The takes' request fails after the leased stashes were added: nothing is returned, and
    once the leases lapse each expiry is delivered once."""
    store, other = stores
    adapter: Any = store.adapter
    _expired(store, 6, ahead)
    real = nodes.Node.delete_tracked_many

    def failing(self: nodes.Node, deletes: list[tuple[bytes, bytes]]) -> list[bool]:
        raise BackendError("memcached: connection reset (injected)")

    nodes.Node.delete_tracked_many = failing  # type: ignore[method-assign]
    try:
        with pytest.raises(BackendError):
            adapter.take_expired(100)
    finally:
        nodes.Node.delete_tracked_many = real  # type: ignore[method-assign]
    # stashed under the failed sweep's leases: held until they lapse (a key the schedule named
    # twice may be claimed through its second candidate, which the failed sweep never reached)
    now = other.adapter.take_expired(100)
    other.adapter.ack_expired(now)
    assert len(now) <= 1
    ahead[0] = 30_000
    again = other.adapter.take_expired(100)
    other.adapter.ack_expired(again)
    assert sorted((k, v) for _, k, v, _ in now + again) == [(f"k{i}", b"%d" % i) for i in range(6)]
    ahead[0] = 60_000
    assert adapter.take_expired(100) == [] and other.adapter.take_expired(100) == []


def test_an_own_unacknowledged_lease_skipped_by_its_sweeper_comes_up_again(
    stores: list[StateStore], ahead: list[int]
) -> None:
    """A sweeper meets the candidate of its own lease before acknowledging it (its ack failed):
    it leaves it, but the candidate is not consumed with its slot, so another sweeper claims it
    once the lease has lapsed."""
    store, other = stores
    adapter: Any = store.adapter
    store.set("s", "k", "v", ttl_ms=10)
    ahead[0] = 1_000
    taken = adapter.take_expired(10)
    assert [k for _, k, _, _ in taken] == ["k"]  # never acknowledged
    ahead[0] = 12_000  # the lease lapsed: its candidate is due
    assert adapter.take_expired(10) == []  # its own: left alone
    ahead[0] = 24_000
    again = other.adapter.take_expired(10)
    assert [(k, v) for _, k, v, _ in again] == [("k", b'"v"')]

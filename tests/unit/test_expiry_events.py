"""contract § Expiry, expiry events: the sweeper of the sync and async stores, its config, its
failures, and the kv stores' ``take_expired`` keeping what a write meets past its deadline."""

from __future__ import annotations

import asyncio
import copy
import logging
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import FrozenInstanceError, fields, replace
from pathlib import Path
from typing import Any

import pytest
from iii_state_conformance.cpu_load import CpuLoad, wait_until
from iii_state_kvfile.memory_store import KvMemoryStore

from iii_state_core import ConfigError, StateStore, open_async_store, open_store
from iii_state_core.config import StateConfig
from iii_state_core.events import EventBus, Subscription
from iii_state_core.operations import Limits
from iii_state_core.results import StateEvent

#: kv declares 500 ms; a loaded CI machine gets some slack on top.
PATIENCE_S = 3.0


def _file_config(directory: Path, **extra: Any) -> dict[str, Any]:
    return {
        "adapter": {"name": "kv", "config": {"store_method": "file_based", "file_path": str(directory)}},
        "expiry_events": True,
        **extra,
    }


def _wait_for(condition: Callable[[], bool], timeout: float = PATIENCE_S) -> bool:
    return wait_until(condition, timeout)


def _expired(seen: list[StateEvent]) -> list[tuple[str, str, Any, Any]]:
    return [(e.scope, e.key, e.old_value, e.new_value) for e in seen if e.event_type == "state:expired"]


def test_an_expiry_is_one_state_expired_event_with_the_value_it_held(tmp_path: Path) -> None:
    seen: list[StateEvent] = []
    with open_store(_file_config(tmp_path / "kv")) as store:
        store.on_change(seen.append)
        store.set("s", "gone", {"n": 1}, ttl_ms=30)
        store.set("s", "kept", 2, ttl_ms=60_000)
        written = time.monotonic()
        assert _wait_for(lambda: bool(_expired(seen)))
        delay = time.monotonic() - written - 0.03
        load = CpuLoad()
        load.sleep(0.6)  # a later sweep must not deliver it again
        assert _expired(seen) == [("s", "gone", {"n": 1}, None)]
        # kv declares 0.5 s; the slack stretches with the CPU load (1 on an idle machine)
        allowed = 0.5 + 0.5 * load.factor()
        assert delay < allowed, f"the event came {delay:.2f} s after the deadline (allowed {allowed:.2f} s)"
        assert store.get("s", "kept") == 2


def test_an_expiry_met_by_a_write_before_the_sweep_is_still_delivered(tmp_path: Path) -> None:
    seen: list[StateEvent] = []
    # writes over and deletes of expired entries before the sweeper ran must not lose their events
    with open_store(_file_config(tmp_path / "kv")) as sweeping:
        assert sweeping._sweeper is not None
        sweeping._sweeper.stop()  # hold this one's sweeper back until the writes are done
        sweeping.on_change(seen.append)
        sweeping.set("s", "k", "old", ttl_ms=20)
        sweeping.set("s", "d", "doomed", ttl_ms=20)
        time.sleep(0.04)
        assert sweeping.set("s", "k", "new").old_value is None  # missing: it expired
        assert sweeping.delete("s", "d") is None
        assert sweeping._sweeper.sweep() == 2
        assert sorted(_expired(seen)) == [("s", "d", "doomed", None), ("s", "k", "old", None)]
        assert sweeping.get("s", "k") == "new"


def test_an_expiry_while_no_store_was_open_is_delivered_by_the_next_one(tmp_path: Path) -> None:
    config = _file_config(tmp_path / "kv")
    with open_store({**config, "expiry_events": False}) as first:
        first.set("s", "k", [1, 2], ttl_ms=20)
    time.sleep(0.05)
    seen: list[StateEvent] = []
    with open_store(config) as second:
        # subscribed right after opening: the first sweep comes one poll interval later
        second.on_change(seen.append)
        assert _wait_for(lambda: bool(_expired(seen)))
    assert _expired(seen) == [("s", "k", [1, 2], None)]


def test_the_sweeper_survives_failing_handlers_and_stops_with_the_store(tmp_path: Path) -> None:
    seen: list[StateEvent] = []

    def fails(event: StateEvent) -> None:
        raise RuntimeError("handler bug")

    with open_store(_file_config(tmp_path / "kv")) as store:
        store.on_change(fails)
        store.on_change(seen.append)
        store.set("s", "a", 1, ttl_ms=10)
        assert _wait_for(lambda: len(_expired(seen)) == 1)
        store.set("s", "b", 2, ttl_ms=10)
        assert _wait_for(lambda: len(_expired(seen)) == 2)
        sweeper = store._sweeper
        assert sweeper is not None
    assert not sweeper._thread.is_alive()
    assert not any(t.name == "iii-state-expiry" and t is sweeper._thread for t in threading.enumerate())


class FlakyMemoryStore(KvMemoryStore):
    """take_expired fails twice with a message holding the password, then works."""

    failures = 2

    def secrets(self) -> list[str]:
        return ["hunter2-very-secret"]

    def take_expired(self, limit: int) -> Any:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("auth hunter2-very-secret refused")
        return super().take_expired(limit)


def test_take_expired_errors_are_logged_without_secrets_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    adapter = FlakyMemoryStore()
    limits = Limits(capabilities=adapter.capabilities, adapter_name="kv")
    seen: list[StateEvent] = []
    with caplog.at_level(logging.DEBUG, logger="iii_state.expiry"):
        with StateStore(adapter, limits, EventBus(), settings=StateConfig(expiry_events=True)) as store:
            store.on_change(seen.append)
            store.set("s", "k", 1, ttl_ms=10)
            assert _wait_for(lambda: bool(_expired(seen)))
    text = caplog.text
    assert "hunter2" not in text and "***" in text and "retrying in" in text
    assert _expired(seen) == [("s", "k", 1, None)]


def test_after_a_long_outage_the_sweeper_tries_again_within_seconds() -> None:
    """The back-off doubles per failed take up to 5 s (not 30: a sweeper that met a restarting
    server must deliver what expired meanwhile soon after it answers), and a success resets it."""
    from iii_state_core.sweeper import MAX_BACKOFF_S, Backoff

    backoff = Backoff(0.25, "kv", [])
    waits = []
    for _ in range(12):
        backoff.failed(ConnectionError("down"))
        waits.append(backoff.wait)
    assert waits[:4] == [0.5, 1.0, 2.0, 4.0] and max(waits) == MAX_BACKOFF_S == 5.0
    backoff.succeeded()
    assert backoff.wait == 0.25


def test_expiry_events_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="'expiry_events' must be"):
        open_store({"adapter": {"name": "kv"}, "expiry_events": "yes"})
    with pytest.raises(ConfigError, match="needs events, but 'triggers_enabled' is false"):
        open_store({"adapter": {"name": "kv"}, "expiry_events": True, "triggers_enabled": False})


class NoTakeStore(KvMemoryStore):
    capabilities = replace(KvMemoryStore.capabilities, expiry_event_delay_ms=None)


def test_expiry_events_are_refused_for_an_adapter_that_cannot_take_expired() -> None:
    import sys

    from iii_state_core.plugins import Registry

    module = sys.modules[__name__]

    class NoTtlStore(KvMemoryStore):
        name = "nottl"
        capabilities = replace(KvMemoryStore.capabilities, ttl="none", expiry_event_delay_ms=None)

    NoTakeStore.name = "notake"
    for cls, says in ((NoTakeStore, "cannot take expired entries"), (NoTtlStore, "has no entry expiry")):
        registry = Registry(load_entry_points=False)
        registry._register(cls, module.__name__)
        with pytest.raises(ConfigError, match=says) as info:
            open_store({"adapter": {"name": cls.name}, "expiry_events": True}, registry=registry)
        assert "remove expiry_events" in str(info.value)
        with open_store({"adapter": {"name": cls.name}}, registry=registry) as store:  # off: fine
            assert store._sweeper is None


def test_the_async_store_sweeps_on_its_loop_and_stops_on_close(tmp_path: Path) -> None:
    async def main() -> list[StateEvent]:
        seen: list[StateEvent] = []

        async def record(event: StateEvent) -> None:
            seen.append(event)

        store = open_async_store(_file_config(tmp_path / "kv"))
        store.on_change(record)
        await store.set("s", "k", "v", ttl_ms=20)
        for _ in range(300):
            if _expired(seen):
                break
            await asyncio.sleep(0.01)
        sweeper = store._sweeper
        await store.close()
        assert sweeper is not None and sweeper.task is not None and sweeper.task.done()
        return seen

    assert _expired(asyncio.run(main())) == [("s", "k", "v", None)]


def test_the_memory_store_delivers_expiry_events() -> None:
    seen: list[StateEvent] = []
    config = {"adapter": {"name": "kv", "config": {"store_method": "in_memory"}}, "expiry_events": True}
    with open_store(config) as store:
        store.on_change(seen.append, scope="s")
        store.set("s", "k", True, ttl_ms=10)
        store.set("other", "k", 1, ttl_ms=10)
        assert _wait_for(lambda: bool(_expired(seen)))
        time.sleep(0.3)
    assert _expired(seen) == [("s", "k", True, None)]


def test_the_async_store_sweeps_on_each_loop_it_serves_in_turn(tmp_path: Path) -> None:
    """``asyncio.run`` twice over one async store: the sweeper follows it to the second loop."""
    store = open_async_store(_file_config(tmp_path / "kv"))
    seen: list[StateEvent] = []
    store.on_change(seen.append)

    async def expire(key: str, close: bool = False) -> None:
        await store.set("s", key, key, ttl_ms=10)
        for _ in range(300):
            if len(_expired(seen)) == (2 if close else 1):
                break
            await asyncio.sleep(0.01)
        if close:
            await store.close()

    asyncio.run(expire("first"))
    asyncio.run(expire("second", close=True))
    assert _expired(seen) == [("s", "first", "first", None), ("s", "second", "second", None)]


def test_one_sweep_delivers_each_expiry_and_its_reactions_before_the_next(tmp_path: Path) -> None:
    # the sweeper delivers a batch in one call; reactions must still follow their own event, filters
    # still hold, and entries nothing listens to are taken (not left to be delivered twice)
    order: list[tuple[str, str, str]] = []
    with open_store(_file_config(tmp_path / "kv")) as store:
        assert store._sweeper is not None
        store._sweeper.stop()

        def react(event: StateEvent) -> None:
            order.append((event.event_type, event.scope, event.key))
            if event.event_type == "state:expired":
                store.set("log", event.key, event.old_value)

        store.on_change(react, scope="s")
        store.on_change(lambda e: order.append((e.event_type, e.scope, e.key)), scope="log")
        store.on_change(lambda e: order.append(("only-b", e.scope, e.key)), key="b")
        for key in ("a", "b"):
            store.set("s", key, key, ttl_ms=20)
        store.set("unwatched", "x", 1, ttl_ms=20)
        order.clear()
        time.sleep(0.04)
        assert store._sweeper.sweep() == 3
        assert order == [
            ("state:expired", "s", "a"), ("state:created", "log", "a"),
            ("state:expired", "s", "b"), ("only-b", "s", "b"), ("state:created", "log", "b"),
            ("only-b", "log", "b"),
        ]  # fmt: skip
        assert store._sweeper.sweep() == 0  # the unwatched one was taken too
        assert store.get("log", "b") == "b"


def test_wanted_names_the_events_that_reach_something() -> None:
    bus = EventBus()
    assert bus.wanted() is not None and not bus.wanted()("s", "k")  # type: ignore[misc]
    bus.subscribe(Subscription(print, "s"))
    wanted = bus.wanted()
    assert wanted is not None and wanted("s", "k") and not wanted("t", "k")
    assert EventBus(hook=print).wanted() is None  # the plugin hook sees every event
    assert not EventBus(enabled=False).wanted()("s", "k")  # type: ignore[misc]
    bus.subscribe(Subscription(print, "u"))  # scope filters only: answered by one set
    wanted = bus.wanted()
    assert wanted is not None and wanted("s", "x") and wanted("u", "k") and not wanted("t", "k")
    assert bus.wanted_scopes() == frozenset({"s", "u"})  # the same answer per scope, for a whole batch
    bus.subscribe(Subscription(print, "t", "only"))  # a key filter too
    wanted = bus.wanted()
    assert wanted is not None and wanted("s", "x") and wanted("t", "only") and not wanted("t", "k")
    assert bus.wanted_scopes() is None  # key by key: ask wanted()
    assert EventBus().wanted_scopes() == frozenset() == EventBus(enabled=False).wanted_scopes()
    assert EventBus(hook=print).wanted_scopes() is None
    everything = EventBus()
    everything.subscribe(Subscription(print))
    assert everything.wanted_scopes() is None and everything.wanted() is None


def test_a_batch_goes_to_the_scopes_watched_whatever_their_order() -> None:
    """``wanted_events`` sorts a batch by its scopes: all of it when every scope is watched, the
    watched scopes' entries in order otherwise, none when nothing listens."""
    from iii_state_core.sweeper import wanted_events

    batch = [("a", "1", b"1", 5), ("b", "2", b"2", 6), ("a", "3", b"3", 7), ("c", "4", b"4", 8)]
    bus = EventBus()
    assert wanted_events(batch, bus) == []
    bus.subscribe(Subscription(print, "a"))
    assert [(e.scope, e.key) for e in wanted_events(batch, bus)] == [("a", "1"), ("a", "3")]
    bus.subscribe(Subscription(print, "b"))
    bus.subscribe(Subscription(print, "c"))
    assert [(e.scope, e.key, e.old_value) for e in wanted_events(batch, bus)] == [
        ("a", "1", 1), ("b", "2", 2), ("a", "3", 3), ("c", "4", 4)
    ]  # fmt: skip
    bus.subscribe(Subscription(print, "c", "9"))  # a key filter: entry by entry
    assert [e.key for e in wanted_events(batch, bus)] == ["1", "2", "3", "4"]


def test_a_batch_of_expired_events_is_each_entry_s_own_event(caplog: pytest.LogCaptureFixture) -> None:
    """The sweeper builds a batch's events in bulk (values decoded together, each scope's part of
    the ids hashed once, each event built unfrozen and then made a ``StateEvent``): exactly what
    building each one alone gives, for several scopes, keys outside ASCII or with a NUL, and
    stored bytes that are not JSON (``old_value`` null, logged); frozen, hashable, picklable."""
    from iii_state_core.sweeper import _Unfrozen, expired_event, expired_events, expiry_id

    assert _Unfrozen.__slots__ == tuple(field.name for field in fields(StateEvent))  # none left unset

    entries = [
        ("s", "a", b'{"n":1}', 1_765_000_000_000),
        ("t", "a", b"[1, 2]", 1_765_000_000_000),
        ("s", "b\u00e9\ud800", b'"x"', 1_765_000_000_001),
        ("\u00fc", "a", b"null", 2),
        ("s", "a", b'{"n":2}', 1_765_000_000_002),
    ]
    events = expired_events(entries)
    assert [repr(e) for e in events] == [repr(expired_event(entry)) for entry in entries]
    nul = ("s", "nul\0key", b"1", 3)
    assert expired_events([*entries, nul])[-1] == expired_event(nul)
    assert expired_events([]) == []
    assert events == [expired_event(entry) for entry in entries]
    assert [e.expiry_id for e in events] == [expiry_id(s, k, d) for s, k, _, d in entries]
    assert len({e.expiry_id for e in events}) == len(entries)
    assert [e.old_value for e in events] == [{"n": 1}, [1, 2], "x", None, {"n": 2}]
    first = events[0]
    assert type(first) is StateEvent and hash(events[3]) == hash(expired_event(entries[3]))
    with pytest.raises(FrozenInstanceError):
        first.key = "other"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(first)) == first == copy.deepcopy(first)
    assert replace(first, key="z") == StateEvent("state:expired", "s", "z", {"n": 1}, None, first.expiry_id)
    foreign = [*entries, ("s", "c", b"NaN", 5), ("s", "d", b"\xff", 6)]
    events = expired_events(foreign)
    assert events == [expired_event(entry) for entry in foreign]
    assert [e.old_value for e in events[-3:]] == [{"n": 2}, None, None]
    assert "key='c' held bytes that are not JSON" in caplog.text


class AckingMemoryStore(KvMemoryStore):
    """Records when ``ack_expired`` comes (after the handlers?) and fails it ``ack_failures`` times."""

    ack_failures = 0

    def __init__(self, seen: list[StateEvent]) -> None:
        super().__init__()
        self.seen = seen
        self.acks: list[tuple[list[Any], int]] = []  # (entries, events delivered by then)

    def ack_expired(self, taken: Any) -> None:
        if self.ack_failures:
            self.ack_failures -= 1
            raise ConnectionError("reset")
        self.acks.append((list(taken), len(_expired(self.seen))))


@pytest.mark.parametrize("failures", [0, 2, 3])
def test_the_sweeper_acknowledges_each_batch_after_its_handlers_ran(
    failures: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A leasing adapter learns a batch was delivered only once its handlers ran; a failing
    acknowledgement is tried 3 times, then logged (the leases lapse: delivered again later)."""
    seen: list[StateEvent] = []
    adapter = AckingMemoryStore(seen)
    adapter.ack_failures = failures
    limits = Limits(capabilities=adapter.capabilities, adapter_name="kv")
    with caplog.at_level(logging.WARNING, logger="iii_state.expiry"):
        with StateStore(adapter, limits, EventBus(), settings=StateConfig(expiry_events=True)) as store:
            assert store._sweeper is not None
            store._sweeper.stop()  # swept by hand
            store.on_change(seen.append)
            store.set("s", "a", 1, ttl_ms=1)
            store.set("s", "b", 2, ttl_ms=1)
            time.sleep(0.01)
            if failures < 3:
                assert store._sweeper.sweep() == 2
            else:
                with pytest.raises(ConnectionError):
                    store._sweeper.sweep()
    assert sorted(_expired(seen)) == [("s", "a", 1, None), ("s", "b", 2, None)]
    if failures < 3:
        [(entries, delivered_by_then)] = adapter.acks
        assert sorted(e[:3] for e in entries) == [("s", "a", b"1"), ("s", "b", b"2")]
        assert delivered_by_then == 2
        assert "acknowledging" not in caplog.text
    else:
        assert adapter.acks == [] and "acknowledging 2 delivered expiries failed 3 times" in caplog.text


def test_the_sweeper_acknowledges_each_chunk_right_after_its_handlers() -> None:
    """A sweeper killed after its handlers and before an acknowledgement delivers at most one
    chunk twice: each chunk (of ``ACK_CHUNK``, within batches of ``BATCH``) is acknowledged right
    after its own handlers ran, before the next chunk's handlers run."""
    from iii_state_core.sweeper import ACK_CHUNK, BATCH

    seen: list[StateEvent] = []
    adapter = AckingMemoryStore(seen)
    limits = Limits(capabilities=adapter.capabilities, adapter_name="kv")
    count = 2 * max(ACK_CHUNK, BATCH) + 5
    with StateStore(adapter, limits, EventBus(), settings=StateConfig(expiry_events=True)) as store:
        assert store._sweeper is not None
        store._sweeper.stop()  # swept by hand: each sweep() then takes one batch
        store.on_change(seen.append)
        for n in range(count):
            store.set("s", f"k{n}", n, ttl_ms=1)
        time.sleep(0.01)
        swept = 0
        while swept < count:
            took = store._sweeper.sweep()
            assert 0 < took <= BATCH
            swept += took
    expected, delivered = [], 0
    for batch_start in range(0, count, BATCH):
        batch = min(BATCH, count - batch_start)
        for chunk_start in range(0, batch, ACK_CHUNK):
            delivered += min(ACK_CHUNK, batch - chunk_start)
            expected.append((min(ACK_CHUNK, batch - chunk_start), delivered))
    assert [(len(entries), by_then) for entries, by_then in adapter.acks] == expected
    assert len(_expired(seen)) == count


def _file_store_swept_by_hand(directory: Path) -> StateStore:
    store = open_store(_file_config(directory))
    assert store._sweeper is not None
    store._sweeper.stop()  # swept by hand
    return store


def test_every_delivery_of_one_expiry_carries_its_expiry_id_and_no_other_expiry_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweeper killed after its handlers and before its acknowledgement (here: the
    acknowledgement never sent) leaves the lease to lapse, and another sweeper delivers the
    expiry again: with the same ``expiry_id``, which a receiver can drop. The next expiry of the
    same key has another id; the id is in the event's contract object too.

    The lease lapses by moving the file store's clock past it: with a 50 ms lease, a loaded
    machine could let it lapse before the second sweeper checked that it still held."""
    from iii_state_kvfile import file_store

    skew = [0]
    real_now_ms = file_store.now_ms
    monkeypatch.setattr(file_store, "now_ms", lambda: real_now_ms() + skew[0])
    config = _file_config(tmp_path)
    config["adapter"]["config"]["expiry_lease_ms"] = 60_000
    killed, other = open_store(config), open_store(config)
    seen_killed: list[StateEvent] = []
    seen_other: list[StateEvent] = []
    try:
        for store in (killed, other):
            assert store._sweeper is not None
            store._sweeper.stop()
        killed.on_change(seen_killed.append)
        other.on_change(seen_other.append)
        killed.adapter.ack_expired = lambda taken: None  # type: ignore[method-assign]
        killed.set("s", "k", {"v": 1}, ttl_ms=1)
        time.sleep(0.01)
        assert killed._sweeper is not None and killed._sweeper.sweep() == 1
        assert other._sweeper is not None and other._sweeper.sweep() == 0  # still leased
        skew[0] = 60_001  # the lease lapses unacknowledged
        assert other._sweeper.sweep() == 1
        [first] = [e for e in seen_killed if e.event_type == "state:expired"]
        [again] = [e for e in seen_other if e.event_type == "state:expired"]
        assert (again.scope, again.key, again.old_value) == ("s", "k", {"v": 1})
        assert again.expiry_id == first.expiry_id and again["expiry_id"] == first.expiry_id
        assert isinstance(first.expiry_id, str) and len(first.expiry_id) == 32
        assert again.to_wire()["expiry_id"] == first.expiry_id and "expiry_id" in again.keys()
        other.set("s", "k", {"v": 2}, ttl_ms=1)
        time.sleep(0.01)
        assert other._sweeper.sweep() == 1
        assert seen_other[-1].old_value == {"v": 2} and seen_other[-1].expiry_id != first.expiry_id
        writes = [e for e in seen_other if e.event_type != "state:expired"]
        assert writes and all(e.expiry_id is None and "expiry_id" not in e.to_wire() for e in writes)
    finally:
        killed.close()
        other.close()


def test_a_sweeper_does_not_deliver_again_what_it_delivered_when_its_acknowledgement_failed(
    tmp_path: Path,
) -> None:
    """An acknowledgement failing 3 times leaves the lease to lapse; the sweeper that delivered
    the expiry claims it again, knows it, and acknowledges it without a second event."""
    config = _file_config(tmp_path)
    config["adapter"]["config"]["expiry_lease_ms"] = 50
    seen: list[StateEvent] = []
    with open_store(config) as store:
        assert store._sweeper is not None
        store._sweeper.stop()
        store.on_change(seen.append)
        acknowledge = store.adapter.ack_expired

        def failing(taken: Any) -> None:
            raise ConnectionError("reset")

        store.adapter.ack_expired = failing  # type: ignore[method-assign]
        store.set("s", "k", 1, ttl_ms=1)
        time.sleep(0.01)
        with pytest.raises(ConnectionError):
            store._sweeper.sweep()
        store.adapter.ack_expired = acknowledge  # type: ignore[method-assign]
        time.sleep(0.08)
        assert store._sweeper.sweep() == 1  # claimed again, acknowledged, not delivered again
        assert len(_expired(seen)) == 1
        time.sleep(0.08)
        assert store._sweeper.sweep() == 0  # acknowledged: gone


def test_the_async_sweeper_does_not_deliver_again_what_it_delivered_when_its_acknowledgement_failed(
    tmp_path: Path,
) -> None:
    config = _file_config(tmp_path)
    config["adapter"]["config"]["expiry_lease_ms"] = 50

    async def main() -> list[StateEvent]:
        seen: list[StateEvent] = []
        store = open_async_store(config)
        store.on_change(seen.append)
        await store.set("s", "k", 1, ttl_ms=1)
        sweeper = store._sweeper
        assert sweeper is not None
        await sweeper.stop()  # swept by hand
        acknowledge = store.async_adapter.ack_expired

        async def failing(taken: Any) -> None:
            raise ConnectionError("reset")

        store.async_adapter.ack_expired = failing  # type: ignore[method-assign]
        await asyncio.sleep(0.01)
        with pytest.raises(ConnectionError):
            await sweeper.sweep()
        store.async_adapter.ack_expired = acknowledge  # type: ignore[method-assign]
        await asyncio.sleep(0.08)
        assert await sweeper.sweep() == 1  # claimed again, acknowledged, not delivered again
        await asyncio.sleep(0.08)
        assert await sweeper.sweep() == 0
        await store.close()
        return seen

    [event] = [e for e in asyncio.run(main()) if e.event_type == "state:expired"]
    assert event.expiry_id is not None

"""Expiry on dynalite and moto beyond the conformance area: the native TimeToLive attribute,
listing pages past expired items, and ``take_expired`` taking each expired entry exactly once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from dynamodb_test_helpers import adapter_config, new_table_name
from iii_state_dynamodb import DynamoDBAdapter, sweep
from iii_state_dynamodb.layout import item_key

from iii_state_core import open_store
from iii_state_core.expiry import now_ms
from iii_state_core.results import StateEvent

Taken = tuple[str, str, bytes, int]


@pytest.fixture
def raw(endpoint: str) -> Any:
    return boto3.session.Session().client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture(scope="module")
def own_table(endpoint: str) -> str:
    """A table of its own: ``take_expired`` sweeps a whole table, and the session table holds the
    expired leftovers of other tests."""
    name = new_table_name("expiry-")
    DynamoDBAdapter.open(adapter_config(endpoint, name, create_table=True)).close()
    return name


@pytest.fixture
def adapters(endpoint: str, own_table: str) -> Iterator[list[DynamoDBAdapter]]:
    """Three adapters with clients of their own, as three processes would have."""
    opened = [DynamoDBAdapter.open(adapter_config(endpoint, own_table)) for _ in range(3)]
    yield opened  # type: ignore[misc]
    for adapter in opened:
        adapter.close()


def server_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.node.callspec.params["endpoint"]
    return kind


def test_a_created_table_gets_timetolive_on_the_ttl_attribute(
    endpoint: str, raw: Any, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    name = new_table_name("ttl-")
    with caplog.at_level(logging.WARNING, logger="iii_state.dynamodb"):
        adapter = DynamoDBAdapter.open(adapter_config(endpoint, name, create_table=True))
    try:
        described = raw.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        warned = [
            r.getMessage() for r in caplog.records if "TimeToLive could not be enabled" in r.getMessage()
        ]
        if server_kind(request) == "moto":
            assert described == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"}
            assert warned == []
        else:  # dynalite has no UpdateTimeToLive: said once, and the store works all the same
            assert described["TimeToLiveStatus"] == "DISABLED"
            assert len(warned) == 1 and "UnknownOperationException" in warned[0] and repr(name) in warned[0]
        adapter.write("s", "k", b"1", now_ms() + 60_000)
        assert adapter.read("s", "k") == b"1"
    finally:
        adapter.close()
        raw.delete_table(TableName=name)


def test_the_deadline_is_stored_in_milliseconds_and_in_whole_seconds_rounded_up(
    adapters: list[DynamoDBAdapter], raw: Any, own_table: str
) -> None:
    adapter = adapters[0]
    deadline = now_ms() + 3_600_001
    adapter.write("stored", "k", b"1", deadline)
    item = raw.get_item(TableName=own_table, Key=item_key("stored", "k"), ConsistentRead=True)["Item"]
    assert item["exp"] == {"N": str(deadline)} and item["ttl"] == {"N": str(deadline // 1000 + 1)}
    assert adapter.set_expiry("stored", "k", None) is True
    item = raw.get_item(TableName=own_table, Key=item_key("stored", "k"), ConsistentRead=True)["Item"]
    assert "exp" not in item and "ttl" not in item
    adapter.remove("stored", "k")


def test_a_page_is_filled_past_expired_items_and_a_walk_sees_each_live_key_once(
    adapters: list[DynamoDBAdapter],
) -> None:
    adapter, scope = adapters[0], f"pages-{now_ms()}"
    past, future = now_ms() - 1, now_ms() + 60_000
    live = []
    for n in range(16):
        key = f"k{n:02}"
        if n < 7 or n % 3 == 0:  # a run of expired items first, then every third
            adapter.write(scope, key, b"0", past)
        else:
            adapter.write(scope, key, str(n).encode(), future if n % 2 else None)
            live.append(key)
    try:
        page, cursor = adapter.scan(scope, None, 3)
        assert [k for k, _ in page] == live[:3] and cursor is not None
        walked, cursor = [], None
        while True:
            page, cursor = adapter.scan(scope, cursor, 2)
            assert 0 < len(page) <= 2 or cursor is None
            walked += [k for k, _ in page]
            if cursor is None:
                break
        assert walked == live
    finally:
        for n in range(16):
            adapter.remove(scope, f"k{n:02}")


def test_concurrent_takers_take_each_expired_entry_exactly_once(adapters: list[DynamoDBAdapter]) -> None:
    writer = adapters[0]
    past = now_ms() - 1
    expired = {}
    for n in range(45):
        scope, key = f"sweep-{n % 4}", f"e{n}"
        writer.write(scope, key, f'{{"n":{n}}}'.encode(), past - n)
        expired[(scope, key)] = (f'{{"n":{n}}}'.encode(), past - n)
    writer.write("sweep-0", "later", b"1", now_ms() + 60_000)
    writer.write("sweep-0", "never", b"2")
    start = threading.Barrier(len(adapters))
    results: list[list[Taken]] = [[] for _ in adapters]
    failures: list[BaseException] = []

    def take(index: int) -> None:
        try:
            start.wait()
            while batch := adapters[index].take_expired(limit=7):
                results[index].extend(batch)
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(adapters))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    everything = [entry for batch in results for entry in batch]
    assert len(everything) == len(expired), "an entry was taken twice, or not at all"
    assert {(s, k): (v, d) for s, k, v, d in everything} == expired
    assert writer.take_expired() == []
    assert writer.read("sweep-0", "later") == b"1" and writer.read("sweep-0", "never") == b"2"
    writer.remove("sweep-0", "later")
    writer.remove("sweep-0", "never")


def test_an_expired_entry_written_again_before_the_delete_is_not_taken(
    adapters: list[DynamoDBAdapter], monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = adapters[0]
    adapter.write("rewritten", "k", b"old", now_ms() - 1)
    found = sweep.expired_items(adapter._client, adapter._call, 10)
    assert [item["sk"]["S"] for item in found] == ["#k"]
    adapter.write("rewritten", "k", b"new")  # between the sweeper's scan and its delete
    monkeypatch.setattr(sweep, "expired_items", lambda client, call, limit: found)
    assert adapter.take_expired() == []
    assert adapter.read("rewritten", "k") == b"new"
    adapter.remove("rewritten", "k")


def events_config(endpoint: str, table: str) -> dict[str, Any]:
    return {"adapter": {"name": "dynamodb", "config": adapter_config(endpoint, table)}, "expiry_events": True}


def expired_events(seen: list[StateEvent]) -> list[tuple[str, str, Any]]:
    return [(e.scope, e.key, e.old_value) for e in seen if e.event_type == "state:expired"]


def test_the_sweeper_delivers_an_expiry_within_the_declared_delay(endpoint: str, own_table: str) -> None:
    seen: list[StateEvent] = []
    with open_store(events_config(endpoint, own_table)) as store:
        store.on_change(seen.append)
        store.set("swept", "k", {"v": 1}, ttl_ms=50)
        written = time.monotonic()
        while not expired_events(seen) and time.monotonic() < written + 5:
            time.sleep(0.01)
        delay = time.monotonic() - written - 0.05
        assert expired_events(seen) == [("swept", "k", {"v": 1})]
        declared = store.adapter.capabilities.expiry_event_delay_ms / 1000
        assert delay < declared + 1.0, f"{delay:.2f} s after the deadline (declared {declared} s + slack)"


def test_expiries_met_by_writes_are_kept_and_two_sweepers_deliver_each_once(
    endpoint: str, own_table: str
) -> None:
    stores = [open_store(events_config(endpoint, own_table)) for _ in range(2)]
    seen: list[list[StateEvent]] = [[], []]
    try:
        for store, got in zip(stores, seen, strict=True):
            assert store._sweeper is not None
            store._sweeper.stop()  # swept by hand below, once the writes are done
            store.on_change(got.append)
        first, scope = stores[0], f"met-{now_ms()}"
        for n in range(6):
            first.set(scope, f"e{n}", n, ttl_ms=30)
        for key in ("set", "del", "cas", "upd"):
            first.set(scope, key, f"{key}-old", ttl_ms=30)
        time.sleep(0.05)
        # each replaces or deletes an item still stored past its deadline: its value must survive
        assert first.set(scope, "set", "new").old_value is None
        assert first.delete(scope, "del") is None
        assert first.compare_and_set(scope, "cas", None, 1).swapped
        assert first.update(scope, "upd", [{"type": "set", "path": "", "value": 2}]).old_value is None
        assert first.list_keys(scope) == ["cas", "set", "upd"]  # what is kept for the sweep stays hidden
        counts = [0, 0]

        def sweep(index: int) -> None:
            sweeper = stores[index]._sweeper
            assert sweeper is not None
            for _ in range(3):
                counts[index] += sweeper.sweep()

        threads = [threading.Thread(target=sweep, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        delivered = expired_events(seen[0]) + expired_events(seen[1])
        expected = [(scope, f"e{n}", n) for n in range(6)] + [
            (scope, key, f"{key}-old") for key in ("set", "del", "cas", "upd")
        ]
        assert sorted(delivered, key=str) == sorted(expected, key=str), "an expiry lost or doubled"
        assert sum(counts) == len(expected)
        assert [first.get(scope, k) for k in ("set", "del", "cas", "upd")] == ["new", None, 1, 2]
    finally:
        for store in stores:
            store.close()

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
from dynamodb_test_helpers import adapter_config, before_each_request, new_table_name
from iii_state_conformance.cpu_load import MOST, CpuLoad
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
        declared = store.adapter.capabilities.expiry_event_delay_ms / 1000
        load = CpuLoad()  # the 1 s slack stretches with the CPU load while waiting (1 when idle)
        while not expired_events(seen) and time.monotonic() < written + declared + MOST:
            load.sleep(0.01)
        delay = time.monotonic() - written - 0.05
        assert expired_events(seen) == [("swept", "k", {"v": 1})]
        allowed = declared + 1.0 * load.factor()
        assert delay < allowed, f"{delay:.2f} s after the deadline (allowed {allowed:.2f} s)"


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


def _operations(adapter: DynamoDBAdapter) -> list[str]:
    """The DynamoDB operations ``adapter`` sends from now on, in order."""
    sent: list[str] = []
    before_each_request(adapter, sent.append)  # botocore's requests and the lean client's
    return sent


def _in_index(raw: Any, table: str, scope: str) -> list[str]:
    """The sort keys of ``scope``'s items in the deadline index, every shard."""
    return sorted(
        item["sk"]["S"]
        for shard in range(4)
        for item in raw.query(
            TableName=table,
            IndexName="iii-expiry",
            KeyConditionExpression="xsh = :s",
            ExpressionAttributeValues={":s": {"N": str(shard)}},
        )["Items"]
        if item["pk"]["S"] == f"#{scope}"
    )


def test_a_created_table_has_a_sparse_deadline_index_that_sweeps_query(
    adapters: list[DynamoDBAdapter], raw: Any, own_table: str
) -> None:
    """Only items with a deadline are in the index; after its first Scan, a sweep reads only
    the index (one Query per shard), never the whole table."""
    indexes = raw.describe_table(TableName=own_table)["Table"].get("GlobalSecondaryIndexes", [])
    assert [(i["IndexName"], i["IndexStatus"]) for i in indexes] == [("iii-expiry", "ACTIVE")]
    adapter, scope = adapters[0], f"indexed-{now_ms()}"
    while adapter.take_expired(limit=500):  # the first sweep scans; leftovers of other tests go
        pass
    adapter.write(scope, "plain", b"1")
    adapter.write(scope, "later", b"2", now_ms() + 60_000)
    adapter.write(scope, "gone", b"3", now_ms() - 1)
    try:
        assert _in_index(raw, own_table, scope) == ["#gone", "#later"]
        sent = _operations(adapter)
        taken = adapter.take_expired(limit=500)
        assert [(s, k, v) for s, k, v, _ in taken] == [(scope, "gone", b"3")]
        assert "Scan" not in sent and sent.count("Query") == 4 and sent.count("DeleteItem") == 1
        assert adapter.set_expiry(scope, "later", None) is True  # leaves the index with its deadline
        assert _in_index(raw, own_table, scope) == []
    finally:
        for key in ("plain", "later", "gone"):
            adapter.remove(scope, key)


def test_a_table_without_the_index_is_swept_by_scan_and_gets_it_with_create_table(
    endpoint: str, raw: Any, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    name = new_table_name("noindex-")
    raw.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        with caplog.at_level(logging.WARNING, logger="iii_state.dynamodb"):
            adapter = DynamoDBAdapter.open(adapter_config(endpoint, name))
            try:
                adapter.write("s", "old", b"1", now_ms() - 1)
                sent = _operations(adapter)
                assert [k for _, k, _, _ in adapter.take_expired()] == ["old"]
                adapter.write("s", "older", b"1", now_ms() - 1)
                assert [k for _, k, _, _ in adapter.take_expired()] == ["older"]
                assert sent.count("Scan") == 2 and "Query" not in sent
            finally:
                adapter.close()
        said = [r.getMessage() for r in caplog.records if "iii-expiry" in r.getMessage()]
        assert len(said) == 1 and "has no index" in said[0] and "create_table: true" in said[0], said
        assert raw.describe_table(TableName=name)["Table"].get("GlobalSecondaryIndexes", []) == []
        # an entry written before the index existed has no shard: the first sweep (a Scan) takes it
        adapter = DynamoDBAdapter.open(adapter_config(endpoint, name))
        adapter.write("s", "before", b"2", now_ms() - 1)
        adapter.close()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="iii_state.dynamodb"):
            adapter = DynamoDBAdapter.open(adapter_config(endpoint, name, create_table=True))
        if server_kind(request) == "dynalite":  # cannot add an index to an existing table
            adapter.take_expired()
            adapter.close()
            said = [r.getMessage() for r in caplog.records if "iii-expiry" in r.getMessage()]
            assert len(said) == 1 and "not added" in said[0] and "scans the whole table" in said[0], said
            assert raw.describe_table(TableName=name)["Table"].get("GlobalSecondaryIndexes", []) == []
            return
        try:
            indexes = raw.describe_table(TableName=name)["Table"]["GlobalSecondaryIndexes"]
            assert [i["IndexName"] for i in indexes] == ["iii-expiry"]
            deadline = time.monotonic() + 10
            while (
                raw.describe_table(TableName=name)["Table"]["GlobalSecondaryIndexes"][0]["IndexStatus"]
                != "ACTIVE"
            ):
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            adapter.close()
        adapter = DynamoDBAdapter.open(adapter_config(endpoint, name))
        try:
            assert [k for _, k, _, _ in adapter.take_expired()] == ["before"]
            adapter.write("s", "after", b"3", now_ms() - 1)
            sent = _operations(adapter)
            assert [k for _, k, _, _ in adapter.take_expired()] == ["after"]
            assert "Scan" not in sent and "Query" in sent
        finally:
            adapter.close()
    finally:
        raw.delete_table(TableName=name)


def test_with_expiry_events_a_claim_is_a_lease_taken_again_once_it_lapses_until_acknowledged(
    endpoint: str, own_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweeper killed between claiming and acknowledging loses nothing (its lease lapses and
    the entries are claimed again); a write over an expiry a dead sweeper stashed but did not
    delete yet stashes it no second time; an acknowledged expiry is never claimed again. The
    sweep's clock is moved past the leases instead of sleeping through them."""
    config = adapter_config(endpoint, own_table, expiry_events=True)
    dead, alive = DynamoDBAdapter.open(config), DynamoDBAdapter.open(config)
    scope, ahead = f"lease-{now_ms()}", [0]
    monkeypatch.setattr(sweep, "now_ms", lambda: now_ms() + ahead[0])
    try:
        deadline = now_ms() - 1
        for key in ("a", "b", "half"):
            dead.write(scope, key, f'"{key}"'.encode(), deadline)
        mine = lambda taken: sorted(e for e in taken if e[0] == scope)  # noqa: E731
        # a sweeper that stashed "half" under its lease and died before deleting the item
        key = item_key(scope, "half")
        full = dead._client.get_item(TableName=own_table, Key=key, ConsistentRead=True)["Item"]
        leased = sweep._stash_item(full, scope, "half", str(now_ms() + 10_000))
        assert sweep._put_new(dead._client, dead._call, leased)
        assert alive.write(scope, "half", b'"new"') is None  # replaces it: no second stash
        claimed = mine(dead.take_expired(100))
        assert claimed == sorted((scope, k, f'"{k}"'.encode(), deadline) for k in ("a", "b"))
        assert mine(alive.take_expired(100)) == []  # leased to `dead` (and "half" to the dead one)
        ahead[0] = 11_000  # nobody acknowledged: the leases (10 s) lapse
        again = mine(alive.take_expired(100))
        assert again == sorted((scope, k, f'"{k}"'.encode(), deadline) for k in ("a", "b", "half"))
        alive.ack_expired(again)
        alive.ack_expired(again)  # idempotent
        ahead[0] = 22_000
        assert mine(dead.take_expired(100)) == []  # acknowledged: never again
        assert alive.read(scope, "half") == b'"new"'
        alive.remove(scope, "half")
    finally:
        dead.close()
        alive.close()

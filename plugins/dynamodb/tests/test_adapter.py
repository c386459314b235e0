"""The dynamodb adapter on both servers: limits at the boundary, empty names, versions, foreign
items, cursors, threads, and what the adapter tells about itself."""

from __future__ import annotations

import secrets
import threading
from typing import Any

import pytest
from dynamodb_test_helpers import before_each_request
from iii_state_dynamodb import DynamoDBAdapter
from iii_state_dynamodb.layout import MAX_KEY_BYTES, MAX_SCOPE_BYTES, MAX_VALUE_BYTES
from iii_state_dynamodb.lean import LeanClient

from iii_state_core import (
    InvalidCursorError,
    KeyTooLargeError,
    StateStore,
    ValueTooLargeError,
    open_store,
)
from iii_state_core.paging import local_cursor


@pytest.fixture
def requests(adapter: DynamoDBAdapter) -> list[str]:
    """Names of the DynamoDB requests the adapter sends from now on."""
    sent: list[str] = []

    def record(model: Any, **_: Any) -> None:
        sent.append(model.name)

    adapter._client.meta.events.register("before-call.dynamodb", record)
    return sent


def sized(prefix: str, size: int) -> str:
    """``prefix`` padded with two- and one-byte characters to exactly ``size`` UTF-8 bytes."""
    need = size - len(prefix.encode())
    return prefix + "é" * (need // 2) + "a" * (need % 2)


def test_empty_scope_and_empty_key_work(store: StateStore) -> None:
    try:
        assert store.set("", "", {"empty": True}).old_value is None
        store.set("", "k", 1)
        store.set("s-empty-key", "", [])
        assert store.get("", "") == {"empty": True}
        assert store.get("s-empty-key", "") == []
        assert sorted(store.list_keys("")) == ["", "k"]
        page = store.list_entries("", limit=1)
        assert page.entries == [("", {"empty": True})] and not page.done
        assert {"", "s-empty-key"} <= set(store.list_groups())
        assert store.compare_and_set("", "", {"empty": True}, 2).swapped
    finally:
        assert store.delete("", "") == 2
        store.delete("", "k")
        store.delete("s-empty-key", "")
    assert "" not in store.list_groups()


def test_largest_scope_key_and_value_together_fit_one_item(store: StateStore) -> None:
    scope, key = sized("s", MAX_SCOPE_BYTES), sized("k", MAX_KEY_BYTES)
    value = sized("", MAX_VALUE_BYTES - 2)  # JSON quotes make it exactly MAX_VALUE_BYTES
    try:
        assert store.set(scope, key, value).old_value is None
        assert store.get(scope, key) == value
        assert store.set(scope, key, value).old_value == value
        assert store.compare_and_set(scope, key, value, value[:-1] + "b").swapped
        assert store.update(scope, key, [{"type": "set", "path": "", "value": value}]).new_value == value
        assert store.list_entries(scope).entries == [(key, value)]
        assert scope in store.list_groups()
        # a deadline (two more numbers) fits beside the largest of everything else
        assert store.set(scope, key, value, ttl_ms=3_600_000).old_value == value
        assert store.update(scope, key, [], ttl_ms=2**53).new_value == value
        assert store.expire(scope, key, 1_000) is True and store.get(scope, key) == value
    finally:
        store.delete(scope, key)


def test_one_byte_past_each_limit_is_refused_before_any_request(
    store: StateStore, requests: list[str]
) -> None:
    with pytest.raises(KeyTooLargeError) as scope_error:
        store.set(sized("s", MAX_SCOPE_BYTES + 1), "k", 1)
    with pytest.raises(KeyTooLargeError) as key_error:
        store.get("limits", sized("k", MAX_KEY_BYTES + 1))
    with pytest.raises(ValueTooLargeError) as value_error:
        store.set("limits", "v", "v" * (MAX_VALUE_BYTES - 1))
    with pytest.raises(KeyTooLargeError):
        store.list_entries(sized("s", MAX_SCOPE_BYTES + 1))
    assert requests == []
    assert "2048 bytes" in str(scope_error.value) and "2047" in str(scope_error.value)
    assert scope_error.value.code == key_error.value.code == "KEY_TOO_LARGE"
    assert value_error.value.code == "VALUE_TOO_LARGE" and str(MAX_VALUE_BYTES) in str(value_error.value)


def test_the_adapter_itself_refuses_oversized_entries(adapter: DynamoDBAdapter, requests: list[str]) -> None:
    with pytest.raises(KeyTooLargeError):
        adapter.write("s", sized("k", MAX_KEY_BYTES + 1), b"1")
    with pytest.raises(ValueTooLargeError):
        adapter.write("s", "k", b"1" * (MAX_VALUE_BYTES + 1))
    assert requests == []


def test_one_request_per_set_delete_and_get(store: StateStore, requests: list[str]) -> None:
    store.set("rounds", "k", 1)
    store.get("rounds", "k")
    store.delete("rounds", "k")
    assert requests == ["PutItem", "GetItem", "DeleteItem"]
    requests.clear()
    store.update("rounds", "k", [{"type": "increment", "path": "", "by": 1}])
    assert requests == ["GetItem", "PutItem"]
    store.delete("rounds", "k")


def test_a_first_page_counts_its_scope_beside_the_page(store: StateStore, adapter: DynamoDBAdapter) -> None:
    """A first page of a scope longer than the page sends its count Query beside the page; a
    scope whose first page held it all is counted by its page, and its next first page sends no
    count until the scope outgrows a page."""
    sent: list[str] = []
    lock = threading.Lock()
    together: list[threading.Barrier] = []

    def record(operation: str) -> None:
        with lock:
            sent.append(operation)
        if together and operation == "Query":
            together[0].wait()  # both Queries in flight at once, or this breaks after 10 s

    before_each_request(adapter, record)
    scope = f"pages-{secrets.token_hex(3)}"
    store.set_many(scope, {f"k{n:02}": n for n in range(25)})
    sent.clear()
    together.append(threading.Barrier(2, timeout=10))
    first = store.list_entries(scope, None, 10)
    together.clear()
    assert (first.total, len(first.entries)) == (25, 10)
    assert sent == ["Query", "Query"]  # the page and the count
    small = f"small-{secrets.token_hex(3)}"
    store.set_many(small, {"a": 1, "b": 2})
    for _ in range(2):
        sent.clear()
        page = store.list_entries(small, None, 10)
        assert (page.total, [key for key, _value in page.entries]) == (2, ["a", "b"])
    assert sent == ["Query"]  # remembered as one page: no count beside it
    store.set_many(small, {f"k{n:02}": n for n in range(12)})
    sent.clear()
    grown = store.list_entries(small, None, 10)
    assert grown.total == 14 and len(grown.entries) == 10
    assert sent == ["Query", "Query"]  # the page, then the count it now needs


def test_every_write_gives_a_new_version(adapter: DynamoDBAdapter) -> None:
    adapter.write("versions", "k", b"1")
    _, token = adapter.read_versioned("versions", "k")
    adapter.write("versions", "k", b"1")  # same bytes, unconditional: the token must still go stale
    assert adapter.write_if("versions", "k", b"2", token) is False
    _, token = adapter.read_versioned("versions", "k")
    adapter.remove("versions", "k")
    adapter.write("versions", "k", b"1")  # deleted and created again with the same bytes (ABA)
    assert adapter.write_if("versions", "k", b"2", token) is False
    _, token = adapter.read_versioned("versions", "k")
    assert adapter.write_if("versions", "k", b"3", token) is True
    assert adapter.write_if("versions", "k", b"4", token) is False
    assert adapter.read("versions", "k") == b"3"
    assert adapter.write_if("versions", "new", b"5", None) is True
    assert adapter.write_if("versions", "new", b"6", None) is False
    adapter.remove("versions", "k")
    adapter.remove("versions", "new")


def test_items_written_by_other_tools_are_read_and_updated(
    adapter: DynamoDBAdapter, store: StateStore
) -> None:
    table = adapter.table
    adapter._client.put_item(
        TableName=table, Item={"pk": {"S": "#foreign"}, "sk": {"S": "#k"}, "val": {"S": '{"n":1}'}}
    )
    adapter._client.put_item(TableName=table, Item={"pk": {"S": "no-prefix"}, "sk": {"S": "x"}})
    try:
        assert store.get("foreign", "k") == {"n": 1}
        result = store.update("foreign", "k", [{"type": "increment", "path": "n", "by": 1}])
        assert result.new_value == {"n": 2}
        item = adapter._client.get_item(TableName=table, Key={"pk": {"S": "#foreign"}, "sk": {"S": "#k"}})
        assert "ver" in item["Item"]
        assert "no-prefix" not in store.list_groups() and "o-prefix" not in store.list_groups()
    finally:
        store.delete("foreign", "k")
        adapter._client.delete_item(TableName=table, Key={"pk": {"S": "no-prefix"}, "sk": {"S": "x"}})


def test_values_come_back_as_the_exact_bytes(adapter: DynamoDBAdapter) -> None:
    data = '{"big":18446744073709551615,"f":1.0,"e":[],"o":{},"u":"😀\u2028é\\u0000"}'.encode()
    adapter.write("bytes", "k", data)
    assert adapter.read("bytes", "k") == data
    assert adapter.remove("bytes", "k") == data


def test_a_walk_continues_after_its_cursor_key_is_deleted(store: StateStore) -> None:
    keys = [f"k{i:02d}" for i in range(7)]
    for k in keys:
        store.set("cursor", k, k)
    try:
        seen: list[str] = []
        page = store.list_entries("cursor", limit=3)
        seen += [k for k, _ in page.entries]
        store.delete("cursor", seen[-1])
        while not page.done:
            page = store.list_entries("cursor", cursor=page.next_cursor, limit=3)
            seen += [k for k, _ in page.entries]
        assert seen == keys
    finally:
        for k in keys:
            store.delete("cursor", k)


def test_a_forged_cursor_is_a_clear_error(store: StateStore) -> None:
    for inner in ["", "#" + "x" * 2000]:
        with pytest.raises(InvalidCursorError):
            store.list_entries("cursor", cursor=local_cursor("cursor", inner))


def test_threads_share_one_adapter_without_losing_updates(store: StateStore) -> None:
    def work() -> None:
        for _ in range(15):
            store.update("threads", "n", [{"type": "increment", "path": "", "by": 1}])

    workers = [threading.Thread(target=work) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    try:
        assert store.get("threads", "n") == 90
    finally:
        store.delete("threads", "n")


def test_describe_and_secrets(adapter: DynamoDBAdapter, endpoint: str) -> None:
    assert adapter.describe() == f"dynamodb table {adapter.table!r} (endpoint {endpoint})"
    assert "testing" in adapter.secrets()
    assert "testing" not in adapter.describe() and "testing" not in repr(adapter.settings)


@pytest.mark.parametrize("lean", [True, False])
def test_a_batch_rounds_writes_are_in_flight_together_and_each_returns_what_it_replaced(
    config: dict[str, Any], lean: bool
) -> None:
    with open_store(adapter="dynamodb", adapter_config={**config, "lean_requests": lean}) as store:
        adapter = store.adapter
        assert isinstance(adapter, DynamoDBAdapter)
        assert isinstance(adapter._lean, LeanClient) is lean
        _writes_in_flight_together(store, adapter)


def _writes_in_flight_together(store: StateStore, adapter: DynamoDBAdapter) -> None:
    scope, keys = f"round-{secrets.token_hex(3)}", [f"k{i}" for i in range(20)]
    store.set_many(scope, {k: i for i, k in enumerate(keys)})
    meet = threading.Barrier(2, timeout=10)
    met: list[bool] = []
    lock = threading.Lock()

    def first_two_puts_wait_for_each_other(operation: str) -> None:
        with lock:
            waits = operation == "PutItem" and len(met) < 2
            if waits:
                met.append(False)
        if waits:
            try:
                meet.wait()  # one after another, the first would wait here alone and time out
                met[met.index(False)] = True
            except threading.BrokenBarrierError:
                pass

    before_each_request(adapter, first_two_puts_wait_for_each_other)
    results = store.set_many(scope, {k: -i for i, k in enumerate(keys)})
    assert met == [True, True]
    assert {k: r.old_value for k, r in results.items()} == {k: i for i, k in enumerate(keys)}
    removed = store.delete_many(scope, [*keys, "absent"])
    assert removed == {**{k: -i for i, k in enumerate(keys)}, "absent": None}
    assert store.get_many(scope, keys) == dict.fromkeys(keys)

"""contract § Functions through ``trigger``: every function's payload and result, on both kv forms."""

from __future__ import annotations

from typing import Any

import pytest
from unit_helpers import assert_same, call

from iii_state_core import (
    CompareAndSetResult,
    DeserializationError,
    StateError,
    StateStore,
    ValueTooLargeError,
    open_store,
)
from iii_state_core.wire import UnknownFunctionError

# -- set / get / delete ------------------------------------------------------------------------


def test_set_returns_old_and_new_value(kv_store: StateStore) -> None:
    first = call(kv_store, "set", scope="s", key="k", value={"n": 1})
    assert first == {"old_value": None, "new_value": {"n": 1}}
    second = call(kv_store, "set", scope="s", key="k", value=[1, 2])
    assert_same(second, {"old_value": {"n": 1}, "new_value": [1, 2]})


def test_set_stored_null_is_returned_as_old_value(kv_store: StateStore) -> None:
    call(kv_store, "set", scope="s", key="k", value=None)
    assert call(kv_store, "set", scope="s", key="k", value=1) == {"old_value": None, "new_value": 1}
    assert call(kv_store, "list_keys", scope="s") == {"keys": ["k"]}


def test_set_accepts_data_as_old_alias_of_value(kv_store: StateStore) -> None:
    assert call(kv_store, "set", scope="s", key="k", data={"a": 1}) == {
        "old_value": None,
        "new_value": {"a": 1},
    }
    assert call(kv_store, "get", scope="s", key="k") == {"a": 1}


def test_set_with_value_and_data_is_an_error(kv_store: StateStore) -> None:
    with pytest.raises(DeserializationError, match="not both"):
        call(kv_store, "set", scope="s", key="k", value=1, data=2)
    assert call(kv_store, "get", scope="s", key="k") is None


def test_set_without_value_is_an_error(kv_store: StateStore) -> None:
    with pytest.raises(DeserializationError, match="value"):
        call(kv_store, "set", scope="s", key="k")


def test_set_explicit_null_value_is_stored(kv_store: StateStore) -> None:
    assert call(kv_store, "set", scope="s", key="k", value=None) == {"old_value": None, "new_value": None}
    assert call(kv_store, "list", scope="s") == [None]


def test_get_missing_key_is_none(kv_store: StateStore) -> None:
    assert call(kv_store, "get", scope="nowhere", key="k") is None


def test_delete_returns_bare_removed_value(kv_store: StateStore) -> None:
    call(kv_store, "set", scope="s", key="k", value={"a": [1]})
    assert_same(call(kv_store, "delete", scope="s", key="k"), {"a": [1]})
    assert call(kv_store, "get", scope="s", key="k") is None
    assert call(kv_store, "delete", scope="s", key="k") is None


# -- update ------------------------------------------------------------------------------------


def test_update_result_has_errors_only_when_an_op_failed(kv_store: StateStore) -> None:
    ok = call(kv_store, "update", scope="s", key="k", ops=[{"type": "increment", "path": "n", "by": 2}])
    assert ok == {"old_value": None, "new_value": {"n": 2}}
    failed = call(kv_store, "update", scope="s", key="k", ops=[{"type": "append", "path": "n", "value": 1}])
    assert set(failed) == {"old_value", "new_value", "errors"}
    assert [e["code"] for e in failed["errors"]] == ["append.type_mismatch"]
    assert failed["old_value"] == failed["new_value"] == {"n": 2}


def test_update_unknown_op_fields_and_payload_fields_are_ignored(kv_store: StateStore) -> None:
    result = call(
        kv_store,
        "update",
        scope="s",
        key="k",
        ops=[{"type": "set", "path": "a", "value": 1, "doc_url": "x"}],
        trace_id="abc",
    )
    assert result == {"old_value": None, "new_value": {"a": 1}}


# -- listing -----------------------------------------------------------------------------------


def test_list_returns_values_only(kv_store: StateStore) -> None:
    for key, value in (("a", 1), ("b", [2]), ("c", {"x": None})):
        call(kv_store, "set", scope="s", key=key, value=value)
    call(kv_store, "set", scope="other", key="a", value="no")
    values = call(kv_store, "list", scope="s")
    assert sorted(values, key=repr) == sorted([1, [2], {"x": None}], key=repr)
    assert call(kv_store, "list", scope="unknown") == []


def test_list_keys_wraps_keys(kv_store: StateStore) -> None:
    for key in ("b", "a", ""):
        call(kv_store, "set", scope="s", key=key, value=0)
    result = call(kv_store, "list_keys", scope="s")
    assert set(result) == {"keys"} and sorted(result["keys"]) == ["", "a", "b"]
    assert call(kv_store, "list_keys", scope="unknown") == {"keys": []}


def test_list_groups_sorted_by_code_point_without_emptied_scopes(kv_store: StateStore) -> None:
    scopes = ["b", "a", "B", "😀", "\uffff", "é", "", "a "]
    for scope in scopes:
        call(kv_store, "set", scope=scope, key="k", value=1)
    call(kv_store, "set", scope="gone", key="k1", value=1)
    call(kv_store, "set", scope="gone", key="k2", value=1)
    call(kv_store, "delete", scope="gone", key="k1")
    call(kv_store, "delete", scope="gone", key="k2")
    result = call(kv_store, "list_groups")
    # code point order: U+FFFF sorts before U+1F600 (UTF-16 order would put the emoji first)
    assert result == {"groups": ["", "B", "a", "a ", "b", "é", "\uffff", "😀"]}


def test_list_groups_deduplicates(kv_store: StateStore) -> None:
    for key in range(5):
        call(kv_store, "set", scope="s", key=str(key), value=key)
    assert call(kv_store, "list_groups", **{}) == {"groups": ["s"]}


#: The engine stamps ``_caller_worker_id`` on every worker call; ``trigger`` callers pass it.
CALLER = {"_caller_worker_id": "unit-test"}


def _walk(store: StateStore, scope: str, limit: int) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []
    cursor = None
    for _ in range(1000):
        payload: dict[str, Any] = {"scope": scope, "limit": limit, **CALLER}
        if cursor is not None:
            payload["cursor"] = cursor
        page = call(store, "list_entries", **payload)
        assert list(page) == ["entries", "next_cursor", "done", "offset", "total"]
        assert len(page["entries"]) <= limit and page["offset"] == len(seen)
        seen.extend((k, v) for k, v in page["entries"])
        if page["done"]:
            assert page["next_cursor"] is None
            return seen
        assert isinstance(page["next_cursor"], str)
        cursor = page["next_cursor"]
    raise AssertionError("list_entries never finished")


@pytest.mark.parametrize("limit", [1, 3, 10, 11, 1000])
def test_list_entries_pages_cover_every_key_once(kv_store: StateStore, limit: int) -> None:
    expected = {f"k{i:02}": {"i": i} for i in range(10)}
    for key, value in expected.items():
        call(kv_store, "set", scope="s", key=key, value=value)
    seen = _walk(kv_store, "s", limit)
    assert sorted(k for k, _ in seen) == sorted(expected)
    assert all(expected[k] == v for k, v in seen)


def test_list_entries_default_limit_is_100(kv_store: StateStore) -> None:
    for i in range(150):
        call(kv_store, "set", scope="s", key=f"{i:03}", value=i)
    page = call(kv_store, "list_entries", scope="s", **CALLER)
    assert len(page["entries"]) == 100 and page["done"] is False and page["total"] == 150
    again = call(kv_store, "list_entries", scope="s", cursor=None, limit=None, **CALLER)
    assert again["entries"] == page["entries"]


def test_list_entries_unknown_scope_is_done(kv_store: StateStore) -> None:
    assert call(kv_store, "list_entries", scope="none", **CALLER) == {
        "entries": [], "next_cursor": None, "done": True, "offset": 0, "total": 0
    }  # fmt: skip


@pytest.mark.parametrize("limit", [0, 1001])
def test_list_entries_limit_outside_1_to_1000_is_invalid_page_limits(
    kv_store: StateStore, limit: Any
) -> None:
    with pytest.raises(StateError) as info:
        call(kv_store, "list_entries", scope="s", limit=limit, **CALLER)
    assert info.value.code == "INVALID_PAGE_LIMITS"


def test_list_entries_over_the_wire_caps_the_scope_at_1024_bytes_the_typed_method_does_not(
    kv_store: StateStore,
) -> None:
    scope = "s" * 1500
    kv_store.set(scope, "k", 1)
    with pytest.raises(StateError) as info:
        call(kv_store, "list_entries", scope=scope, **CALLER)
    assert info.value.code == "INVALID_PAGE_LIMITS"
    assert kv_store.list_entries(scope).entries == [("k", 1)]


@pytest.mark.parametrize("limit", [-1, 1.5, "10", True, [10]])
def test_list_entries_limit_of_the_wrong_type_fails_decoding(kv_store: StateStore, limit: Any) -> None:
    with pytest.raises(DeserializationError, match="limit"):
        call(kv_store, "list_entries", scope="s", limit=limit, **CALLER)


def test_list_entries_without_a_caller_is_unknown_caller(kv_store: StateStore) -> None:
    with pytest.raises(StateError) as info:
        call(kv_store, "list_entries", scope="s")
    assert (info.value.code, str(info.value)) == (
        "UNKNOWN_CALLER",
        "list_entries requires engine-stamped identity",
    )


@pytest.mark.parametrize("cursor", ["garbage", "", "!!!!", "e30", "a.b"])
def test_list_entries_bad_cursor_is_invalid_cursor(kv_store: StateStore, cursor: Any) -> None:
    call(kv_store, "set", scope="s", key="k", value=1)
    with pytest.raises(StateError) as info:
        call(kv_store, "list_entries", scope="s", cursor=cursor, **CALLER)
    assert info.value.code == "INVALID_CURSOR"


@pytest.mark.parametrize("cursor", [12, ["x"]])
def test_list_entries_cursor_of_the_wrong_type_fails_decoding(kv_store: StateStore, cursor: Any) -> None:
    with pytest.raises(DeserializationError, match="cursor"):
        call(kv_store, "list_entries", scope="s", cursor=cursor, **CALLER)


def test_list_entries_cursor_from_another_scope_is_refused(kv_store: StateStore) -> None:
    for i in range(3):
        call(kv_store, "set", scope="a", key=str(i), value=i)
        call(kv_store, "set", scope="b", key=str(i), value=i)
    cursor = call(kv_store, "list_entries", scope="a", limit=1, **CALLER)["next_cursor"]
    with pytest.raises(StateError) as info:
        call(kv_store, "list_entries", scope="b", cursor=cursor, limit=1, **CALLER)
    assert info.value.code == "INVALID_CURSOR"


# -- compare-and-set ---------------------------------------------------------------------------


def test_compare_and_set_swaps(kv_store: StateStore) -> None:
    call(kv_store, "set", scope="s", key="k", value={"v": 1})
    result = call(kv_store, "compare-and-set", scope="s", key="k", expected={"v": 1}, value=2)
    assert result == {"swapped": True}
    assert call(kv_store, "get", scope="s", key="k") == 2


def test_compare_and_set_miss_is_structural(kv_store: StateStore) -> None:
    call(kv_store, "set", scope="s", key="k", value={"v": 1})
    for expected in ({"v": 1.0}, {"v": True}, {"v": 1, "w": None}, None):
        result = call(kv_store, "compare-and-set", scope="s", key="k", expected=expected, value=9)
        assert_same(result, {"swapped": False, "current": {"v": 1}})
    assert_same(call(kv_store, "get", scope="s", key="k"), {"v": 1})


def test_compare_and_set_expecting_a_value_of_a_missing_key_misses(kv_store: StateStore) -> None:
    result = call(kv_store, "compare-and-set", scope="s", key="k", expected=1, value=2)
    assert result == {"swapped": False, "current": None}
    assert call(kv_store, "get", scope="s", key="k") is None


def test_compare_and_set_expected_omitted_means_only_if_missing_or_null(kv_store: StateStore) -> None:
    assert call(kv_store, "compare-and-set", scope="s", key="k", value={"n": 1}) == {"swapped": True}
    second = call(kv_store, "compare-and-set", scope="s", key="k", value={"n": 2})
    assert second == {"swapped": False, "current": {"n": 1}}
    call(kv_store, "set", scope="s", key="null", value=None)
    assert call(kv_store, "compare-and-set", scope="s", key="null", expected=None, value=[]) == {
        "swapped": True
    }
    assert call(kv_store, "get", scope="s", key="null") == []


def test_compare_and_set_typed_method_takes_expected_first(kv_store: StateStore) -> None:
    assert kv_store.compare_and_set("s", "k", None, 1).swapped
    missed = kv_store.compare_and_set("s", "k", 2, 3)
    assert (missed.swapped, missed.current) == (False, 1)
    assert kv_store.compare_and_set("s", "k", 1, 3) == CompareAndSetResult(True)
    with pytest.raises(TypeError):
        kv_store.compare_and_set("s", "k", new_value=4)  # type: ignore[call-arg]  # the removed shape


def test_compare_and_set_matches_the_same_json_spelled_otherwise(kv_store: StateStore) -> None:
    """The one-call swap offers the bytes the core would store for ``expected``; an entry holding
    the same JSON in other bytes (another writer's key order) must still swap, with its event."""
    kv_store.adapter.write("s", "k", b'{"b":[1,2],"a":"x"}')
    events: list[Any] = []
    kv_store.on_change(events.append)
    result = kv_store.compare_and_set("s", "k", {"a": "x", "b": [1, 2]}, 3)
    assert result == CompareAndSetResult(True)
    assert kv_store.get("s", "k") == 3
    assert [(e.event_type, e.old_value, e.new_value) for e in events] == [
        ("state:updated", {"b": [1, 2], "a": "x"}, 3)
    ]
    # one spelled as stored swaps too, and its event's old value is the stored one
    assert kv_store.compare_and_set("s", "k", 3, {"z": 1}).swapped
    assert (events[-1].old_value, events[-1].new_value) == (3, {"z": 1})
    # an expected with no UTF-8 form (a lone surrogate) cannot be stored, so it only misses
    missed = kv_store.compare_and_set("s", "k", "\ud800", 4)
    assert (missed.swapped, missed.current) == (False, {"z": 1})


def test_old_compare_and_set_id_is_gone(kv_store: StateStore) -> None:
    with pytest.raises(UnknownFunctionError, match="state::compare-and-set"):
        kv_store.trigger({"function_id": "state::compare_and_set", "payload": {"scope": "s", "key": "k"}})


def test_durable_compare_and_set_needs_a_durable_adapter(kv_store: StateStore) -> None:
    if kv_store.capabilities.durable:  # the file store: every acknowledged write survives a crash
        assert call(kv_store, "compare-and-set", scope="s", key="k", value=1, durable=True) == {
            "swapped": True
        }
        missed = call(kv_store, "compare-and-set", scope="s", key="k", value=2, durable=True)
        assert missed == {"swapped": False, "current": 1}
    else:  # in memory: refused, nothing written
        with pytest.raises(StateError, match="durable") as info:
            call(kv_store, "compare-and-set", scope="s", key="k", value=1, durable=True)
        assert info.value.code == "UNSUPPORTED"
        assert call(kv_store, "get", scope="s", key="k") is None
        assert call(kv_store, "compare-and-set", scope="s", key="k", value=1, durable=False) == {
            "swapped": True
        }
    with pytest.raises(DeserializationError, match="`durable` must be a boolean"):
        call(kv_store, "compare-and-set", scope="s", key="k", value=2, durable=1)
    assert call(kv_store, "get", scope="s", key="k") == 1


# -- malformed payloads: deserialization_error, nothing changes --------------------------------

MALFORMED: list[tuple[str, dict[str, Any]]] = [
    ("set", {"scope": 1, "key": "k", "value": 1}),
    ("set", {"scope": None, "key": "k", "value": 1}),
    ("set", {"key": "k", "value": 1}),
    ("set", {"scope": "s", "value": 1}),
    ("set", {"scope": "s", "key": ["k"], "value": 1}),
    ("set", {"scope": "s", "key": "k", "value": float("nan")}),
    ("set", {"scope": "s", "key": "k", "value": {1: 2}}),
    ("set", {"scope": "s", "key": "k", "value": 2**64}),
    ("set", {"scope": "\ud800", "key": "k", "value": 1}),
    ("get", {"scope": "s"}),
    ("get", {"scope": "s", "key": 5}),
    ("delete", {"scope": "s"}),
    ("delete", {"scope": 1.5, "key": "k"}),
    ("update", {"scope": "s", "key": "k"}),
    ("update", {"scope": "s", "key": "k", "ops": {"type": "set", "path": "", "value": 1}}),
    ("update", {"scope": "s", "key": "k", "ops": "[]"}),
    ("update", {"scope": "s", "key": "k", "ops": None}),
    ("update", {"scope": "s", "key": "k", "ops": [{"type": "bogus", "path": "a"}]}),
    ("update", {"scope": "s", "key": "k", "ops": [{"type": "increment", "path": "n", "by": 1.0}]}),
    ("update", {"scope": "s", "key": "k", "ops": [{"type": "increment", "path": "n", "by": "1"}]}),
    ("update", {"scope": "s", "key": "k", "ops": [{"type": "decrement", "path": "n", "by": True}]}),
    ("update", {"scope": "s", "key": "k", "ops": [{"type": "set", "path": "a", "value": 1}, 7]}),
    ("update", {"scope": 0, "key": "k", "ops": []}),
    ("list", {}),
    ("list", {"scope": {}}),
    ("list_keys", {"scope": None}),
    ("list_entries", {"limit": 5}),
    ("compare-and-set", {"scope": "s", "key": "k", "expected": 1}),
    ("compare-and-set", {"scope": "s", "key": "k", "data": 1}),
    ("compare-and-set", {"scope": "s", "key": 1, "value": 1}),
    ("compare-and-set", {"scope": "s", "key": "k", "value": float("inf")}),
]


@pytest.mark.parametrize(
    ("function", "payload"), MALFORMED, ids=[f"{f}-{i}" for i, (f, _) in enumerate(MALFORMED)]
)
def test_malformed_payload_is_deserialization_error_and_changes_nothing(
    memory_store: StateStore, function: str, payload: dict[str, Any]
) -> None:
    call(memory_store, "set", scope="s", key="k", value={"n": 1})
    with pytest.raises(DeserializationError) as info:
        call(memory_store, function, **payload)
    assert info.value.code == "deserialization_error"
    assert call(memory_store, "get", scope="s", key="k") == {"n": 1}
    assert call(memory_store, "list_groups") == {"groups": ["s"]}
    assert call(memory_store, "list_keys", scope="s") == {"keys": ["k"]}


@pytest.mark.parametrize("payload", [[], "scope", 5, True])
def test_payload_not_an_object_is_deserialization_error(memory_store: StateStore, payload: Any) -> None:
    with pytest.raises(DeserializationError, match="payload must be an object"):
        memory_store.trigger({"function_id": "state::get", "payload": payload})


def test_request_not_an_object_is_deserialization_error(memory_store: StateStore) -> None:
    with pytest.raises(DeserializationError):
        memory_store.trigger(["state::get"])  # type: ignore[arg-type]


def test_payload_absent_or_null_counts_as_empty(memory_store: StateStore) -> None:
    assert memory_store.trigger({"function_id": "state::list_groups"}) == {"groups": []}
    assert memory_store.trigger({"function_id": "state::list_groups", "payload": None}) == {"groups": []}
    with pytest.raises(DeserializationError, match="scope"):
        memory_store.trigger({"function_id": "state::get"})


def test_unknown_payload_fields_are_ignored(kv_store: StateStore) -> None:
    extra = {"unknown": {"nested": [1]}, "ttl": 5, "group_id": "legacy"}
    assert call(kv_store, "set", scope="s", key="k", value=1, **extra)["new_value"] == 1
    assert call(kv_store, "get", scope="s", key="k", **extra) == 1
    assert call(kv_store, "list", scope="s", **extra) == [1]
    assert call(kv_store, "list_groups", **extra) == {"groups": ["s"]}
    assert call(kv_store, "compare-and-set", scope="s", key="k", expected=1, value=2, **extra) == {
        "swapped": True
    }
    assert call(kv_store, "delete", scope="s", key="k", **extra) == 2


@pytest.mark.parametrize("function_id", ["state::nope", "kv::get", "state::", "get", None, 5, "STATE::get"])
def test_unknown_function_id(memory_store: StateStore, function_id: Any) -> None:
    with pytest.raises(UnknownFunctionError) as info:
        memory_store.trigger({"function_id": function_id, "payload": {"scope": "s", "key": "k"}})
    assert info.value.code == "function_not_found"
    assert isinstance(info.value, StateError)


def test_missing_function_id(memory_store: StateStore) -> None:
    with pytest.raises(UnknownFunctionError):
        memory_store.trigger({"payload": {}})


# -- max_value_bytes ---------------------------------------------------------------------------


@pytest.fixture
def limited_store() -> Any:
    # {"v":"xxxxxxxxxx"} is 18 bytes: the limit sits exactly on it
    with open_store({"adapter": {"name": "kv"}, "max_value_bytes": 18}) as store:
        yield store


def test_max_value_bytes_boundary_is_inclusive(limited_store: StateStore) -> None:
    assert call(limited_store, "set", scope="s", key="k", value={"v": "x" * 10})["new_value"] == {
        "v": "x" * 10
    }
    with pytest.raises(ValueTooLargeError) as info:
        call(limited_store, "set", scope="s", key="k", value={"v": "x" * 11})
    assert f"{info.value.code}: {info.value}" == (
        "VALUE_TOO_LARGE: value exceeds the configured max_value_bytes limit of 18"
    ), "iii's state worker's text"
    assert call(limited_store, "get", scope="s", key="k") == {"v": "x" * 10}


def test_max_value_bytes_counts_utf8_bytes(limited_store: StateStore) -> None:
    with pytest.raises(ValueTooLargeError):
        call(limited_store, "set", scope="s", key="k", value="é" * 9)  # 11 characters, 20 bytes


@pytest.mark.parametrize(
    ("function", "payload"),
    [
        ("set", {"value": "x" * 20}),
        ("update", {"ops": [{"type": "set", "path": "v", "value": "x" * 20}]}),
        ("update", {"ops": [{"type": "append", "path": "", "value": "y" * 20}]}),
        ("compare-and-set", {"value": ["x" * 20]}),
    ],
)
def test_max_value_bytes_stores_nothing(
    limited_store: StateStore, function: str, payload: dict[str, Any]
) -> None:
    with pytest.raises(ValueTooLargeError):
        call(limited_store, function, scope="s", key="k", **payload)
    assert call(limited_store, "get", scope="s", key="k") is None
    assert call(limited_store, "list_groups") == {"groups": []}


def test_max_value_bytes_failed_update_keeps_old_value(limited_store: StateStore) -> None:
    call(limited_store, "set", scope="s", key="k", value="abc")
    with pytest.raises(ValueTooLargeError):
        call(
            limited_store,
            "update",
            scope="s",
            key="k",
            ops=[{"type": "append", "path": "", "value": "d" * 20}],
        )
    assert call(limited_store, "get", scope="s", key="k") == "abc"
    with pytest.raises(ValueTooLargeError):
        call(limited_store, "compare-and-set", scope="s", key="k", expected="abc", value="e" * 20)
    assert call(limited_store, "get", scope="s", key="k") == "abc"


@pytest.mark.parametrize("expected", [float("nan"), {1: 2}, {"s": {1, 2}}])
def test_compare_and_set_non_json_expected_is_deserialization_error(
    memory_store: StateStore, expected: Any
) -> None:
    call(memory_store, "set", scope="s", key="k", value=1)
    with pytest.raises(DeserializationError):
        memory_store.compare_and_set("s", "k", expected, 2)
    with pytest.raises(DeserializationError):
        memory_store.compare_and_set("s", "missing", expected, 2)

"""contract § Functions: every function's payload, result and error codes, through the wire (``trigger``)."""

from __future__ import annotations

from typing import Any

import pytest

from iii_state_core import StateStore

from ..processes import StoreSpec
from .base import call, wire_error

# (function, payload with {scope} and {key} placeholders, what is wrong)
MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("set", {"key": "k", "value": 1}, "scope missing"),
    ("set", {"scope": 7, "key": "k", "value": 1}, "scope not a string"),
    ("set", {"scope": "{scope}", "key": None, "value": 1}, "key null"),
    ("set", {"scope": "{scope}", "key": ["k"], "value": 1}, "key a list"),
    ("set", {"scope": "{scope}", "key": "k"}, "value missing"),
    ("get", {"scope": "{scope}"}, "key missing"),
    ("get", {"scope": True, "key": "k"}, "scope a boolean"),
    ("delete", {"scope": "{scope}", "key": 1}, "key a number"),
    ("update", {"scope": "{scope}", "key": "k"}, "ops missing"),
    ("update", {"scope": "{scope}", "key": "k", "ops": {"type": "set"}}, "ops not a list"),
    (
        "update",
        {"scope": "{scope}", "key": "k", "ops": [{"type": "multiply", "path": "n"}]},
        "unknown op type",
    ),
    ("update", {"scope": "{scope}", "key": "k", "ops": [{"path": "n", "value": 1}]}, "op type missing"),
    ("update", {"scope": "{scope}", "key": "k", "ops": ["set"]}, "op not an object"),
    (
        "update",
        {"scope": "{scope}", "key": "k", "ops": [{"type": "increment", "path": "n", "by": 1.5}]},
        "by a float",
    ),
    (
        "update",
        {"scope": "{scope}", "key": "k", "ops": [{"type": "increment", "path": "n", "by": 1.0}]},
        "by 1.0",
    ),
    (
        "update",
        {"scope": "{scope}", "key": "k", "ops": [{"type": "increment", "path": "n", "by": "1"}]},
        "by a string",
    ),
    (
        "update",
        {"scope": "{scope}", "key": "k", "ops": [{"type": "increment", "path": "n", "by": True}]},
        "by a boolean",
    ),
    (
        "update",
        {"scope": "{scope}", "key": "k", "ops": [{"type": "increment", "path": "n", "by": 2**63}]},
        "by past i64",
    ),
    ("update", {"scope": "{scope}", "key": "k", "ops": [{"type": "decrement", "path": "n"}]}, "by missing"),
    (
        "update",
        {"scope": "{scope}", "key": "k", "ops": [{"type": "increment", "by": 1}]},
        "increment path missing",
    ),
    (
        "update",
        {"scope": "{scope}", "key": "k", "ops": [{"type": "set", "path": 3, "value": 1}]},
        "set path a number",
    ),
    ("update", {"scope": "{scope}", "key": "k", "ops": [{"type": "remove"}]}, "remove path missing"),
    (
        "update",
        {"scope": "{scope}", "key": "k", "ops": [{"type": "merge", "path": "a"}]},
        "merge value missing",
    ),
    (
        "update",
        {"scope": "{scope}", "key": "k", "ops": [{"type": "merge", "path": [1], "value": {}}]},
        "merge path list of numbers",
    ),
    (
        "update",
        {"scope": "{scope}", "key": "k", "ops": [{"type": "append", "path": "a"}]},
        "append value missing",
    ),
    (
        "update",
        {
            "scope": "{scope}",
            "key": "k",
            "ops": [{"type": "set", "path": "a", "value": 1}, {"type": "bogus"}],
        },
        "second op bad",
    ),
    ("list", {}, "scope missing"),
    ("list_keys", {"scope": 1}, "scope a number"),
    ("list_entries", {"scope": "{scope}", "limit": -1, "_caller_worker_id": "c"}, "limit negative"),
    ("list_entries", {"scope": "{scope}", "limit": "10", "_caller_worker_id": "c"}, "limit a string"),
    ("list_entries", {"scope": "{scope}", "limit": True, "_caller_worker_id": "c"}, "limit a boolean"),
    ("list_entries", {"scope": "{scope}", "cursor": 5, "_caller_worker_id": "c"}, "cursor a number"),
    ("compare-and-set", {"scope": "{scope}", "key": "k", "data": 1}, "value missing (no data alias)"),
    ("compare-and-set", {"scope": "{scope}", "key": 2, "value": 1}, "key a number"),
]


def _fill(payload: Any, scope: str) -> Any:
    if isinstance(payload, dict):
        return {k: _fill(v, scope) for k, v in payload.items()}
    if isinstance(payload, list):
        return [_fill(v, scope) for v in payload]
    return scope if payload == "{scope}" else payload


#: The engine stamps the caller's worker id on every call; ``trigger`` callers pass one.
CALLER = {"_caller_worker_id": "conformance"}


class FunctionTests:
    # -- set / get -------------------------------------------------------------------------------
    def test_set_returns_old_and_new_value(self, store: StateStore, scope: str) -> None:
        first = call(store, "set", {"scope": scope, "key": "k", "value": {"a": 1}})
        assert first == {"old_value": None, "new_value": {"a": 1}}
        second = call(store, "set", {"scope": scope, "key": "k", "value": [1, 2]})
        assert second == {"old_value": {"a": 1}, "new_value": [1, 2]}
        assert call(store, "get", {"scope": scope, "key": "k"}) == [1, 2]

    def test_set_accepts_data_as_old_alias_of_value(self, store: StateStore, scope: str) -> None:
        result = call(store, "set", {"scope": scope, "key": "k", "data": "hello"})
        assert result == {"old_value": None, "new_value": "hello"}
        assert call(store, "get", {"scope": scope, "key": "k"}) == "hello"

    def test_get_of_missing_key_is_null(self, store: StateStore, scope: str) -> None:
        assert call(store, "get", {"scope": scope, "key": "nope"}) is None
        assert store.get(scope, "nope") is None

    def test_stored_null_differs_from_missing(self, store: StateStore, scope: str) -> None:
        assert call(store, "set", {"scope": scope, "key": "k", "value": None}) == {
            "old_value": None,
            "new_value": None,
        }
        assert call(store, "list_keys", {"scope": scope}) == {"keys": ["k"]}
        assert call(store, "list", {"scope": scope}) == [None]
        # set tells them apart: overwriting a stored null is an update, its old value null
        assert call(store, "set", {"scope": scope, "key": "k", "value": 1})["old_value"] is None
        assert call(store, "list_keys", {"scope": scope}) == {"keys": ["k"]}

    def test_unknown_payload_fields_are_ignored(self, store: StateStore, scope: str) -> None:
        extra = {"ttl": 5, "consistency": "strong", "nested": {"x": [1]}}
        assert call(store, "set", {"scope": scope, "key": "k", "value": 1, **extra})["new_value"] == 1
        assert call(store, "get", {"scope": scope, "key": "k", **extra}) == 1
        assert call(store, "list", {"scope": scope, **extra}) == [1]
        assert call(store, "list_groups", extra)["groups"].count(scope) == 1
        assert call(store, "delete", {"scope": scope, "key": "k", **extra}) == 1

    # -- delete ----------------------------------------------------------------------------------
    def test_delete_returns_the_bare_removed_value(self, store: StateStore, scope: str) -> None:
        call(store, "set", {"scope": scope, "key": "k", "value": {"v": [1]}})
        assert call(store, "delete", {"scope": scope, "key": "k"}) == {"v": [1]}
        assert call(store, "get", {"scope": scope, "key": "k"}) is None
        assert call(store, "delete", {"scope": scope, "key": "k"}) is None

    # -- update ----------------------------------------------------------------------------------
    def test_update_result_has_errors_only_when_an_op_failed(self, store: StateStore, scope: str) -> None:
        ok = call(
            store, "update", {"scope": scope, "key": "k", "ops": [{"type": "set", "path": "a", "value": 1}]}
        )
        assert ok == {"old_value": None, "new_value": {"a": 1}}
        bad = call(
            store,
            "update",
            {"scope": scope, "key": "k", "ops": [{"type": "append", "path": "a", "value": 2}]},
        )
        assert bad["old_value"] == {"a": 1} and bad["new_value"] == {"a": 1}
        assert [(e["op_index"], e["code"]) for e in bad["errors"]] == [(0, "append.type_mismatch")]
        assert isinstance(bad["errors"][0]["message"], str) and "a" in bad["errors"][0]["message"]

    def test_update_with_no_ops_writes_empty_object_for_missing_key(
        self, store: StateStore, scope: str
    ) -> None:
        assert call(store, "update", {"scope": scope, "key": "k", "ops": []}) == {
            "old_value": None,
            "new_value": {},
        }
        assert call(store, "get", {"scope": scope, "key": "k"}) == {}
        assert call(store, "list_keys", {"scope": scope}) == {"keys": ["k"]}

    def test_update_failing_every_op_still_writes_back(self, store: StateStore, scope: str) -> None:
        result = call(
            store,
            "update",
            {"scope": scope, "key": "k", "ops": [{"type": "append", "path": ["x", "__proto__"], "value": 1}]},
        )
        assert result["new_value"] == {} and result["errors"][0]["code"] == "append.path.proto_polluted"
        assert call(store, "list_keys", {"scope": scope}) == {"keys": ["k"]}

    # -- list / list_keys / list_groups ------------------------------------------------------------
    def test_list_returns_values_of_the_scope_only(self, store: StateStore, make_scope: Any) -> None:
        a, b = make_scope("-a"), make_scope("-b")
        for i in range(5):
            call(store, "set", {"scope": a, "key": f"k{i}", "value": {"i": i}})
        call(store, "set", {"scope": b, "key": "k0", "value": "other"})
        values = call(store, "list", {"scope": a})
        assert sorted(v["i"] for v in values) == [0, 1, 2, 3, 4]
        assert call(store, "list", {"scope": make_scope("-unknown")}) == []

    def test_list_keys_returns_keys(self, store: StateStore, scope: str) -> None:
        for key in ["b", "a", "c"]:
            store.set(scope, key, 1)
        result = call(store, "list_keys", {"scope": scope})
        assert set(result) == {"keys"} and sorted(result["keys"]) == ["a", "b", "c"]

    def test_list_groups_is_sorted_deduplicated_and_non_empty(
        self, store: StateStore, make_scope: Any
    ) -> None:
        scopes = [make_scope(s) for s in ["-z", "-a", "-é", "-😀", "-A"]]
        for s in scopes:
            store.set(s, "k1", 1)
            store.set(s, "k2", 2)
        emptied = make_scope("-emptied")
        store.set(emptied, "k", 1)
        store.delete(emptied, "k")
        groups = call(store, "list_groups", {})["groups"]
        assert groups == sorted(set(groups)), "groups must be unique and sorted by code point"
        assert all(groups.count(s) == 1 for s in scopes)
        assert emptied not in groups, "a scope whose last key was deleted is not a group"

    # -- list_entries ----------------------------------------------------------------------------
    def test_list_entries_pages_through_a_scope(self, store: StateStore, scope: str) -> None:
        expected = {f"key-{i:03d}": {"i": i} for i in range(25)}
        for k, v in expected.items():
            store.set(scope, k, v)
        seen: dict[str, Any] = {}
        cursor = None
        pages = 0
        while True:
            payload: dict[str, Any] = {"scope": scope, "limit": 10, **CALLER}
            if cursor is not None:
                payload["cursor"] = cursor
            page = call(store, "list_entries", payload)
            assert list(page) == ["entries", "next_cursor", "done", "offset", "total"]
            assert len(page["entries"]) <= 10
            for key, value in page["entries"]:
                seen[key] = value
            pages += 1
            assert pages < 50, "list_entries never reported done"
            if page["done"]:
                assert page["next_cursor"] is None
                break
            assert isinstance(page["next_cursor"], str)
            cursor = page["next_cursor"]
        assert seen == expected

    def test_list_entries_default_limit_is_100(self, store: StateStore, scope: str) -> None:
        for i in range(130):
            store.set(scope, f"k{i}", i)
        page = call(store, "list_entries", {"scope": scope, **CALLER})
        assert 1 <= len(page["entries"]) <= 100

    def test_list_entries_of_unknown_scope_is_done(self, store: StateStore, scope: str) -> None:
        assert call(store, "list_entries", {"scope": scope, **CALLER}) == {
            "entries": [],
            "next_cursor": None,
            "done": True,
            "offset": 0,
            "total": 0,
        }

    def test_list_entries_rejects_a_cursor_of_another_scope(self, store: StateStore, make_scope: Any) -> None:
        a, b = make_scope("-a"), make_scope("-b")
        for i in range(5):
            store.set(a, f"k{i}", i)
        page = call(store, "list_entries", {"scope": a, "limit": 2, **CALLER})
        assert page["next_cursor"]
        error = wire_error(
            store, "list_entries", {"scope": b, "limit": 2, "cursor": page["next_cursor"], **CALLER}
        )
        assert error.code == "INVALID_CURSOR"

    # -- compare-and-set: the wire's cases are in worker_parity; here the typed method --------------
    def test_compare_and_set_uses_structural_json_equality(self, store: StateStore, scope: str) -> None:
        store.set(scope, "k", {"a": 1, "b": [True, None], "c": 1.5})
        reordered = {"c": 1.5, "b": [True, None], "a": 1}
        assert store.compare_and_set(scope, "k", reordered, "next").swapped
        store.set(scope, "n", {"a": 1})
        assert not store.compare_and_set(scope, "n", {"a": 1.0}, "x").swapped, "1 is not 1.0"
        assert not store.compare_and_set(scope, "n", {"a": True}, "x").swapped, "1 is not true"
        store.set(scope, "t", True)
        missed = store.compare_and_set(scope, "t", 1, "x")
        assert (missed.swapped, missed.current) == (False, True), "true is not 1"
        assert not store.compare_and_set(scope, "gone", 1, "x").swapped, "a missing key matches no value"
        assert store.get(scope, "gone") is None

    # -- malformed payloads ------------------------------------------------------------------------
    @pytest.mark.parametrize(
        ("function", "payload", "problem"), MALFORMED, ids=[f"{f}-{p}" for f, _, p in MALFORMED]
    )
    def test_malformed_payload_is_deserialization_error_and_changes_nothing(
        self, store: StateStore, scope: str, function: str, payload: dict[str, Any], problem: str
    ) -> None:
        store.set(scope, "k", {"n": 1, "a": [1]})
        error = wire_error(store, function, _fill(payload, scope))
        assert error.code == "deserialization_error", f"{problem}: got {error.code}: {error}"
        assert str(error), "the error must say what is wrong"
        assert store.get(scope, "k") == {"n": 1, "a": [1]}
        assert sorted(store.list_keys(scope)) == ["k"]

    def test_payload_that_is_not_an_object_is_rejected(self, store: StateStore) -> None:
        payloads: list[Any] = [[], "scope", 3]
        for payload in payloads:
            assert wire_error(store, "get", payload).code == "deserialization_error"

    # -- max_value_bytes (a store opened with the limit) --------------------------------------------
    def test_max_value_bytes_guards_every_write(self, store: StateStore, scope: str) -> None:
        spec = StoreSpec.of(store)
        if spec is None:
            pytest.skip("the store was not opened with open_store(); cannot reopen it with max_value_bytes")
        limited_spec = StoreSpec(
            spec.adapter,
            spec.adapter_config,
            {**spec.state_block, "max_value_bytes": 64},
            spec.plugin_modules,
            spec.load_entry_points,
        )
        with limited_spec.open() as limited:
            big = "x" * 100
            assert (
                wire_error(limited, "set", {"scope": scope, "key": "a", "value": big}).code
                == "VALUE_TOO_LARGE"
            )
            upd = {"scope": scope, "key": "b", "ops": [{"type": "set", "path": "s", "value": big}]}
            assert wire_error(limited, "update", upd).code == "VALUE_TOO_LARGE"
            cas = {"scope": scope, "key": "c", "value": big}
            assert wire_error(limited, "compare-and-set", cas).code == "VALUE_TOO_LARGE"
            assert limited.list_keys(scope) == [], "a refused write stores nothing"
            assert limited.set(scope, "ok", "x" * 10).new_value == "x" * 10

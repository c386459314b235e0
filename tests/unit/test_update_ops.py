"""contract § Update ops: paths, set, merge, remove, the skip-and-report batch, and whole-call parse errors.

Numbers are in ``test_update_ops_numeric.py``, append in ``test_update_ops_append.py`` and
the engine's own vectors in ``test_engine_vectors.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from unit_helpers import assert_same, call, codes, run_ops

from iii_state_core import DeserializationError, StateStore
from iii_state_core.update_ops import parse_ops

FIELD_OPS = ("set", "increment", "decrement", "remove")
SEGMENT_OPS = ("merge", "append")
ALL_OPS = FIELD_OPS + SEGMENT_OPS
PROTO_WORDS = ("__proto__", "constructor", "prototype")


def op_at(kind: str, path: Any) -> dict[str, Any]:
    """A well-formed op of ``kind`` at ``path`` (a path the op type can parse)."""
    op: dict[str, Any] = {"type": kind, "path": path}
    if kind in ("increment", "decrement"):
        op["by"] = 1
    elif kind == "merge":
        op["value"] = {"m": 1}
    elif kind in ("set", "append"):
        op["value"] = "v"
    return op


# -- paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FIELD_OPS)
def test_path_dots_are_literal_for_field_ops(kind: str) -> None:
    old = {"a.b": 5, "a": {"b": 7}}
    new, errors = run_ops(old, [op_at(kind, "a.b")])
    assert errors == []
    expected: dict[str, Any] = {
        "set": {"a.b": "v", "a": {"b": 7}},
        "increment": {"a.b": 6, "a": {"b": 7}},
        "decrement": {"a.b": 4, "a": {"b": 7}},
        "remove": {"a": {"b": 7}},
    }
    assert_same(new, expected[kind])


def test_path_dots_are_literal_for_merge_and_append() -> None:
    new, errors = run_ops(
        {"a": {"b": {"keep": 1}}},
        [
            {"type": "merge", "path": "a.b", "value": {"x": 1}},
            {"type": "append", "path": "c.d", "value": 1},
        ],
    )
    assert errors == []
    assert_same(new, {"a": {"b": {"keep": 1}}, "a.b": {"x": 1}, "c.d": [1]})


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("set", "v"), ("increment", 8), ("decrement", 6), ("remove", None)],
)
def test_path_empty_string_means_whole_value_for_field_ops(kind: str, expected: Any) -> None:
    new, errors = run_ops(7, [op_at(kind, "")])
    assert errors == []
    assert_same(new, expected)


@pytest.mark.parametrize("path", [None, "", []], ids=["null", "empty-string", "empty-array"])
def test_path_absent_null_empty_and_empty_array_mean_whole_value_for_merge_and_append(path: Any) -> None:
    merge: dict[str, Any] = {"type": "merge", "value": {"b": 2}}
    append: dict[str, Any] = {"type": "append", "value": "!"}
    if path is not None:
        merge["path"] = path
        append["path"] = path
    assert_same(run_ops({"a": 1}, [merge]), ({"a": 1, "b": 2}, []))
    assert_same(run_ops("hi", [append]), ("hi!", []))
    # the key "" is a real field elsewhere: a whole-value path must not touch it
    assert_same(run_ops({"": {"x": 0}}, [merge])[0], {"": {"x": 0}, "b": 2})


def test_path_string_for_merge_is_one_segment_same_as_single_element_array() -> None:
    as_string = run_ops({}, [{"type": "merge", "path": "a", "value": {"x": 1}}])
    as_array = run_ops({}, [{"type": "merge", "path": ["a"], "value": {"x": 1}}])
    assert_same(as_string, ({"a": {"x": 1}}, []))
    assert_same(as_array, as_string)


def test_path_array_nests_for_merge_and_append() -> None:
    new, errors = run_ops(
        {},
        [
            {"type": "merge", "path": ["a", "b", "c"], "value": {"x": 1}},
            {"type": "append", "path": ["a", "log"], "value": 1},
        ],
    )
    assert errors == []
    assert_same(new, {"a": {"b": {"c": {"x": 1}}, "log": [1]}})


@pytest.mark.parametrize("kind", SEGMENT_OPS)
def test_path_too_deep_fails_the_op(kind: str) -> None:
    ok, ok_errors = run_ops({}, [op_at(kind, [f"k{i}" for i in range(32)])])
    assert ok_errors == []
    assert ok != {}
    new, errors = run_ops({"keep": 1}, [op_at(kind, [f"k{i}" for i in range(33)])])
    assert codes(errors) == [(0, f"{kind}.path.too_deep")]
    assert "33" in errors[0]["message"] and "32" in errors[0]["message"]
    assert_same(new, {"keep": 1})


def _segment_paths(kind: str, segment: str) -> list[Any]:
    """The ways ``segment`` can reach an op of ``kind``: as a field, alone, or nested."""
    if kind in FIELD_OPS:
        return [segment]
    return [segment, [segment], ["outer", segment], [segment, "inner"]]


@pytest.mark.parametrize("kind", ALL_OPS)
def test_path_segment_too_long_counts_utf8_bytes(kind: str) -> None:
    emoji_100 = "😀" * 100  # 100 characters, 400 bytes
    emoji_64 = "😀" * 64  # 64 characters, exactly 256 bytes
    for path in _segment_paths(kind, emoji_100) + _segment_paths(kind, "x" * 257):
        new, errors = run_ops({"keep": 1}, [op_at(kind, path)])
        assert codes(errors) == [(0, f"{kind}.path.segment_too_long")], path
        assert_same(new, {"keep": 1})
    assert "400 bytes" in run_ops({}, [op_at(kind, emoji_100)])[1][0]["message"]
    for path in _segment_paths(kind, emoji_64) + _segment_paths(kind, "x" * 256):
        assert run_ops({}, [op_at(kind, path)])[1] == [], path


@pytest.mark.parametrize("kind", SEGMENT_OPS)
@pytest.mark.parametrize("path", [[""], ["a", ""], ["", "a"], ["a", "", "b"]])
def test_path_empty_segment_inside_array_fails_the_op(kind: str, path: list[str]) -> None:
    new, errors = run_ops({"keep": 1}, [op_at(kind, path)])
    assert codes(errors) == [(0, f"{kind}.path.empty_segment")]
    assert_same(new, {"keep": 1})


@pytest.mark.parametrize("kind", ALL_OPS)
@pytest.mark.parametrize("word", PROTO_WORDS)
def test_path_proto_polluted_fails_the_op(kind: str, word: str) -> None:
    for path in _segment_paths(kind, word):
        new, errors = run_ops({"keep": 1}, [op_at(kind, path)])
        assert codes(errors) == [(0, f"{kind}.path.proto_polluted")], path
        assert word in errors[0]["message"]
        assert_same(new, {"keep": 1})


def test_path_similar_to_proto_words_is_allowed() -> None:
    new, errors = run_ops({}, [op_at("set", "__proto"), op_at("merge", ["Constructor", "prototypes"])])
    assert errors == []
    assert_same(new, {"__proto": "v", "Constructor": {"prototypes": {"m": 1}}})


# -- set ---------------------------------------------------------------------------------------


def test_set_root_with_value_replaces_whole_value() -> None:
    assert_same(run_ops({"a": 1}, [{"type": "set", "path": "", "value": [1, {"b": 2}]}]), ([1, {"b": 2}], []))


def test_set_root_without_value_stores_null() -> None:
    assert_same(run_ops({"a": 1}, [{"type": "set", "path": ""}]), (None, []))


def test_set_field_without_value_stores_null() -> None:
    assert_same(run_ops({"a": 1}, [{"type": "set", "path": "b"}]), ({"a": 1, "b": None}, []))


def test_set_field_replaces_and_keeps_siblings() -> None:
    new, errors = run_ops({"a": {"deep": 1}, "b": 2}, [{"type": "set", "path": "a", "value": 3}])
    assert_same((new, errors), ({"a": 3, "b": 2}, []))


def test_set_field_on_missing_key_starts_from_empty_object() -> None:
    assert_same(run_ops(None, [op_at("set", "a")], missing=True), ({"a": "v"}, []))


@pytest.mark.parametrize(
    ("current", "type_name"),
    [(5, "number"), ([1], "array"), ("s", "string"), (None, "null"), (True, "boolean"), (1.5, "number")],
)
def test_set_target_not_object(current: Any, type_name: str) -> None:
    new, errors = run_ops(current, [{"type": "set", "path": "field", "value": 1}])
    assert codes(errors) == [(0, "set.target_not_object")]
    assert "'field'" in errors[0]["message"] and type_name in errors[0]["message"]
    assert_same(new, current)


# -- merge -------------------------------------------------------------------------------------


def test_merge_root_is_shallow_and_keeps_siblings() -> None:
    new, errors = run_ops(
        {"keep": 1, "nested": {"a": 1, "b": 2}},
        [{"type": "merge", "value": {"nested": {"a": 9}, "new": []}}],
    )
    assert errors == []
    assert_same(new, {"keep": 1, "nested": {"a": 9}, "new": []})


def test_merge_root_on_missing_key_merges_into_empty_object() -> None:
    assert_same(run_ops(None, [{"type": "merge", "value": {"a": 1}}], missing=True), ({"a": 1}, []))


@pytest.mark.parametrize("current", [5, 1.5, "s", [1], None, True, False])
def test_merge_root_on_non_object_root_is_silent_noop(current: Any) -> None:
    assert_same(run_ops(current, [{"type": "merge", "value": {"a": 1}}]), (current, []))


@pytest.mark.parametrize("current", [5, "s", [1], None, True])
def test_merge_at_path_replaces_non_object_root_with_object(current: Any) -> None:
    new, errors = run_ops(current, [{"type": "merge", "path": ["a", "b"], "value": {"x": 1}}])
    assert_same((new, errors), ({"a": {"b": {"x": 1}}}, []))


def test_merge_at_path_creates_missing_and_replaces_non_object_intermediates() -> None:
    new, errors = run_ops(
        {"a": {"b": 5, "sibling": 1}, "top": True},
        [{"type": "merge", "path": ["a", "b", "c"], "value": {"x": 1}}],
    )
    assert errors == []
    assert_same(new, {"a": {"b": {"c": {"x": 1}}, "sibling": 1}, "top": True})


def test_merge_at_path_keeps_siblings_of_target() -> None:
    new, errors = run_ops(
        {"cfg": {"a": 1, "b": {"deep": 1}}},
        [{"type": "merge", "path": "cfg", "value": {"b": {"other": 2}, "c": 3}}],
    )
    assert errors == []
    assert_same(new, {"cfg": {"a": 1, "b": {"other": 2}, "c": 3}})


@pytest.mark.parametrize(
    ("value", "path"), [([1], None), ("s", None), (1, "a"), (None, "a"), (True, ["a", "b"])]
)
def test_merge_value_not_an_object(value: Any, path: Any) -> None:
    new, errors = run_ops({"keep": 1}, [{"type": "merge", "path": path, "value": value}])
    assert codes(errors) == [(0, "merge.value.not_an_object")]
    assert_same(new, {"keep": 1})


def test_merge_value_too_many_keys_1024_ok_1025_fails() -> None:
    ok_value = {f"k{i}": i for i in range(1024)}
    new, errors = run_ops({}, [{"type": "merge", "value": ok_value}])
    assert errors == [] and len(new) == 1024
    new, errors = run_ops({"keep": 1}, [{"type": "merge", "value": {**ok_value, "one_more": 1}}])
    assert codes(errors) == [(0, "merge.value.too_many_keys")]
    assert "1025" in errors[0]["message"]
    assert_same(new, {"keep": 1})


@pytest.mark.parametrize("word", PROTO_WORDS)
def test_merge_value_proto_polluted_top_level_key(word: str) -> None:
    new, errors = run_ops({"keep": 1}, [{"type": "merge", "path": "a", "value": {"ok": 1, word: {}}}])
    assert codes(errors) == [(0, "merge.value.proto_polluted")]
    assert word in errors[0]["message"]
    assert_same(new, {"keep": 1})


def test_merge_value_proto_words_below_top_level_are_allowed() -> None:
    new, errors = run_ops({}, [{"type": "merge", "value": {"a": {"__proto__": 1}}}])
    assert_same((new, errors), ({"a": {"__proto__": 1}}, []))


def _nested_objects(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


def test_merge_value_too_deep_16_ok_17_fails() -> None:
    assert run_ops({}, [{"type": "merge", "value": _nested_objects(16)}])[1] == []
    new, errors = run_ops({"keep": 1}, [{"type": "merge", "value": _nested_objects(17)}])
    assert codes(errors) == [(0, "merge.value.too_deep")]
    assert "17" in errors[0]["message"]
    assert_same(new, {"keep": 1})


def test_merge_value_depth_counts_arrays_not_scalars() -> None:
    def innermost(leaf: Any) -> dict[str, Any]:
        value: dict[str, Any] = {"leaf": leaf}  # object 1 of 15
        for _ in range(14):
            value = {"n": value}
        return value

    assert run_ops({}, [{"type": "merge", "value": innermost(1)}])[1] == []  # scalars add nothing
    assert run_ops({}, [{"type": "merge", "value": innermost([1])}])[1] == []  # 15 + 1 array = 16
    _, errors = run_ops({}, [{"type": "merge", "value": innermost([[1]])}])  # 15 + 2 arrays = 17
    assert codes(errors) == [(0, "merge.value.too_deep")]


# -- remove ------------------------------------------------------------------------------------


def test_remove_field_keeps_siblings() -> None:
    assert_same(run_ops({"a": 1, "b": 2}, [{"type": "remove", "path": "a"}]), ({"b": 2}, []))


def test_remove_missing_field_is_silent() -> None:
    assert_same(run_ops({"a": 1}, [{"type": "remove", "path": "zzz"}]), ({"a": 1}, []))


def test_remove_on_missing_key_leaves_empty_object() -> None:
    assert_same(run_ops(None, [{"type": "remove", "path": "a"}], missing=True), ({}, []))


def test_remove_root_makes_value_null() -> None:
    assert_same(run_ops({"a": 1}, [{"type": "remove", "path": ""}]), (None, []))


@pytest.mark.parametrize("current", [5, "s", [1], None, False])
def test_remove_target_not_object(current: Any) -> None:
    new, errors = run_ops(current, [{"type": "remove", "path": "a"}])
    assert codes(errors) == [(0, "remove.target_not_object")]
    assert "'a'" in errors[0]["message"]
    assert_same(new, current)


# -- the batch ---------------------------------------------------------------------------------


def test_batch_failing_op_is_skipped_and_reported_others_apply() -> None:
    new, errors = run_ops(
        {"count": 1, "name": "x"},
        [
            {"type": "increment", "path": "count", "by": 1},
            {"type": "increment", "path": "name", "by": 1},
            {"type": "set", "path": "done", "value": True},
            {"type": "merge", "value": [1]},
            {"type": "increment", "path": "count", "by": 10},
        ],
    )
    assert_same(new, {"count": 12, "name": "x", "done": True})
    assert codes(errors) == [(1, "increment.not_number"), (3, "merge.value.not_an_object")]
    assert all(set(e) == {"op_index", "code", "message"} for e in errors)


def test_batch_no_rollback_when_last_op_fails() -> None:
    new, errors = run_ops({}, [op_at("set", "a"), {"type": "append", "path": "a", "value": 1}])
    assert_same(new, {"a": "v"})
    assert codes(errors) == [(1, "append.type_mismatch")]


def test_batch_ops_see_the_results_of_earlier_ops() -> None:
    new, errors = run_ops(
        None,
        [
            {"type": "set", "path": "", "value": 1},
            {"type": "increment", "path": "", "by": 2},
            {"type": "set", "path": "", "value": {}},
            {"type": "append", "path": ["a", "b"], "value": 1},
            {"type": "append", "path": ["a", "b"], "value": 2},
        ],
        missing=True,
    )
    assert_same((new, errors), ({"a": {"b": [1, 2]}}, []))


def test_batch_empty_ops_on_missing_key_gives_empty_object() -> None:
    assert_same(run_ops(None, [], missing=True), ({}, []))


def test_batch_empty_ops_on_existing_value_keeps_it() -> None:
    assert_same(run_ops([1, 2.0], []), ([1, 2.0], []))


def test_batch_through_store_writes_back_and_reports(memory_store: StateStore) -> None:
    call(memory_store, "set", scope="s", key="k", value={"n": 1, "t": "x"})
    result = call(
        memory_store,
        "update",
        scope="s",
        key="k",
        ops=[
            {"type": "increment", "path": "n", "by": 1},
            {"type": "append", "path": "t", "value": 5},
            {"type": "remove", "path": "t"},
        ],
    )
    assert_same(result["old_value"], {"n": 1, "t": "x"})
    assert_same(result["new_value"], {"n": 2})
    assert codes(result["errors"]) == [(1, "append.type_mismatch")]
    assert_same(call(memory_store, "get", scope="s", key="k"), {"n": 2})


def test_batch_empty_ops_on_missing_key_stores_empty_object(memory_store: StateStore) -> None:
    result = call(memory_store, "update", scope="s", key="new", ops=[])
    assert result == {"old_value": None, "new_value": {}}
    assert_same(call(memory_store, "get", scope="s", key="new"), {})


# -- messages ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "op", "needles"),
    [
        ({"f": "s"}, {"type": "increment", "path": "f", "by": 1}, ("'f'", "string")),
        ("s", {"type": "increment", "path": "", "by": 1}, ("'root'", "string")),
        (7, {"type": "decrement", "path": "f", "by": 1}, ("'f'", "number")),
        ([1], {"type": "set", "path": "f", "value": 1}, ("'f'", "array")),
        ({"f": 2}, {"type": "append", "path": "f", "value": 1}, ("'f'", "number")),
        ({"f": "s"}, {"type": "append", "path": "f", "value": [1]}, ("'f'", "array")),
        (True, {"type": "append", "path": ["a", "b"], "value": 1}, ("'[a, b]'", "boolean")),
        (None, {"type": "remove", "path": "f"}, ("'f'", "null")),
    ],
)
def test_messages_name_path_and_types_found(old: Any, op: dict[str, Any], needles: tuple[str, ...]) -> None:
    _, errors = run_ops(old, [op])
    assert len(errors) == 1
    for needle in needles:
        assert needle in errors[0]["message"]


# -- parsing: a malformed op fails the whole call ----------------------------------------------


@pytest.mark.parametrize(
    "ops",
    [
        {"type": "set", "path": "a"},
        "ops",
        None,
        [1],
        [{"path": "a"}],
        [{"type": "upsert", "path": "a"}],
        [{"type": "SET", "path": "a"}],
        [{"type": "set"}],
        [{"type": "set", "path": 1}],
        [{"type": "set", "path": ["a"]}],
        [{"type": "remove", "path": None}],
        [{"type": "merge", "path": "a"}],
        [{"type": "merge", "path": [1], "value": {}}],
        [{"type": "merge", "path": 5, "value": {}}],
        [{"type": "append", "path": "a"}],
        [{"type": "append", "path": ["a", None], "value": 1}],
        [{"type": "increment", "path": "a"}],
        [{"type": "increment", "by": 1}],
        [{"type": "set", "path": "a", "value": float("nan")}],
        [{"type": "set", "path": "a", "value": {1: 2}}],
        [{"type": "set", "path": "a", "value": 2**64}],
    ],
)
def test_parse_malformed_op_is_deserialization_error(ops: Any) -> None:
    with pytest.raises(DeserializationError) as info:
        parse_ops(ops, max_depth=128)
    assert info.value.code == "deserialization_error"


def test_parse_malformed_op_after_good_ones_names_its_index() -> None:
    with pytest.raises(DeserializationError, match=r"ops\[2\]"):
        parse_ops([op_at("set", "a"), op_at("remove", "a"), {"type": "nope"}], max_depth=128)


def test_parse_unknown_op_fields_are_ignored() -> None:
    new, errors = run_ops({}, [{"type": "set", "path": "a", "value": 1, "by": "x", "doc": {}}])
    assert_same((new, errors), ({"a": 1}, []))

"""contract § Update ops append: the root, one segment, two or more segments, and every target type."""

from __future__ import annotations

from typing import Any

import pytest
from unit_helpers import assert_same, codes, run_ops


def append(path: Any, value: Any) -> dict[str, Any]:
    return {"type": "append", "path": path, "value": value}


# -- root --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("hello", "hello"), ({"k": 1}, [{"k": 1}]), ([1, 2], [[1, 2]]), (None, [None]), (0, [0])],
)
def test_append_root_missing_key_is_string_or_one_element_array(value: Any, expected: Any) -> None:
    assert_same(run_ops(None, [append("", value)], missing=True), (expected, []))


def test_append_root_missing_key_with_path_absent() -> None:
    assert_same(run_ops(None, [{"type": "append", "value": 1}], missing=True), ([1], []))


@pytest.mark.parametrize("value", [1, "s", [1, 2], [], {"a": []}, None])
def test_append_root_array_pushes_exactly_one_element(value: Any) -> None:
    assert_same(run_ops([0], [append(None, value)]), ([0, value], []))


def test_append_root_string_concatenates() -> None:
    assert_same(run_ops("ab", [append("", "cd"), append([], "")]), ("abcd", []))


@pytest.mark.parametrize(
    ("value", "type_name"), [(1, "number"), ([1], "array"), ({}, "object"), (None, "null")]
)
def test_append_root_string_plus_non_string_is_type_mismatch(value: Any, type_name: str) -> None:
    new, errors = run_ops("ab", [append("", value)])
    assert codes(errors) == [(0, "append.type_mismatch")]
    assert "'root'" in errors[0]["message"] and type_name in errors[0]["message"]
    assert new == "ab"


@pytest.mark.parametrize(("value", "expected"), [("s", "s"), (1, [1]), ([1], [[1]])])
def test_append_root_null_value_acts_as_missing(value: Any, expected: Any) -> None:
    assert_same(run_ops(None, [append("", value)]), (expected, []))


@pytest.mark.parametrize(
    ("current", "type_name"),
    [({}, "object"), ({"a": 1}, "object"), (5, "number"), (1.5, "number"), (True, "boolean")],
)
def test_append_root_object_number_bool_is_type_mismatch(current: Any, type_name: str) -> None:
    new, errors = run_ops(current, [append("", "x")])
    assert codes(errors) == [(0, "append.type_mismatch")]
    assert type_name in errors[0]["message"]
    assert_same(new, current)


# -- one segment -------------------------------------------------------------------------------


def test_append_one_segment_existing_array_and_string() -> None:
    new, errors = run_ops({"a": [1], "s": "x"}, [append("a", [2]), append(["s"], "y")])
    assert_same((new, errors), ({"a": [1, [2]], "s": "xy"}, []))


def test_append_one_segment_missing_leaf_string_stays_string() -> None:
    assert_same(run_ops({}, [append("t", "hi")]), ({"t": "hi"}, []))


@pytest.mark.parametrize("value", [1, {"k": 1}, [1], None, True])
def test_append_one_segment_missing_leaf_non_string_is_array(value: Any) -> None:
    assert_same(run_ops({}, [append("t", value)]), ({"t": [value]}, []))


def test_append_one_segment_on_missing_key() -> None:
    assert_same(run_ops(None, [append("t", "a"), append("u", 1)], missing=True), ({"t": "a", "u": [1]}, []))


@pytest.mark.parametrize(("value", "expected"), [("s", "s"), (1, [1])])
def test_append_one_segment_null_leaf_acts_as_missing(value: Any, expected: Any) -> None:
    assert_same(run_ops({"t": None}, [append("t", value)]), ({"t": expected}, []))


@pytest.mark.parametrize(("leaf", "type_name"), [({}, "object"), (3, "number"), (False, "boolean")])
def test_append_one_segment_object_number_bool_leaf_is_type_mismatch(leaf: Any, type_name: str) -> None:
    new, errors = run_ops({"t": leaf}, [append("t", "x")])
    assert codes(errors) == [(0, "append.type_mismatch")]
    assert "'t'" in errors[0]["message"] and type_name in errors[0]["message"]
    assert_same(new, {"t": leaf})


def test_append_one_segment_string_leaf_plus_non_string_is_type_mismatch() -> None:
    new, errors = run_ops({"t": "x"}, [append("t", {"k": 1})])
    assert codes(errors) == [(0, "append.type_mismatch")]
    assert "object" in errors[0]["message"]
    assert_same(new, {"t": "x"})


# -- two or more segments ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["s", 1, {"k": 1}, [1], None])
def test_append_segments_missing_leaf_is_always_array(value: Any) -> None:
    assert_same(run_ops({"a": {}}, [append(["a", "b"], value)]), ({"a": {"b": [value]}}, []))


def test_append_segments_create_missing_intermediates() -> None:
    new, errors = run_ops({"keep": 1}, [append(["a", "b", "c", "d"], "s")])
    assert_same((new, errors), ({"keep": 1, "a": {"b": {"c": {"d": ["s"]}}}}, []))


def test_append_segments_replace_non_object_intermediates() -> None:
    new, errors = run_ops({"a": {"b": 5, "sib": 1}}, [append(["a", "b", "c"], 1)])
    assert_same((new, errors), ({"a": {"b": {"c": [1]}, "sib": 1}}, []))


def test_append_segments_existing_leaf_array_and_string() -> None:
    new, errors = run_ops({"a": {"l": [1], "s": "x"}}, [append(["a", "l"], [2]), append(["a", "s"], "y")])
    assert_same((new, errors), ({"a": {"l": [1, [2]], "s": "xy"}}, []))


def test_append_segments_null_leaf_acts_as_missing_leaf_of_one_segment() -> None:
    # contract: a null target behaves as a missing leaf at one segment (a string stays a string)
    new, errors = run_ops({"a": {"s": None, "n": None}}, [append(["a", "s"], "x"), append(["a", "n"], 1)])
    assert_same((new, errors), ({"a": {"s": "x", "n": [1]}}, []))


def test_append_segments_object_leaf_is_type_mismatch() -> None:
    new, errors = run_ops({"a": {"b": {}}}, [append(["a", "b"], 1)])
    assert codes(errors) == [(0, "append.type_mismatch")]
    assert "'b'" in errors[0]["message"]
    assert_same(new, {"a": {"b": {}}})


@pytest.mark.parametrize(
    ("current", "path", "label", "type_name"),
    [
        ([1], ["a", "b"], "[a, b]", "array"),
        (5, ["a"], "[a]", "number"),
        ("s", "a", "[a]", "string"),
        (None, ["x", "y", "z"], "[x, y, z]", "null"),
        (True, ["a.b", "c"], "[a.b, c]", "boolean"),
    ],
)
def test_append_non_object_root_with_path_is_target_not_object(
    current: Any, path: Any, label: str, type_name: str
) -> None:
    new, errors = run_ops(current, [append(path, 1)])
    assert codes(errors) == [(0, "append.target_not_object")]
    assert errors[0]["message"] == (
        f"Cannot append at path '{label}': target is {type_name}, expected object."
    )
    assert_same(new, current)

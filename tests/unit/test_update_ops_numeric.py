"""contract § Update ops increment/decrement: exact integers in i64 then u64, floats, and the type traps."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from unit_helpers import assert_same, call, codes, run_ops

from iii_state_core import DeserializationError, StateStore
from iii_state_core.update_ops import parse_ops

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
U64_MAX = 2**64 - 1
NUMERIC = ("increment", "decrement")


def num(kind: str, path: str, by: Any) -> dict[str, Any]:
    return {"type": kind, "path": path, "by": by}


def signed(kind: str, by: int) -> int:
    return by if kind == "increment" else -by


@pytest.mark.parametrize("kind", NUMERIC)
def test_numeric_root_on_missing_key_is_by(kind: str) -> None:
    assert_same(run_ops(None, [num(kind, "", 5)], missing=True), (signed(kind, 5), []))


@pytest.mark.parametrize("kind", NUMERIC)
@pytest.mark.parametrize("current", [0, -3, 10, 2.5])
def test_numeric_root_on_number_does_arithmetic(kind: str, current: Any) -> None:
    assert_same(run_ops(current, [num(kind, "", 2)]), (current + signed(kind, 2), []))


@pytest.mark.parametrize("kind", NUMERIC)
@pytest.mark.parametrize(
    ("current", "type_name"),
    [("5", "string"), ({}, "object"), ([1], "array"), (None, "null"), (True, "boolean"), (False, "boolean")],
)
def test_numeric_root_on_non_number_is_not_number(kind: str, current: Any, type_name: str) -> None:
    new, errors = run_ops(current, [num(kind, "", 1)])
    assert codes(errors) == [(0, f"{kind}.not_number")]
    assert type_name in errors[0]["message"] and "'root'" in errors[0]["message"]
    assert_same(new, current)


@pytest.mark.parametrize("kind", NUMERIC)
def test_numeric_missing_field_is_by(kind: str) -> None:
    assert_same(run_ops({"a": 1}, [num(kind, "n", 7)]), ({"a": 1, "n": signed(kind, 7)}, []))


@pytest.mark.parametrize("kind", NUMERIC)
def test_numeric_field_on_missing_key_creates_object(kind: str) -> None:
    assert_same(run_ops(None, [num(kind, "n", 1)], missing=True), ({"n": signed(kind, 1)}, []))


@pytest.mark.parametrize("kind", NUMERIC)
def test_numeric_null_field_is_not_number(kind: str) -> None:
    new, errors = run_ops({"n": None}, [num(kind, "n", 1)])
    assert codes(errors) == [(0, f"{kind}.not_number")]
    assert "null" in errors[0]["message"]
    assert_same(new, {"n": None})


@pytest.mark.parametrize("kind", NUMERIC)
@pytest.mark.parametrize("flag", [True, False])
def test_numeric_bool_field_is_not_number(kind: str, flag: bool) -> None:
    # Python's isinstance(True, int) trap: True + 1 would quietly give 2
    new, errors = run_ops({"n": flag}, [num(kind, "n", 1)])
    assert codes(errors) == [(0, f"{kind}.not_number")]
    assert "boolean" in errors[0]["message"]
    assert new["n"] is flag


@pytest.mark.parametrize("kind", NUMERIC)
@pytest.mark.parametrize("field", ["5", [5], {"v": 5}])
def test_numeric_other_non_number_fields_are_not_number(kind: str, field: Any) -> None:
    new, errors = run_ops({"n": field}, [num(kind, "n", 1)])
    assert codes(errors) == [(0, f"{kind}.not_number")]
    assert_same(new, {"n": field})


@pytest.mark.parametrize("kind", NUMERIC)
@pytest.mark.parametrize("current", [5, "s", [1], None, True, 1.5])
def test_numeric_non_object_target(kind: str, current: Any) -> None:
    new, errors = run_ops(current, [num(kind, "n", 1)])
    assert codes(errors) == [(0, f"{kind}.target_not_object")]
    assert "'n'" in errors[0]["message"]
    assert_same(new, current)


def test_numeric_i64_max_plus_one_is_exact() -> None:
    new, errors = run_ops({"n": I64_MAX}, [num("increment", "n", 1)])
    assert errors == []
    assert type(new["n"]) is int and new["n"] == 9223372036854775808


def test_numeric_u64_arithmetic_stays_exact() -> None:
    new, errors = run_ops({"n": U64_MAX - 10}, [num("increment", "n", 3), num("decrement", "n", 1)])
    assert errors == [] and new["n"] == U64_MAX - 8 and type(new["n"]) is int


def test_numeric_u64_max_plus_one_is_not_number() -> None:
    new, errors = run_ops({"n": U64_MAX}, [num("increment", "n", 1)])
    assert codes(errors) == [(0, "increment.not_number")]
    assert new["n"] == U64_MAX


def test_numeric_u64_max_minus_negative_is_not_number() -> None:
    new, errors = run_ops(U64_MAX, [num("decrement", "", -1)])
    assert codes(errors) == [(0, "decrement.not_number")]
    assert new == U64_MAX


def test_numeric_decrement_below_i64_min_is_not_number() -> None:
    new, errors = run_ops({"n": I64_MIN}, [num("decrement", "n", 1), num("increment", "n", -1)])
    assert codes(errors) == [(0, "decrement.not_number"), (1, "increment.not_number")]
    assert new["n"] == I64_MIN


def test_numeric_u64_value_decremented_back_into_i64() -> None:
    new, errors = run_ops({"n": 2**63}, [num("decrement", "n", 1)])
    assert errors == [] and new["n"] == I64_MAX and type(new["n"]) is int
    new, errors = run_ops({"n": U64_MAX}, [num("increment", "n", I64_MIN), num("increment", "n", I64_MIN)])
    assert errors == [] and new["n"] == U64_MAX - 2**64


def test_numeric_missing_field_decrement_by_i64_min_is_u64() -> None:
    assert_same(run_ops({}, [num("decrement", "n", I64_MIN)]), ({"n": 2**63}, []))
    assert_same(run_ops(None, [num("decrement", "", I64_MIN)], missing=True), (2**63, []))


def test_numeric_float_field_uses_float_arithmetic() -> None:
    new, errors = run_ops({"a": 1.5, "b": 1.0, "c": 0.1}, [num("increment", p, 1) for p in "abc"])
    assert errors == []
    assert_same(new, {"a": 2.5, "b": 2.0, "c": 1.1})
    assert type(new["b"]) is float  # 1.0 + 1 stays a float: 2.0, not 2


def test_numeric_float_result_survives_the_store(memory_store: StateStore) -> None:
    call(memory_store, "set", scope="s", key="k", value={"b": 1.0})
    result = call(memory_store, "update", scope="s", key="k", ops=[num("increment", "b", 1)])
    assert_same(result["new_value"], {"b": 2.0})
    assert_same(call(memory_store, "get", scope="s", key="k"), {"b": 2.0})


def test_numeric_float_at_max_stays_finite() -> None:
    # An i64 `by` cannot push a finite double to infinity (the ulp at max is 2^971), so the
    # overflow branch is unreachable from the wire; the result must still be a finite float.
    new, errors = run_ops(sys.float_info.max, [num("increment", "", I64_MAX)])
    assert errors == []
    assert new == sys.float_info.max and type(new) is float


def test_numeric_float_overflow_to_inf_is_not_number() -> None:
    from iii_state_core.update_ops import _number_op

    assert _number_op(sys.float_info.max, 2**1023, "increment") is None
    assert _number_op(-sys.float_info.max, 2**1023, "decrement") is None


@pytest.mark.parametrize("kind", NUMERIC)
def test_numeric_by_zero_still_checks_type(kind: str) -> None:
    new, errors = run_ops(
        {"s": "x", "n": 5, "f": 1.0},
        [num(kind, "s", 0), num(kind, "n", 0), num(kind, "f", 0), num(kind, "new", 0)],
    )
    assert codes(errors) == [(0, f"{kind}.not_number")]
    assert_same(new, {"s": "x", "n": 5, "f": 1.0, "new": 0})
    _, errors = run_ops(True, [num(kind, "", 0)])
    assert codes(errors) == [(0, f"{kind}.not_number")]


@pytest.mark.parametrize("kind", NUMERIC)
@pytest.mark.parametrize("by", [1.0, 1.5, True, False, "1", None, [1], 2**63, I64_MIN - 1, U64_MAX])
def test_numeric_by_not_i64_integer_fails_whole_call(kind: str, by: Any) -> None:
    with pytest.raises(DeserializationError):
        parse_ops([num(kind, "n", 1), num(kind, "n", by)], max_depth=128)


@pytest.mark.parametrize("by", [I64_MIN, I64_MAX, 0, -1])
def test_numeric_by_i64_edges_are_accepted(by: int) -> None:
    assert parse_ops([num("increment", "n", by)], max_depth=128)[0].by == by


def test_numeric_by_float_through_store_changes_nothing(memory_store: StateStore) -> None:
    call(memory_store, "set", scope="s", key="k", value={"n": 1})
    with pytest.raises(DeserializationError) as info:
        call(
            memory_store,
            "update",
            scope="s",
            key="k",
            ops=[num("increment", "n", 1), num("increment", "n", 1.0)],
        )
    assert info.value.code == "deserialization_error"
    assert_same(call(memory_store, "get", scope="s", key="k"), {"n": 1})


def test_numeric_order_is_preserved() -> None:
    new, errors = run_ops({"n": 10}, [num("increment", "n", 5), num("decrement", "n", 3)])
    assert_same((new, errors), ({"n": 12}, []))

"""The iii engine's own ``state::update`` tests as data (``data/README.md``), run strictly.

Each case runs twice: through the pure op engine, and through a store's ``trigger`` so the
value also survives encoding, storage and decoding unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from unit_helpers import call, run_ops

from iii_state_core import StateStore
from iii_state_core.values import same_json

VECTORS_FILE = Path(__file__).parent / "data" / "engine_update_ops.json"
CASES: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))


def test_vectors_file_is_complete() -> None:
    assert len(CASES) == 94
    assert len({c["name"] for c in CASES}) == len(CASES)
    for case in CASES:
        # every case asserts something: the whole value, some fields, or the errors
        assert {"new", "new_fields", "new_absent_fields", "errors"} & set(case), case["name"]


def check_case(case: dict[str, Any], new: Any, errors: list[dict[str, Any]]) -> None:
    name = case["name"]
    if "new" not in case and ("new_fields" in case or "new_absent_fields" in case):
        assert isinstance(new, dict), f"{name}: {new!r} is no object"
        for field, expected in case.get("new_fields", {}).items():
            assert field in new, f"{name}: field {field!r} missing from {new!r}"
            assert same_json(new[field], expected), f"{name}: {field}={new[field]!r}, want {expected!r}"
        for field in case.get("new_absent_fields", []):
            assert field not in new, f"{name}: field {field!r} should be absent in {new!r}"
    elif "new" in case:
        assert same_json(new, case["new"]), f"{name}: got {new!r}, want {case['new']!r}"
    if "errors" in case:
        expected_errors = case["errors"]
        assert len(errors) == len(expected_errors), f"{name}: errors {errors!r}"
        for got, want in zip(errors, expected_errors, strict=True):
            assert got["op_index"] == want["op_index"], name
            assert got["code"] == want["code"], name
            if "message" in want:
                assert got["message"] == want["message"], name


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_vector_op_engine(case: dict[str, Any]) -> None:
    missing = bool(case.get("old_missing"))
    new, errors = run_ops(None if missing else case["old"], case["ops"], missing=missing)
    check_case(case, new, errors)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_vector_through_store(case: dict[str, Any], memory_store: StateStore) -> None:
    if not case.get("old_missing"):
        call(memory_store, "set", scope="vectors", key="k", value=case["old"])
    result = call(memory_store, "update", scope="vectors", key="k", ops=case["ops"])
    check_case(case, result["new_value"], result.get("errors", []))
    assert "errors" not in result or result["errors"], "errors must be absent when no op failed"
    assert same_json(call(memory_store, "get", scope="vectors", key="k"), result["new_value"])
    expected_old = None if case.get("old_missing") else case["old"]
    assert same_json(result["old_value"], expected_old)

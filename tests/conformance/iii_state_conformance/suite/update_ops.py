"""contract § Update ops: every update-op rule, table-driven from data files shipped with the suite.

``engine_update_ops.json`` holds the iii engine's own tests as data; ``spec_update_ops.json``
the rules they do not touch. Each case runs through the store, so the backend's storage of
old and new values is checked too.
"""

from __future__ import annotations

from typing import Any

import pytest

from iii_state_core import StateStore

from ..checks import load_cases, shown, strict_equal
from .base import call

CASES = load_cases("engine_update_ops.json") + load_cases("spec_update_ops.json")


class UpdateOpTests:
    @pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
    def test_update_op_rule(self, store: StateStore, scope: str, case: dict[str, Any]) -> None:
        key = "k"
        if not case.get("old_missing"):
            store.set(scope, key, case["old"])
        result = call(store, "update", {"scope": scope, "key": key, "ops": case["ops"]})
        stored = store.get(scope, key)
        assert strict_equal(result["new_value"], stored), (
            f"new_value {shown(result['new_value'])} differs from what was stored {shown(stored)}"
        )
        old_expected = None if case.get("old_missing") else case["old"]
        assert strict_equal(result["old_value"], old_expected), f"old_value {shown(result['old_value'])}"
        if "new" in case:
            assert strict_equal(stored, case["new"]), f"got {shown(stored)}, want {shown(case['new'])}"
        if "new_fields" in case or "new_absent_fields" in case:
            assert isinstance(stored, dict), f"expected an object, got {shown(stored)}"
            for field, want in case.get("new_fields", {}).items():
                assert field in stored and strict_equal(stored[field], want), (
                    f"field {field!r}: got {shown(stored.get(field))}, want {shown(want)}"
                )
            for field in case.get("new_absent_fields", []):
                assert field not in stored, f"field {field!r} should be absent"
        if "errors" in case:
            got = result.get("errors", [])
            if not case["errors"]:
                assert "errors" not in result, "`errors` appears only when an op failed"
            assert [(e["op_index"], e["code"]) for e in got] == [
                (e["op_index"], e["code"]) for e in case["errors"]
            ]
            for want, have in zip(case["errors"], got, strict=True):
                if "message" in want:
                    assert have["message"] == want["message"]

"""Helpers the unit tests import (a plain module: ``conftest`` is not importable by name)."""

from __future__ import annotations

from typing import Any

from iii_state_core import StateStore
from iii_state_core.update_ops import apply_ops, parse_ops
from iii_state_core.values import DEFAULT_MAX_DEPTH, copy_json, same_json


def call(store: StateStore, function: str, **payload: Any) -> Any:
    """One ``trigger`` call in the wire form iii code uses."""
    return store.trigger({"function_id": f"state::{function}", "payload": payload})


def _as_json(value: object) -> object:
    # same_json knows JSON kinds only; a (new, errors) pair is compared as an array, strictly
    if isinstance(value, tuple):
        return [_as_json(v) for v in value]
    return value


def assert_same(actual: object, expected: object) -> None:
    """Strict structural equality (``1`` is not ``1.0``, ``True`` is not ``1``).

    Tuples (such as ``run_ops``'s ``(new, errors)``) compare as arrays.
    """
    assert same_json(_as_json(actual), _as_json(expected)), f"{actual!r} is not structurally {expected!r}"


def run_ops(
    old: Any, ops: list[dict[str, Any]], *, missing: bool = False
) -> tuple[Any, list[dict[str, Any]]]:
    """Parse wire ops and apply them to a copy of ``old``; errors come back in wire form."""
    parsed = parse_ops(ops, max_depth=DEFAULT_MAX_DEPTH)
    new, errors = apply_ops(copy_json(old), missing, parsed)
    return new, [e.to_wire() for e in errors]


def codes(errors: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """``(op_index, code)`` of each reported op error, in order."""
    return [(e["op_index"], e["code"]) for e in errors]

"""contract § Batches: ``state::batch`` gives each operation exactly its single call's outcome."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from iii_state_core import StateError, StateStore

from .base import call, wire_error


def _ops(a: str, b: str) -> list[dict[str, Any]]:
    """A batch over two scopes: every op kind, repeats of one entry, and failing operations."""
    inc = [{"type": "increment", "path": "n", "by": 2}]
    return [
        {"op": "set", "scope": a, "key": "k", "value": {"n": 1}},
        {"op": "get", "scope": a, "key": "k"},
        {"op": "update", "scope": a, "key": "k", "ops": inc},
        {"op": "get", "scope": a, "key": "k"},
        {"op": "set", "scope": b, "key": "k", "value": [1, "two"], "extra": "ignored"},
        {"op": "compare-and-set", "scope": b, "key": "c", "value": 1},
        {"op": "compare-and-set", "scope": b, "key": "c", "value": 2, "expected": 9},
        {"op": "compare-and-set", "scope": b, "key": "c", "value": 3, "expected": 1},
        {"op": "update", "scope": b, "key": "u", "ops": [{"type": "increment", "path": "x.y", "by": 1}]},
        {"op": "set", "scope": a, "key": "bad"},  # missing value
        {"op": "update", "scope": a, "key": "bad", "ops": "not a list"},
        {"op": "set", "scope": a, "key": "bad", "value": 1, "ttl_ms": 0},
        {"op": "get", "scope": a, "key": 5},
        {"op": "delete", "scope": a, "key": "k"},
        {"op": "delete", "scope": a, "key": "missing"},
        {"op": "get", "scope": a, "key": "k"},
        {"op": "get", "scope": b, "key": "c"},
        {"op": "get", "scope": b, "key": "none"},  # entries named once: one round, no plans
        {"op": "set", "scope": b, "key": "ü", "value": {"deep": [1]}},
    ]


def _outcome(store: StateStore, function: str, payload: dict[str, Any]) -> Any:
    """The single call's result, or its error as a batch would list it."""
    try:
        return call(store, function, payload)
    except StateError as exc:
        return {"error": {"code": exc.code, "message": exc.message}}


class BatchTests:
    def test_each_operation_gives_its_single_calls_result_and_events(
        self, store: StateStore, make_scope: Callable[[str], str]
    ) -> None:
        a, b, single_a, single_b = (make_scope(s) for s in ("a", "b", "sa", "sb"))
        seen: list[dict[str, Any]] = []
        store.on_change(lambda e: seen.append(e.to_wire()))
        batched = call(store, "batch", {"ops": _ops(a, b)})
        batch_events, seen[:] = list(seen), []
        singles = [
            _outcome(store, op["op"], {k: v for k, v in op.items() if k != "op"})
            for op in _ops(single_a, single_b)
        ]
        rename = {single_a: a, single_b: b}
        assert len(batched) == len(singles)
        for i, (got, want) in enumerate(zip(batched, singles, strict=True)):
            if isinstance(want, dict) and "error" in want:
                assert got["error"]["code"] == want["error"]["code"], (i, got, want)
                message = want["error"]["message"]
                for old, new in rename.items():
                    message = message.replace(old, new)
                assert got["error"]["message"] == f"ops[{i}] ({_ops(a, b)[i]['op']}): {message}", (i, got)
            else:
                assert got == want, (i, got, want)
        assert batched[3] == {"n": 3} and batched[15] is None and batched[16] == 3  # order within an entry
        assert batch_events == [{**e, "scope": rename[e["scope"]]} for e in seen]
        assert len(batch_events) == 9

    def test_bad_batches_are_refused_whole_and_bad_operations_alone(
        self, store: StateStore, scope: str, caps: Any
    ) -> None:
        for payload, needle in (
            ({"ops": {"op": "get"}}, "must be an array"),
            ({}, "missing field `ops`"),
            ({"ops": [{"op": "set", "scope": scope, "key": "k", "value": 1}] * (caps.max_batch_ops + 1)},
             f"at most {caps.max_batch_ops} operations"),
        ):  # fmt: skip
            error = wire_error(store, "batch", payload)
            assert error.code == "deserialization_error" and needle in str(error), (needle, str(error))
        assert store.get(scope, "k") is None
        most: list[dict[str, Any]] = [
            {"op": "get", "scope": scope, "key": f"k{i}"} for i in range(caps.max_batch_ops - 1)
        ]
        most.append({"op": "set", "scope": scope, "key": "last", "value": True})
        answers = call(store, "batch", {"ops": most})
        assert answers == [None] * (caps.max_batch_ops - 1) + [{"old_value": None, "new_value": True}]
        mixed = call(store, "batch", {"ops": [
            {"op": "lock", "scope": scope, "key": "k"}, 7,
            {"op": "set", "scope": scope, "key": "k", "value": 1},
            {"scope": scope, "key": "k"}, {"op": "get", "scope": scope, "key": "k"},
        ]})  # fmt: skip
        assert [m["error"]["code"] for m in (mixed[0], mixed[1], mixed[3])] == ["deserialization_error"] * 3
        assert "ops[0]" in mixed[0]["error"]["message"] and '"lock"' in mixed[0]["error"]["message"]
        assert "ops[1] must be an object" in mixed[1]["error"]["message"]
        assert mixed[2] == {"old_value": None, "new_value": 1} and mixed[4] == 1
        assert store.batch([]) == [] and call(store, "batch", {"ops": []}) == []

    def test_typed_batch_returns_typed_results_and_errors(self, store: StateStore, scope: str) -> None:
        items = store.batch(
            [{"op": "set", "scope": scope, "key": "k", "value": 1}, {"op": "get", "scope": scope, "key": 3}]
        )
        assert items[0].ok and items[0].result.new_value == 1 and items[0].error is None
        assert not items[1].ok and items[1].error is not None
        assert items[1].error.code == "deserialization_error"
        assert store.get_many(scope, ["k", "none"]) == {"k": 1, "none": None}
        store.set_many(scope, {"x": [1], "y": {"z": None}})
        assert store.get_many(scope, ["x", "y"]) == {"x": [1], "y": {"z": None}}
        assert store.delete_many(scope, ["x", "nothing"]) == {"x": [1], "nothing": None}
        assert sorted(store.list_keys(scope)) == ["k", "y"]

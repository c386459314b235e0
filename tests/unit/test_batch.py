"""``state::batch`` in the core: async equals sync, the adapter primitive's contract, the wire's checks."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from iii_state_core import StateError, open_async_store, open_store
from iii_state_core.errors import UnknownOutcomeError

OPS: list[dict[str, Any]] = [
    {"op": "set", "scope": "s", "key": "a", "value": 1},
    {"op": "update", "scope": "s", "key": "a", "ops": [{"type": "increment", "path": "", "by": 1}]},
    {"op": "compare-and-set", "scope": "t", "key": "c", "value": "x"},
    {"op": "get", "scope": "s", "key": "a"},
    {"op": "delete", "scope": "t", "key": "c"},
    {"op": "set", "scope": "s", "key": "b", "value": float("nan")},
]


def _batch(payload: Any, async_: bool = False) -> tuple[Any, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    request = {"function_id": "state::batch", "payload": payload}
    if not async_:
        with open_store(adapter="kv", adapter_config={"store_method": "in_memory"}) as store:
            store.on_change(lambda e: seen.append(e.to_wire()))
            return store.trigger(request), seen

    async def run() -> Any:
        async with open_async_store(adapter="kv", adapter_config={"store_method": "in_memory"}) as store:
            store.on_change(lambda e: seen.append(e.to_wire()))
            return await store.trigger(request)

    return asyncio.run(run()), seen


def test_async_batch_gives_the_sync_results_and_events() -> None:
    sync, events = _batch({"ops": OPS})
    assert sync[:5] == [
        {"old_value": None, "new_value": 1},
        {"old_value": 1, "new_value": 2},
        {"swapped": True},
        2,
        "x",
    ]
    assert sync[5]["error"]["code"] == "deserialization_error" and sync[5]["error"]["message"].startswith(
        "ops[5] (set)"
    )
    assert [e["event_type"] for e in events] == [
        "state:created",
        "state:updated",
        "state:created",
        "state:deleted",
    ]
    assert _batch({"ops": OPS}, async_=True) == (sync, events)


def test_a_reserved_scope_refuses_the_batch_naming_the_operation() -> None:
    with open_store(adapter="kv", adapter_config={"store_method": "in_memory"}) as store:
        ops = [
            {"op": "set", "scope": "s", "key": "k", "value": 1},
            {"op": "get", "scope": "state_barrier", "key": "k"},
        ]
        with pytest.raises(StateError) as info:
            store.trigger({"function_id": "state::batch", "payload": {"ops": ops}})
        assert info.value.code == "RESERVED_SCOPE" and str(info.value).startswith("ops[1]: ")
        assert store.get("s", "k") is None


class _Failing:
    """A ``run_many`` whose whole round fails after sending: every write's outcome is unknown."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __call__(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        raise UnknownOutcomeError("connection reset after sending")


def test_a_failed_round_fails_each_of_its_operations_with_the_functions_code() -> None:
    with open_store(adapter="kv", adapter_config={"store_method": "in_memory"}) as store:
        store.adapter.run_many = _Failing(store.adapter.run_many)  # type: ignore[method-assign]
        items = store.batch(
            [{"op": "set", "scope": "s", "key": "k", "value": 1}, {"op": "get", "scope": "s", "key": "k"}]
        )
        assert [i.error.code if i.error else None for i in items] == ["SET_ERROR", "GET_ERROR"]
        assert all("connection reset" in str(i.error) for i in items)


def test_run_many_default_answers_each_call_in_order_with_failures_as_values() -> None:
    with open_store(adapter="kv", adapter_config={"store_method": "in_memory"}) as store:
        answers = store.adapter.run_many(
            [
                ("write", ("s", "k", b"1")),
                ("read", ("s", "k")),
                ("no_such_primitive", ()),
                ("remove", ("s", "k")),
            ]
        )
        assert answers[:2] == [None, b"1"] and isinstance(answers[2], AttributeError) and answers[3] == b"1"


def test_no_batch_function_has_a_field_named_op() -> None:
    """An operation's `op` is passed to its function's decoder with the fields: it must not clash."""
    from iii_state_core.batch import BATCH_FUNCTIONS
    from iii_state_core.table import TABLE

    for name in BATCH_FUNCTIONS:
        assert all("op" not in (f.name, *f.aliases) for f in TABLE[name].fields or ()), name


def test_plain_operations_give_the_single_calls_errors() -> None:
    """Gets, sets and deletes of entries named once skip the plans: their errors must not change."""
    with open_store(adapter="kv", adapter_config={"store_method": "in_memory"}) as store:
        store.adapter.write("s", "foreign", b"\xffnot json")
        ops: list[dict[str, Any]] = [
            {"op": "get", "scope": "s", "key": "foreign"},
            {"op": "get", "scope": "\ud800", "key": "k"},
            {"op": "set", "scope": "s", "key": "v", "value": float("inf")},
            {"op": "set", "scope": "s", "key": "w", "value": 1, "data": 1},
            {"op": "delete", "scope": "s", "key": "\ud800"},
        ]
        batched = store.trigger({"function_id": "state::batch", "payload": {"ops": ops}})
        for i, op in enumerate(ops):
            single_payload = {k: op[k] for k in op if k != "op"}
            with pytest.raises(StateError) as single:
                store.trigger({"function_id": f"state::{op['op']}", "payload": single_payload})
            want = {"code": single.value.code, "message": f"ops[{i}] ({op['op']}): {single.value.message}"}
            assert batched[i] == {"error": want}, i

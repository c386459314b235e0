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


def _results_one_by_one(store: Any, ops: list[dict[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for op in ops:
        try:
            payload = {k: op[k] for k in op if k != "op"}
            out.append(store.trigger({"function_id": f"state::{op['op']}", "payload": payload}))
        except StateError as exc:
            out.append({"error": {"code": exc.code, "message": exc.message}})
    return out


@pytest.mark.parametrize("odd", [
    {"op": "get", "scope": "s", "key": "foreign"},  # bytes another program stored
    {"op": "get", "scope": "\ud800", "key": "k"},  # a lone surrogate
    {"op": "get", "scope": "s", "key": "k1"},  # an entry named twice
    {"op": "get", "scope": "s", "key": "é"},  # not ASCII, fine
    {"op": "get", "scope": "s", "key": 5},
    {"op": "get", "scope": "s"},
    ["get"],
])  # fmt: skip
@pytest.mark.parametrize("function", ["get", "set", "delete"])
def test_a_batch_of_one_function_gives_the_single_calls_results_with_one_odd_operation(
    function: str, odd: Any
) -> None:
    """A batch of only gets (sets, deletes) is checked as a whole list; one operation that does not
    fit (any place) must still give exactly its single call's answer, and the others theirs."""

    def prepared() -> Any:
        store = open_store(adapter="kv", adapter_config={"store_method": "in_memory"})
        store.adapter.write("s", "foreign", b"\xffnot json")
        for i in range(5):
            store.set("s", f"k{i}", {"i": i})
        return store

    ops: list[Any] = [{"op": function, "scope": "s", "key": f"k{i}"} for i in range(5)]
    if function == "set":
        for i, op in enumerate(ops):
            op["value"] = [i]
    if isinstance(odd, dict):
        odd = {**odd, "op": function, **({"value": "v"} if function == "set" else {})}
    for at in (0, 2, 5):
        batch_ops = [*ops[:at], odd, *ops[at:]]
        with prepared() as batched, prepared() as single:
            got = batched.trigger({"function_id": "state::batch", "payload": {"ops": batch_ops}})
            if not isinstance(odd, dict):
                want = _results_one_by_one(single, [op for op in batch_ops if isinstance(op, dict)])
                assert "error" in got[at] and [g for n, g in enumerate(got) if n != at] == want
                continue
            want = _results_one_by_one(single, batch_ops)
            for n, (g, w) in enumerate(zip(got, want, strict=True)):
                if isinstance(w, dict) and "error" in w:  # the batch names the operation in its message
                    named = f"ops[{n}] ({function}): {w['error']['message']}"
                    w = {"error": {**w["error"], "message": named}}
                assert g == w, (at, n)
            assert batched.adapter.scan("s", None, 100) == single.adapter.scan("s", None, 100)


def test_a_set_with_a_value_over_the_limit_among_plain_sets_fails_alone() -> None:
    state = {"adapter": {"name": "kv", "config": {"store_method": "in_memory"}}, "max_value_bytes": 20}
    with open_store(state) as store:
        ops = [{"op": "set", "scope": "s", "key": f"k{i}", "value": "x" * (30 if i == 3 else 1)}
               for i in range(6)]  # fmt: skip
        got = store.trigger({"function_id": "state::batch", "payload": {"ops": ops}})
        assert [("error" in g) for g in got] == [False, False, False, True, False, False]
        assert "max_value_bytes" in got[3]["error"]["message"] and store.get("s", "k3") is None
        assert store.get("s", "k5") == "x"


def test_transact_reads_old_values_as_the_single_calls_do() -> None:
    """Old values decoded inline by transact: JSON, bytes another program stored, a stored NaN."""
    stored = {"json": b'{"a":[1,2]}', "foreign": b"\xffnot json", "nan": b"NaN", "num": b"12x"}
    with open_store(adapter="kv", adapter_config={"store_method": "in_memory"}) as store:
        for key, raw in stored.items():
            store.adapter.write("s", key, raw)
        ops = [{"op": "set", "scope": "s", "key": k, "value": 1} for k in stored]
        got = store.trigger({"function_id": "state::transact", "payload": {"ops": ops}})
        assert got["committed"] is True
        assert [r["old_value"] for r in got["results"]] == [{"a": [1, 2]}, None, None, None]
        store.adapter.write("s", "foreign", b"\xffnot json")
        change = [{"type": "set", "path": "", "value": 2}]
        update = {"op": "update", "scope": "s", "key": "foreign", "ops": change}
        with pytest.raises(StateError) as refused:
            store.trigger({"function_id": "state::transact", "payload": {"ops": [update]}})
        assert "another program wrote them" in refused.value.message
        assert store.adapter.read("s", "foreign") == b"\xffnot json"


def test_one_value_object_written_to_many_keys_is_checked_and_encoded_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``set_many`` of one value (and a transaction writing one value to several keys) encodes it
    once; an equal but distinct object is encoded again, and a refused value fails each of its writes."""
    from iii_state_core import operations

    encoded: list[object] = []
    real = operations.encode

    def counting(value: object, **kwargs: Any) -> bytes:
        encoded.append(value)
        return real(value, **kwargs)

    monkeypatch.setattr(operations, "encode", counting)
    shared, other = {"n": [1, 2]}, {"n": [1, 2]}
    with open_store(adapter="kv", adapter_config={"store_method": "in_memory"}) as store:
        store.set_many("s", {f"k{i}": shared for i in range(5)} | {"other": other})
        assert encoded == [shared, other] and encoded[0] is shared and encoded[1] is other
        assert [store.get("s", f"k{i}") for i in range(5)] == [shared] * 5
        encoded.clear()
        writes = [{"op": "set", "scope": "t", "key": f"k{i}", "value": shared} for i in range(3)]
        assert store.transact(writes).committed and len(encoded) == 1
        assert [store.get("t", f"k{i}") for i in range(3)] == [shared] * 3
        bad = [1, float("nan")]
        got = store.trigger({"function_id": "state::batch", "payload": {"ops": [
            {"op": "set", "scope": "u", "key": k, "value": v} for k, v in (("a", bad), ("b", 2), ("c", bad))
        ]}})  # fmt: skip
        assert ["error" in g for g in got] == [True, False, True] and store.get("u", "b") == 2
        with pytest.raises(StateError, match="NaN"):
            store.transact([{"op": "set", "scope": "u", "key": k, "value": bad} for k in "de"])
        assert store.get("u", "d") is None


@pytest.mark.parametrize("odd", [
    {"data": 7},  # the alias instead of value: four fields, no value
    {"value": 7, "ttl_ms": 60_000},  # a fifth field
    {},  # no value at all
])  # fmt: skip
def test_a_set_with_other_fields_among_plain_sets_gives_its_single_calls_answer(odd: dict[str, Any]) -> None:
    ops = [{"op": "set", "scope": "s", "key": f"k{i}", "value": i} for i in range(4)]
    ops.insert(2, {"op": "set", "scope": "s", "key": "odd", **odd})
    with (
        open_store(adapter="kv", adapter_config={"store_method": "in_memory"}) as batched,
        open_store(adapter="kv", adapter_config={"store_method": "in_memory"}) as single,
    ):
        got = batched.trigger({"function_id": "state::batch", "payload": {"ops": ops}})
        want = _results_one_by_one(single, ops)
        if "error" in want[2]:
            want[2]["error"]["message"] = f"ops[2] (set): {want[2]['error']['message']}"
        assert got == want
        assert batched.adapter.scan("s", None, 100) == single.adapter.scan("s", None, 100)

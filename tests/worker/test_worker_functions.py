"""The nine ``state::*`` functions served by the real ``iii-sdk`` client inside ``StateWorker``,
invoked by the engine peer over a real WebSocket: contract § Functions results and every error path."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from worker_harness import SECRET, GatedAdapter, make_registry, memory, run, serving

from iii_state_core import open_store
from iii_state_core.wire import FUNCTION_IDS
from iii_state_core.worker.functions import WORKER_FUNCTION_IDS


def test_registers_every_function_and_the_state_trigger_type() -> None:
    async def scenario() -> None:
        async with serving() as (peer, _):
            conn = peer.current
            assert sorted(conn.functions) == sorted(WORKER_FUNCTION_IDS)
            assert set(FUNCTION_IDS) < set(WORKER_FUNCTION_IDS)
            for frame in conn.functions.values():
                assert frame["description"]
            for function_id in FUNCTION_IDS:
                assert conn.functions[function_id]["request_format"]["type"] == "object"
            assert conn.functions["state::update"]["request_format"]["required"] == ["scope", "key", "ops"]
            state = conn.trigger_types["state"]
            assert set(state["trigger_request_format"]["properties"]) == {
                "scope",
                "key",
                "condition_function_id",
            }
            await peer.wait_for(lambda: conn.worker_info)
            assert conn.worker_info is not None and conn.worker_info["name"] == "state"  # iii's own name

    run(scenario())


#: (function, payload, the contract § Functions result). Runs in order on one empty store.
STEPS: list[tuple[str, Any, Any]] = [
    ("set", {"scope": "orders", "key": "o1", "value": {"n": 1}}, {"old_value": None, "new_value": {"n": 1}}),
    (
        "set",
        {"scope": "orders", "key": "o1", "data": {"n": 2}},
        {"old_value": {"n": 1}, "new_value": {"n": 2}},
    ),
    ("get", {"scope": "orders", "key": "o1"}, {"n": 2}),
    ("get", {"scope": "orders", "key": "nope"}, None),
    ("set", {"scope": "orders", "key": "o2", "value": []}, {"old_value": None, "new_value": []}),
    ("set", {"scope": "orders", "key": "o3", "value": None}, {"old_value": None, "new_value": None}),
    (
        "set",
        {"scope": "big", "key": "n", "value": 9007199254740993},
        {"old_value": None, "new_value": 9007199254740993},
    ),
    ("get", {"scope": "big", "key": "n", "ignored": True}, 9007199254740993),
    (
        "set",
        {"scope": "💡 a:b/*%", "key": "", "value": {"f": 1.5, "e": {}}},
        {"old_value": None, "new_value": {"f": 1.5, "e": {}}},
    ),
    (
        "update",
        {"scope": "orders", "key": "o1", "ops": [{"type": "increment", "path": "n", "by": 5}]},
        {"old_value": {"n": 2}, "new_value": {"n": 7}},
    ),
    (
        "update",
        {
            "scope": "orders",
            "key": "o1",
            "ops": [
                {"type": "increment", "path": "n", "by": 1},
                {"type": "append", "path": "n", "value": 1},
                {"type": "merge", "value": {"m": [1]}},
            ],
        },
        {
            "old_value": {"n": 7},
            "new_value": {"n": 8, "m": [1]},
            "errors": [{"op_index": 1, "code": "append.type_mismatch"}],
        },
    ),
    ("update", {"scope": "orders", "key": "o4", "ops": []}, {"old_value": None, "new_value": {}}),
    ("list", {"scope": "orders"}, [{"n": 8, "m": [1]}, [], None, {}]),
    ("list", {"scope": "nobody"}, []),
    ("list_keys", {"scope": "orders"}, {"keys": ["o1", "o2", "o3", "o4"]}),
    ("list_groups", {}, {"groups": ["big", "orders", "💡 a:b/*%"]}),
    ("list_groups", None, {"groups": ["big", "orders", "💡 a:b/*%"]}),
    ("compare-and-set", {"scope": "c", "key": "k", "value": 1}, {"swapped": True}),
    ("compare-and-set", {"scope": "c", "key": "k", "value": 2}, {"swapped": False, "current": 1}),
    ("compare-and-set", {"scope": "c", "key": "k", "expected": 1, "value": [2]}, {"swapped": True}),
    (
        "compare-and-set",
        {"scope": "c", "key": "gone", "expected": 1, "value": 2},
        {"swapped": False, "current": None},
    ),
    ("delete", {"scope": "orders", "key": "o2"}, []),
    ("delete", {"scope": "orders", "key": "o2"}, None),
    ("delete", {"scope": "big", "key": "n"}, 9007199254740993),
    ("list_groups", {}, {"groups": ["c", "orders", "💡 a:b/*%"]}),
]


def _comparable(function: str, result: Any) -> Any:
    """Listing order is not part of the contract; an update error's message is prose."""
    if function == "list":
        return sorted(result, key=repr)
    if function == "list_keys":
        return {"keys": sorted(result["keys"])}
    if function == "update" and "errors" in result:
        return {**result, "errors": [{k: e[k] for k in ("op_index", "code")} for e in result["errors"]]}
    return result


def test_every_function_returns_the_spec_result() -> None:
    async def scenario() -> None:
        async with serving() as (peer, _):
            for function, payload, expected in STEPS:
                outcome = await peer.invoke(f"state::{function}", payload)
                assert outcome.ok, (function, payload, outcome.error)
                assert "result" in outcome.frame, "a null result must still be sent"
                got = outcome.result
                assert _comparable(function, got) == _comparable(function, expected), (function, payload)
                if function == "update" and "errors" not in expected:
                    assert "errors" not in got
                if function == "update" and "errors" in got:
                    assert all(isinstance(e["message"], str) and e["message"] for e in got["errors"])
            # 1.5 stays a float and the big integer stayed exact on the way through the SDK.
            assert await peer.call("state::get", {"scope": "💡 a:b/*%", "key": ""}) == {"f": 1.5, "e": {}}

    run(scenario())


def test_results_equal_the_core_called_in_process() -> None:
    """The same requests through the worker and through ``StateStore.trigger`` agree exactly."""

    async def scenario() -> None:
        async with serving() as (peer, _):
            with open_store(memory()) as reference:
                for function, payload, _ in STEPS:
                    want = reference.trigger({"function_id": f"state::{function}", "payload": payload})
                    got = await peer.call(f"state::{function}", payload)
                    assert _comparable(function, got) == _comparable(function, want), (function, payload)

    run(scenario())


def test_list_entries_pages_through_a_scope() -> None:
    async def scenario() -> None:
        async with serving() as (peer, _):
            for i in range(5):
                await peer.call("state::set", {"scope": "p", "key": f"k{i}", "value": i})
            seen: list[list[Any]] = []
            cursor = None
            pages = 0
            while True:
                page = await peer.call("state::list_entries", {"scope": "p", "cursor": cursor, "limit": 2})
                assert list(page) == ["entries", "next_cursor", "done", "offset", "total"]
                assert len(page["entries"]) <= 2 and page["offset"] == len(seen) and page["total"] == 5
                seen.extend(page["entries"])
                pages += 1
                if page["done"]:
                    assert page["next_cursor"] is None
                    break
                assert isinstance(page["next_cursor"], str)
                cursor = page["next_cursor"]
            assert sorted(seen) == [[f"k{i}", i] for i in range(5)] and pages == 3
            default = await peer.call("state::list_entries", {"scope": "p"})
            assert len(default["entries"]) == 5 and default["done"] is True

    run(scenario())


#: (function, payload, the start of the message after "deserialization_error: ").
BAD_PAYLOADS: list[tuple[str, Any, str]] = [
    ("set", {"key": "k", "value": 1}, "missing field `scope`"),
    ("set", {"scope": "s", "value": 1}, "missing field `key`"),
    ("set", {"scope": "s", "key": "k"}, "missing field `value`"),
    ("set", {"scope": 1, "key": "k", "value": 1}, "field `scope` must be a string, got number"),
    ("set", [1, 2], "payload must be an object"),
    # The peer writes a bare NaN token, as a sloppy client would; Python's JSON reader takes it.
    ("set", {"scope": "s", "key": "k", "value": {"a": float("nan")}}, ""),
    ("get", {"scope": "s", "key": None}, "field `key` must be a string, got null"),
    ("delete", "s/k", "payload must be an object"),
    (
        "update",
        {"scope": "s", "key": "k", "ops": {"type": "set"}},
        "field `ops` must be an array, got object",
    ),
    ("update", {"scope": "s", "key": "k", "ops": [{"type": "explode"}]}, ""),
    ("update", {"scope": "s", "key": "k", "ops": [{"type": "increment", "path": "n", "by": 1.5}]}, ""),
    ("list", {}, "missing field `scope`"),
    ("list_keys", {"scope": ["s"]}, "field `scope` must be a string, got array"),
    ("list_entries", {"scope": "s", "cursor": 5}, "invalid type"),
    ("list_entries", {"scope": "s", "limit": -1}, "invalid value"),
    ("compare-and-set", {"scope": "s", "key": "k", "data": 1}, "missing field `value`"),
    ("barrier", {"event": {}, "condition_config": {"expect": 1}}, "missing field `id`"),
    ("compare-and-set", {"scope": "s", "key": "k", "value": 1, "durable": "yes"}, "field `durable`"),
]


def test_bad_payloads_fail_with_deserialization_error_and_change_nothing() -> None:
    async def scenario() -> None:
        async with serving() as (peer, _):
            for function, payload, start in BAD_PAYLOADS:
                outcome = await peer.invoke(f"state::{function}", payload)
                assert outcome.code == "invocation_failed", (function, payload, outcome.frame)
                assert outcome.message is not None
                assert outcome.message.startswith("deserialization_error: " + start), (
                    function,
                    outcome.message,
                )
                assert "result" not in outcome.frame
            assert await peer.call("state::list_groups", {}) == {"groups": []}

    run(scenario())


def test_value_too_large_fails_every_writer_and_stores_nothing() -> None:
    async def scenario() -> None:
        async with serving(memory(max_value_bytes=32)) as (peer, _):
            big = "x" * 64
            await peer.call("state::set", {"scope": "s", "key": "k", "value": "small"})
            attempts = [
                ("state::set", {"scope": "s", "key": "k", "value": big}),
                (
                    "state::update",
                    {"scope": "s", "key": "k", "ops": [{"type": "set", "path": "", "value": big}]},
                ),
                ("state::compare-and-set", {"scope": "s", "key": "k", "expected": "small", "value": big}),
                ("state::set", {"scope": "s", "key": "new", "value": big}),
            ]
            for function_id, payload in attempts:
                outcome = await peer.invoke(function_id, payload)
                assert outcome.code == "invocation_failed"
                assert outcome.message is not None and outcome.message.startswith("VALUE_TOO_LARGE: "), (
                    outcome.message
                )
                assert "32" in outcome.message
            assert await peer.call("state::get", {"scope": "s", "key": "k"}) == "small"
            assert await peer.call("state::get", {"scope": "s", "key": "new"}) is None

    run(scenario())


@pytest.mark.parametrize(
    ("function", "payload", "code"),
    [
        ("set", {"scope": "s", "key": "k", "value": 1}, "SET_ERROR: Failed to set value: "),
        ("get", {"scope": "s", "key": "k"}, "GET_ERROR: Failed to get value: "),
        ("delete", {"scope": "s", "key": "k"}, "DELETE_ERROR: Failed to delete value: "),
        ("update", {"scope": "s", "key": "k", "ops": []}, "UPDATE_ERROR: Failed to update value: "),
        (
            "compare-and-set",
            {"scope": "s", "key": "k", "value": 1},
            "CAS_ERROR: Failed to compare-and-set value: ",
        ),
        ("list", {"scope": "s"}, "LIST_ERROR: Failed to list values: "),
        ("list_keys", {"scope": "s"}, "LIST_KEYS_ERROR: Failed to list keys: "),
        ("list_entries", {"scope": "s"}, "LIST_ENTRIES_ERROR: "),
        ("list_groups", {}, "LIST_GROUPS_ERROR: Failed to list groups: "),
    ],
)
def test_backend_failure_carries_the_code_and_no_secret(
    function: str, payload: Any, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")

    async def scenario() -> None:
        config = {"adapter": {"name": "failing", "config": {}}}
        async with serving(config, registry=make_registry()) as (peer, _):
            outcome = await peer.invoke(f"state::{function}", payload)
            assert outcome.code == "invocation_failed"
            assert outcome.message is not None and outcome.message.startswith(code), outcome.message
            assert "failing adapter at db:6379" in outcome.message
            assert outcome.error is not None
            assert SECRET not in str(outcome.frame)

    run(scenario())
    assert SECRET not in caplog.text
    assert f"state::{function} failed: {code}" in caplog.text


def test_a_slow_call_does_not_hold_up_the_others() -> None:
    """Adapter calls run off the loops: while one read waits, other calls are answered."""

    async def scenario() -> None:
        config = {"adapter": {"name": "gated", "config": {}}}
        async with serving(config, registry=make_registry()) as (peer, _):
            slow = asyncio.ensure_future(peer.invoke("state::get", {"scope": "gated", "key": "k"}))
            await asyncio.to_thread(GatedAdapter.entered.wait, 5)
            for i in range(20):
                await peer.call("state::set", {"scope": "fast", "key": str(i), "value": i})
            assert not slow.done(), "the fast calls were answered while the slow one waits"
            GatedAdapter.gate.set()
            assert (await slow).ok

    run(scenario())


def test_two_hundred_concurrent_increments_are_all_applied() -> None:
    async def scenario() -> None:
        async with serving() as (peer, _):
            op = [{"type": "increment", "path": "n", "by": 1}]
            results = await asyncio.gather(
                *(
                    peer.call("state::update", {"scope": "c", "key": "k", "ops": op}, timeout=20)
                    for _ in range(200)
                )
            )
            assert sorted(r["new_value"]["n"] for r in results) == list(range(1, 201))
            assert all("errors" not in r for r in results)
            assert await peer.call("state::get", {"scope": "c", "key": "k"}) == {"n": 200}
            reads = await asyncio.gather(
                *(peer.call("state::get", {"scope": "c", "key": "k"}) for _ in range(200))
            )
            assert reads == [{"n": 200}] * 200

    run(scenario())


def test_a_fire_and_forget_call_is_applied() -> None:
    async def scenario() -> None:
        async with serving() as (peer, _):
            await peer.send_void("state::set", {"scope": "v", "key": "k", "value": 1})
            deadline = time.monotonic() + 5
            while await peer.call("state::get", {"scope": "v", "key": "k"}) != 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)

    run(scenario())

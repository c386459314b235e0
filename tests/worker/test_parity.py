"""Every case of ``parity_cases`` (iii's ``state`` worker, call by call) through ``store.trigger``
on the kv adapter (memory and file) and through ``iii-state worker`` over a real WebSocket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from parity_cases import CASES
from worker_harness import run, serving

from iii_state_core import StateError, open_store
from iii_state_core.store import StateStore

#: Served by the worker only: they ask the engine who the caller is.
WORKER_ONLY = {"state::claim-namespace"}
IDS = [case["name"] for case in CASES]


def _check(step: dict[str, Any], result: Any, error: str | None, events: list[dict[str, Any]]) -> None:
    where = f"{step['function_id']} {step['payload']!r}"
    if "error" in step:
        assert error == step["error"], where
    elif "error_prefix" in step:
        assert error is not None and error.startswith(step["error_prefix"]), (where, error)
    else:
        assert error is None, (where, error)
        if "result" in step:
            assert result == step["result"], where
        if "result_sorted" in step:
            assert {k: sorted(v) for k, v in result.items()} == step["result_sorted"], where
        if "result_fields" in step:
            assert list(result) == step["result_fields"], where
    if "events" in step:
        assert events == step["events"], where


def _check_stored(case: dict[str, Any], read: Any) -> None:
    for scope, keys in case.get("stored", {}).items():
        for key, value in keys.items():
            assert read(scope, key) == value, (case["name"], scope, key)


@pytest.fixture(params=["in_memory", "file_based"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    config: dict[str, Any] = {"store_method": request.param}
    if request.param == "file_based":
        config["file_path"] = str(tmp_path / "kv")
    with open_store(adapter="kv", adapter_config=config) as opened:
        yield opened


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_case_through_store_trigger(store: StateStore, case: dict[str, Any]) -> None:
    if any(step["function_id"] in WORKER_ONLY for step in case["calls"]):
        pytest.skip("claim-namespace needs the engine to name the caller: covered through the worker")
    for scope, key, value in case.get("given", []):
        store.set(scope, key, value)
    events: list[dict[str, Any]] = []
    store.on_change(lambda event: events.append(event.to_wire()))
    for step in case["calls"]:
        events.clear()
        result, error = None, None
        try:
            result = store.trigger({"function_id": step["function_id"], "payload": step["payload"]})
        except StateError as exc:
            error = f"{exc.code}: {exc}"
        _check(step, result, error, events)
    _check_stored(case, store.get)


def test_cases_through_the_worker() -> None:
    """All cases on one worker, each on scopes of its own (the worker's store is shared)."""

    async def scenario() -> None:
        async with serving() as (peer, worker):
            store = worker.store
            assert store is not None
            for case in CASES:
                for scope in {s for s, _, _ in case.get("given", [])} | set(case.get("stored", {})):
                    for key in await store.list_keys(scope):
                        await store.delete(scope, key)
                for scope, key, value in case.get("given", []):
                    await store.set(scope, key, value)
                events: list[dict[str, Any]] = []
                unsubscribe = store.on_change(lambda event, seen=events: seen.append(event.to_wire()))
                try:
                    for step in case["calls"]:
                        events.clear()
                        outcome = await peer.invoke(
                            step["function_id"], step["payload"], stamp=not step.get("unstamped", False)
                        )
                        error = outcome.message if not outcome.ok else None
                        if error is not None:
                            assert outcome.code == "invocation_failed", case["name"]
                        _check(step, outcome.result, error, events)
                finally:
                    unsubscribe()
                for scope, keys in case.get("stored", {}).items():
                    for key, value in keys.items():
                        assert await store.get(scope, key) == value, (case["name"], scope, key)
                for scope in {s for s, _, _ in case.get("given", [])} | {"s", "state_barrier"}:
                    for key in await store.list_keys(scope):
                        await store.delete(scope, key)

    run(scenario(), timeout=60)

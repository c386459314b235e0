"""The async store gives exactly the sync store's results, errors and events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iii_state_core import AsyncStateStore, StateError, StateEvent, StateStore, open_async_store, open_store
from iii_state_core.values import same_json

#: A script touching every function, success and failure alike.
SCRIPT: list[tuple[str, dict[str, Any]]] = [
    ("set", {"scope": "s", "key": "a", "value": {"n": 1, "f": 1.0, "l": []}}),
    ("set", {"scope": "s", "key": "a", "data": {"n": 2}}),
    ("set", {"scope": "s", "key": "b", "value": 9007199254740993}),
    ("set", {"scope": "t", "key": "", "value": None}),
    ("get", {"scope": "s", "key": "a"}),
    ("get", {"scope": "s", "key": "missing"}),
    ("update", {"scope": "s", "key": "a", "ops": [{"type": "increment", "path": "n", "by": 1}]}),
    ("update", {"scope": "s", "key": "c", "ops": []}),
    (
        "update",
        {
            "scope": "s",
            "key": "a",
            "ops": [
                {"type": "append", "path": "n", "value": 1},
                {"type": "merge", "path": ["x", "y"], "value": {"z": 1}},
            ],
        },
    ),
    ("update", {"scope": "s", "key": "a", "ops": [{"type": "increment", "path": "n", "by": 0.5}]}),
    ("list", {"scope": "s"}),
    ("list_keys", {"scope": "s"}),
    ("list_groups", {}),
    ("list_entries", {"scope": "s", "limit": 2, "_caller_worker_id": "w"}),
    ("list_entries", {"scope": "s"}),
    ("compare-and-set", {"scope": "s", "key": "b", "expected": 1.0, "value": 2}),
    ("compare-and-set", {"scope": "s", "key": "new", "value": [1]}),
    ("barrier", {"event": {"key": "a"}, "condition_config": {"id": "b", "expect": 2}}),
    ("list_entries", {"scope": "s", "limit": 0, "_caller_worker_id": "w"}),
    ("list_entries", {"scope": "s", "cursor": "nope", "_caller_worker_id": "w"}),
    ("compare-and-set", {"scope": "s", "key": "b", "expected": 9007199254740993, "value": 1}),
    ("compare-and-set", {"scope": "s", "key": "zz", "expected": 1, "value": 2}),
    ("compare-and-set", {"scope": "s", "key": "new", "value": [2]}),
    ("delete", {"scope": "s", "key": "b"}),
    ("delete", {"scope": "s", "key": "b"}),
    ("delete", {"scope": 5, "key": "b"}),
    ("set", {"scope": "s", "key": "k", "value": float("nan")}),
    ("nope", {}),
    ("list_groups", {}),
]


def outcome(result: Any = None, error: StateError | None = None) -> Any:
    if error is not None:
        return {"error": type(error).__name__, "code": error.code, "message": str(error)}
    return {"result": result}


def run_sync_script(store: StateStore) -> list[Any]:
    out = []
    for function, payload in SCRIPT:
        try:
            out.append(outcome(store.trigger({"function_id": f"state::{function}", "payload": payload})))
        except StateError as exc:
            out.append(outcome(error=exc))
    return out


async def run_async_script(store: AsyncStateStore) -> list[Any]:
    out = []
    for function, payload in SCRIPT:
        try:
            out.append(
                outcome(await store.trigger({"function_id": f"state::{function}", "payload": payload}))
            )
        except StateError as exc:
            out.append(outcome(error=exc))
    return out


@pytest.mark.parametrize("method", ["in_memory", "file_based"])
def test_async_trigger_results_identical_to_sync(method: str, tmp_path: Path) -> None:
    def config(name: str) -> dict[str, Any]:
        if method == "in_memory":
            return {"store_method": method}
        return {"store_method": method, "file_path": str(tmp_path / name)}

    sync_events: list[dict[str, Any]] = []
    async_events: list[dict[str, Any]] = []
    with open_store(adapter="kv", adapter_config=config("sync")) as store:
        store.on_change(lambda e: sync_events.append(e.to_wire()))
        expected = run_sync_script(store)

    async def main() -> list[Any]:
        store = open_async_store(adapter="kv", adapter_config=config("async"))
        async with store:
            store.on_change(lambda e: async_events.append(e.to_wire()))
            return await run_async_script(store)

    got = asyncio.run(main())
    assert len(got) == len(expected) == len(SCRIPT)
    for (function, _), a, b in zip(SCRIPT, got, expected, strict=True):
        assert same_json(a, b), f"{function}: async {a!r} != sync {b!r}"
    assert same_json(async_events, sync_events)
    assert sum("error" in o for o in expected) == 7  # the script really exercises failures


def test_async_typed_api(tmp_path: Path) -> None:
    async def main() -> None:
        async with open_async_store(adapter="kv") as store:
            assert (await store.set("s", "k", {"n": 1})).to_wire() == {
                "old_value": None,
                "new_value": {"n": 1},
            }
            assert await store.get("s", "k") == {"n": 1}
            updated = await store.update("s", "k", [{"type": "increment", "path": "n", "by": 2}])
            assert updated.new_value == {"n": 3} and updated.errors == []
            cas = await store.compare_and_set("s", "k", {"n": 3}, "done")
            assert cas.swapped and cas.current is None
            assert await store.list("s") == ["done"]
            assert await store.list_keys("s") == ["k"]
            assert await store.list_groups() == ["s"]
            page = await store.list_entries("s", limit=1)
            assert page.entries == [("k", "done")] and page.done is False
            assert (await store.list_entries("s", cursor=page.next_cursor)).done is True
            assert await store.delete("s", "k") == "done"
            assert await store.list_groups() == []

    asyncio.run(main())


def _collect(kind: str, seen: list[str]) -> Callable[[StateEvent], Any]:
    if kind == "sync":
        return lambda event: seen.append(f"sync:{event.key}")

    async def handler(event: StateEvent) -> None:
        await asyncio.sleep(0)
        seen.append(f"async:{event.key}")

    return handler


def test_async_store_runs_sync_and_async_handlers_and_conditions() -> None:
    seen: list[str] = []

    async def async_condition(event: StateEvent) -> bool:
        return event.key != "skip"

    async def broken(event: StateEvent) -> None:
        raise RuntimeError("boom")

    async def main() -> None:
        async with open_async_store(adapter="kv") as store:
            store.on_change(_collect("sync", seen))
            store.on_change(broken)
            store.on_change(_collect("async", seen), condition=async_condition)
            store.on_change(_collect("sync", seen), condition=lambda e: False)
            await store.set("s", "k", 1)
            await store.set("s", "skip", 1)

    asyncio.run(main())
    assert seen == ["sync:k", "async:k", "sync:skip"]


def test_async_events_triggers_disabled() -> None:
    seen: list[str] = []

    async def main() -> None:
        store = open_async_store({"adapter": {"name": "kv"}, "triggers_enabled": False})
        async with store:
            store.on_change(_collect("async", seen))
            await store.set("s", "k", 1)

    asyncio.run(main())
    assert seen == []


def test_async_close_is_idempotent_and_closes_adapter(tmp_path: Path) -> None:
    async def main() -> None:
        store = open_async_store(
            adapter="kv", adapter_config={"store_method": "file_based", "file_path": str(tmp_path)}
        )
        await store.set("s", "k", 1)
        await store.close()
        await store.close()

    asyncio.run(main())
    with open_store(
        adapter="kv", adapter_config={"store_method": "file_based", "file_path": str(tmp_path)}
    ) as s:
        assert s.get("s", "k") == 1


def test_async_many_concurrent_updates_lose_nothing() -> None:
    async def main() -> Any:
        async with open_async_store(adapter="kv") as store:
            ops = [{"type": "increment", "path": "n", "by": 1}]
            await asyncio.gather(*(store.update("s", "k", ops) for _ in range(200)))
            return await store.get("s", "k")

    assert asyncio.run(main()) == {"n": 200}

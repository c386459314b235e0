"""The async store over the same adapter: its ``async_twin`` when it has one, else threads.

``open_async_store`` never runs the sync primitives the rest of the suite checks when the
adapter has a twin, so the twin gets the same checks here; without a twin the async store
calls the sync primitives from worker threads, concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from iii_state_core import AsyncStateStore, StateStore
from iii_state_core.driver import ThreadedAsyncAdapter
from iii_state_core.events import EventBus

from ..checks import shown, strict_equal
from ..races import adapter_packages, interleaving_executor, tight_switching

TASKS = 8
T = TypeVar("T")


def run_async_over(store: StateStore, work: Callable[[AsyncStateStore], Awaitable[T]]) -> T:
    """Open an async store over ``store``'s adapter, run ``work`` in a fresh loop, close the twin."""

    async def main() -> T:
        # the threaded default runs primitives in the loop's executor: make its threads interleave
        asyncio.get_running_loop().set_default_executor(
            interleaving_executor(adapter_packages(store.adapter))
        )
        events = EventBus(False)
        astore = AsyncStateStore(store.adapter, store.limits, events, store.settings, store.registry)
        try:
            return await work(astore)
        finally:
            # the sync adapter belongs to `store`; only a twin of its own is closed here
            if not isinstance(astore.async_adapter, ThreadedAsyncAdapter):
                await astore.async_adapter.close()

    with tight_switching():
        return asyncio.run(main())


class AsyncStoreTests:
    def test_async_store_round_trips_every_function(self, store: StateStore, scope: str) -> None:
        value: Any = {"s": "e\u0301", "f": -0.0, "i": 2**64 - 1, "l": [1.0, True, None], "o": {}}

        async def work(astore: AsyncStateStore) -> None:
            assert (await astore.set(scope, "k", value)).old_value is None
            assert strict_equal(await astore.get(scope, "k"), value), "async get"
            assert strict_equal(store.get(scope, "k"), value), "the sync store reads what async wrote"
            updated = await astore.update(scope, "k", [{"type": "increment", "path": "n", "by": 2}])
            assert strict_equal(updated.old_value, value) and updated.new_value["n"] == 2
            cas = await astore.compare_and_set(scope, "k", updated.new_value, [])
            assert cas.swapped, cas
            stale = await astore.compare_and_set(scope, "k", updated.new_value, 1)
            assert not stale.swapped and stale.current == [], (
                f"a compare-and-set on a replaced value: {stale}"
            )
            assert not (await astore.compare_and_set(scope, "k", None, 1)).swapped
            assert (await astore.compare_and_set(scope, "new", None, 1)).swapped
            assert sorted(await astore.list_keys(scope)) == ["k", "new"]
            assert scope in await astore.list_groups()
            page = await astore.list_entries(scope, None, 1)
            assert len(page.entries) == 1 and not page.done
            rest = await astore.list_entries(scope, page.next_cursor, 10)
            assert sorted(k for k, _ in page.entries + rest.entries) == ["k", "new"]
            removed = await astore.delete(scope, "k")
            assert strict_equal(removed, []), f"async delete returned {shown(removed)}"
            assert await astore.delete(scope, "k") is None
            assert await astore.delete(scope, "new") == 1
            assert scope not in await astore.list_groups(), "an emptied scope is still listed"
            assert store.get(scope, "new") is None

        run_async_over(store, work)

    def test_async_tasks_incrementing_one_counter_lose_nothing(self, store: StateStore, scope: str) -> None:
        per_task = 25

        async def bump(astore: AsyncStateStore) -> None:
            for _ in range(per_task):
                await astore.update(scope, "counter", [{"type": "increment", "path": "n", "by": 1}])

        async def work(astore: AsyncStateStore) -> Any:
            await asyncio.gather(*(bump(astore) for _ in range(TASKS)))
            return await astore.get(scope, "counter")

        got = run_async_over(store, work)
        assert got == {"n": TASKS * per_task}, f"{TASKS} async tasks x {per_task} increments gave {got}"

    def test_async_tasks_racing_compare_and_set_have_exactly_one_winner(
        self, store: StateStore, scope: str
    ) -> None:
        async def work(astore: AsyncStateStore) -> list[list[Any]]:
            rounds = []
            for round_ in range(6):
                key = f"race-{round_}"
                if round_ % 2 == 0:
                    await astore.set(scope, key, {"v": round_})
                    calls = [
                        astore.compare_and_set(scope, key, {"v": round_}, {"w": me}) for me in range(TASKS)
                    ]
                else:
                    calls = [astore.compare_and_set(scope, key, None, {"w": me}) for me in range(TASKS)]
                rounds.append(["swapped" if r.swapped else "missed" for r in await asyncio.gather(*calls)])
            return rounds

        for round_, outcomes in enumerate(run_async_over(store, work)):
            assert sorted(outcomes) == ["missed"] * (TASKS - 1) + ["swapped"], f"round {round_}: {outcomes}"
            assert store.get(scope, f"race-{round_}") == {"w": outcomes.index("swapped")}

    def test_async_deletes_racing_get_the_value_exactly_once(self, store: StateStore, scope: str) -> None:
        async def work(astore: AsyncStateStore) -> list[list[Any]]:
            rounds = []
            for round_ in range(5):
                await astore.set(scope, "doomed", {"r": round_})
                rounds.append(
                    list(await asyncio.gather(*(astore.delete(scope, "doomed") for _ in range(TASKS))))
                )
            return rounds

        for round_, got in enumerate(run_async_over(store, work)):
            assert [g for g in got if g is not None] == [{"r": round_}], (
                f"round {round_}: deletes returned {got}"
            )

"""One store object driven from many threads at once: every adapter must be thread-safe.

A web service shares one store across its request threads, and the async store runs an
adapter's primitives in worker threads, so these run for every adapter, shared or not.
The threads start together at a barrier and yield to each other at every line of the
adapter's own code (``races``), so an unlocked check-then-act is caught on every run.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from iii_state_core import StateStore

from ..races import run_threads
from .base import Sized

THREADS = 8


def _increments(barrier: Any, store: StateStore, scope: str, key: str, count: int) -> int:
    barrier.wait()
    for _ in range(count):
        store.update(scope, key, [{"type": "increment", "path": "n", "by": 1}])
    return count


def _cas(barrier: Any, store: StateStore, scope: str, key: str, expected: Any, me: int) -> str:
    barrier.wait()
    return "swapped" if store.compare_and_set(scope, key, expected, {"winner": me}).swapped else "missed"


def _set_chain(barrier: Any, store: StateStore, scope: str, key: str, me: int, count: int) -> list[Any]:
    barrier.wait()
    return [store.set(scope, key, {"w": me, "i": i}).old_value for i in range(count)]


def _delete(barrier: Any, store: StateStore, scope: str, key: str) -> Any:
    barrier.wait()
    return store.delete(scope, key)


def _increments_and_deletes(
    barrier: Any, store: StateStore, scope: str, key: str, count: int, me: int
) -> tuple[int, int]:
    barrier.wait()
    increments = deleted = 0
    for i in range(count):
        if (i + me) % 5 == 4:
            removed = store.delete(scope, key)
            deleted += removed["n"] if isinstance(removed, dict) else 0
        else:
            store.update(scope, key, [{"type": "increment", "path": "n", "by": 1}])
            increments += 1
    return increments, deleted


class ThreadTests(Sized):
    def test_threads_incrementing_one_counter_lose_nothing(self, store: StateStore, scope: str) -> None:
        per_thread = self.sized(40, 5)
        run_threads(_increments, [(store, scope, "counter", per_thread)] * THREADS, adapter=store.adapter)
        got = store.get(scope, "counter")
        assert got == {"n": THREADS * per_thread}, (
            f"{THREADS} threads x {per_thread} increments on one store object gave {got}: "
            "an update was lost or applied twice (is write_if/modify atomic across threads?)"
        )

    def test_threads_racing_compare_and_set_have_exactly_one_winner(
        self, store: StateStore, scope: str
    ) -> None:
        for round_ in range(self.sized(8, 4)):
            key = f"race-{round_}"
            # even rounds race on an existing value, odd rounds on create-only (a missing key)
            expected = {"v": round_} if round_ % 2 == 0 else None
            if expected is not None:
                store.set(scope, key, expected)
            outcomes = run_threads(
                _cas, [(store, scope, key, expected, me) for me in range(THREADS)], adapter=store.adapter
            )
            assert sorted(outcomes) == ["missed"] * (THREADS - 1) + ["swapped"], (
                f"round {round_} ({'replace' if expected else 'create-only'}): {outcomes}"
            )
            assert store.get(scope, key) == {"winner": outcomes.index("swapped")}

    def test_threads_setting_one_key_return_an_unbroken_chain(self, store: StateStore, scope: str) -> None:
        """Every value written is replaced exactly once (but the last): no two sets replaced the same."""
        per_thread = self.sized(25, 10)
        results = run_threads(
            _set_chain,
            [(store, scope, "chain", me, per_thread) for me in range(THREADS)],
            adapter=store.adapter,
        )
        olds = Counter(repr(v) for worker in results for v in worker)
        written = {repr({"w": me, "i": i}) for me in range(THREADS) for i in range(per_thread)}
        final = repr(store.get(scope, "chain"))
        assert final in written
        seen_twice = [v for v, n in olds.items() if n > 1]
        assert not seen_twice, f"values replaced twice (write returned a stale old value): {seen_twice[:3]}"
        expected = Counter(written - {final}) + Counter([repr(None)])
        lost = expected - olds
        assert not lost, f"{sum(lost.values())} written values were never returned as replaced"

    def test_threads_deleting_one_key_get_its_value_exactly_once(self, store: StateStore, scope: str) -> None:
        for round_ in range(self.sized(10, 4)):
            store.set(scope, "doomed", {"r": round_})
            got = run_threads(_delete, [(store, scope, "doomed")] * THREADS, adapter=store.adapter)
            winners = [g for g in got if g is not None]
            assert winners == [{"r": round_}], (
                f"round {round_}: {THREADS} racing deletes returned {got}; exactly one must get the value"
            )
            assert store.get(scope, "doomed") is None

    def test_threads_deleting_while_others_increment_lose_nothing(
        self, store: StateStore, scope: str
    ) -> None:
        results = run_threads(
            _increments_and_deletes,
            [(store, scope, "counter", self.sized(30, 5), me) for me in range(THREADS)],
            adapter=store.adapter,
        )
        increments = sum(done for done, _ in results)
        returned = sum(deleted for _, deleted in results)
        final = store.get(scope, "counter")
        left = final["n"] if isinstance(final, dict) else 0
        assert returned + left == increments, (
            f"{increments} increments, but deletes returned {returned} and {left} remain: "
            "a delete lost or duplicated a concurrent update"
        )

"""Atomicity under contention, in separate processes: no update lost, none applied twice.

``iii-state conformance --quick`` leaves these out; a suite subclass with ``quick = True`` runs
them with fewer operations per process (the 8 processes still start together at a barrier).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from iii_state_core import StateStore

from .. import processes
from ..processes import StoreSpec
from .base import Sized

WORKERS = 8


class ConcurrencyTests(Sized):
    def test_concurrent_increments_lose_nothing(self, store: StateStore, scope: str, spec: StoreSpec) -> None:
        # the barrier makes the 8 overlap; more rounds only cost time on slow stores
        per_worker = self.sized(120, 20)
        barrier = processes.context().Barrier(WORKERS)
        processes.run_processes(
            spec, processes.increments, [(scope, "counter", per_worker, barrier)] * WORKERS, timeout=300
        )
        assert store.get(scope, "counter") == {"n": WORKERS * per_worker}

    def test_concurrent_deletes_return_exactly_what_they_removed(
        self, store: StateStore, scope: str, spec: StoreSpec
    ) -> None:
        """Every increment ends up either in a value some delete returned or in the final value."""
        barrier = processes.context().Barrier(WORKERS)
        results = processes.run_processes(
            spec,
            processes.increments_and_deletes,
            [(scope, "counter", self.sized(100, 20), me, barrier) for me in range(WORKERS)],
            timeout=300,
        )
        increments = sum(done for done, _ in results)
        returned_by_deletes = sum(deleted for _, deleted in results)
        final = store.get(scope, "counter")
        left = final["n"] if isinstance(final, dict) else 0
        assert returned_by_deletes + left == increments, (
            f"{increments} increments, but deletes returned {returned_by_deletes} and {left} remain: "
            f"a delete lost or duplicated a concurrent update (read-then-delete?)"
        )

    def test_racing_compare_and_set_has_exactly_one_winner(
        self, store: StateStore, scope: str, spec: StoreSpec
    ) -> None:
        for round_ in range(3):
            key = f"race-{round_}"
            store.set(scope, key, {"v": 0})
            barrier = processes.context().Barrier(WORKERS)
            outcomes = processes.run_processes(
                spec, processes.racing_cas, [(scope, key, {"v": 0}, me, barrier) for me in range(WORKERS)]
            )
            assert sorted(outcomes) == ["missed"] * (WORKERS - 1) + ["swapped"], outcomes
            winner = outcomes.index("swapped")
            assert store.get(scope, key) == {"winner": winner}

    def test_concurrent_sets_return_an_unbroken_chain(
        self, store: StateStore, scope: str, spec: StoreSpec
    ) -> None:
        """Every value written is replaced exactly once (but the last), so the old values form one chain."""
        per_worker = self.sized(60, 15)
        barrier = processes.context().Barrier(WORKERS)
        results = processes.run_processes(
            spec,
            processes.set_chain,
            [(scope, "chain", me, per_worker, barrier) for me in range(WORKERS)],
            timeout=300,
        )
        olds = Counter(_key(v) for worker in results for v in worker)
        written = {_key({"w": me, "i": i}) for me in range(WORKERS) for i in range(per_worker)}
        final = _key(store.get(scope, "chain"))
        assert final in written
        expected = Counter(written - {final}) + Counter([_key(None)])
        seen_twice = [v for v, n in olds.items() if n > 1]
        assert not seen_twice, f"values replaced twice (a write applied on a stale read): {seen_twice[:3]}"
        lost = expected - olds
        assert not lost, f"{sum(lost.values())} written values were never returned as replaced: lost updates"
        assert olds == expected

    def test_per_worker_order_is_kept(self, store: StateStore, scope: str, spec: StoreSpec) -> None:
        """A worker's own writes replace each other in program order (read-your-writes per process)."""
        barrier = processes.context().Barrier(2)
        results = processes.run_processes(
            spec, processes.set_chain, [(scope, "order", me, 50, barrier) for me in range(2)]
        )
        for me, olds in enumerate(results):
            own = [v["i"] for v in olds if isinstance(v, dict) and v.get("w") == me]
            assert own == sorted(own), f"worker {me} saw its own writes out of order: {own}"


def _key(value: Any) -> str:
    return repr(value)

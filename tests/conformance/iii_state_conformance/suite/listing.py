"""contract § Functions listing guarantees: list_groups lists non-empty scopes; list_entries walks safely."""

from __future__ import annotations

from collections import Counter
from typing import Any

from iii_state_core import StateStore

from .. import processes
from ..processes import StoreSpec

STABLE = 2500


def _walk(store: StateStore, scope: str, limit: int) -> list[str]:
    keys: list[str] = []
    cursor = None
    for _ in range(100_000):
        page = store.list_entries(scope, cursor, limit)
        assert len(page.entries) <= limit, f"a page held {len(page.entries)} entries, limit {limit}"
        keys.extend(k for k, _ in page.entries)
        if page.done:
            assert page.next_cursor is None
            return keys
        cursor = page.next_cursor
    raise AssertionError("list_entries never finished")


class ListingTests:
    def test_list_groups_drops_a_scope_when_its_last_key_goes(
        self, store: StateStore, make_scope: Any
    ) -> None:
        scope = make_scope("-groups")
        store.set(scope, "a", 1)
        store.set(scope, "b", 1)
        store.delete(scope, "a")
        assert scope in store.list_groups()
        store.delete(scope, "b")
        assert scope not in store.list_groups()
        store.update(scope, "c", [])
        assert scope in store.list_groups()
        store.delete(scope, "c")
        store.compare_and_set(scope, "d", new_value=1)
        assert scope in store.list_groups()

    def test_list_entries_walk_without_writers(self, store: StateStore, scope: str, caps: Any) -> None:
        expected = {f"k{i:04d}" for i in range(350)}
        for k in expected:
            store.set(scope, k, {"k": k})
        for limit in (1, 7, 100, 1000):
            keys = _walk(store, scope, limit)
            assert set(keys) == expected, f"limit {limit}: missing {sorted(expected - set(keys))[:5]}"
            if caps.ordered_listing:
                dupes = [k for k, n in Counter(keys).items() if n > 1]
                assert not dupes, f"ordered listing is declared, yet keys repeat: {dupes[:5]}"

    def test_list_entries_walk_while_another_process_writes(
        self, store: StateStore, scope: str, caps: Any, spec: StoreSpec
    ) -> None:
        stable = {f"stable-{i:05d}" for i in range(STABLE)}
        for k in sorted(stable):
            store.set(scope, k, 1)
        ctx = processes.context()
        stop, started = ctx.Event(), ctx.Event()
        queue = ctx.Queue()
        writer = ctx.Process(
            target=processes._child,
            args=(processes.churn, spec, queue, (scope, "churn-", stop, started)),
            daemon=True,
        )
        writer.start()
        try:
            assert started.wait(60), "the writer process did not start"
            keys = _walk(store, scope, 97)
        finally:
            stop.set()
            status, _, detail = queue.get(timeout=120)
            writer.join(10)
        assert status == "ok", f"writer failed: {detail}"
        assert detail >= 50, "the writer made too few writes to test anything"
        counts = Counter(keys)
        missing = sorted(stable - set(counts))
        assert not missing, f"{len(missing)} keys present for the whole walk were not returned: {missing[:5]}"
        if caps.ordered_listing:
            dupes = [k for k, n in counts.items() if n > 1]
            assert not dupes, f"ordered listing is declared, yet keys repeat: {dupes[:5]}"

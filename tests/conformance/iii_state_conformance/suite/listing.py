"""contract § Functions listing guarantees: list_groups lists non-empty scopes; list_entries walks safely."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from iii_state_core import StateStore

from .. import processes
from ..processes import StoreSpec
from ..races import tight_switching
from .base import Sized

#: Keys present for the whole walk under a churning writer process, walked in pages of
#: WALK_PAGE: ~27 pages, so the writer lands many writes between pages on any store.
STABLE = 1000
WALK_PAGE = 37


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


class ListingTests(Sized):
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
        store.compare_and_set(scope, "d", None, 1)
        assert scope in store.list_groups()

    def test_list_entries_walk_without_writers(self, store: StateStore, scope: str, caps: Any) -> None:
        expected = {f"k{i:04d}" for i in range(self.sized(350, 120))}
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
            keys = _walk(store, scope, WALK_PAGE)
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

    def test_list_entries_walk_while_writes_land_between_pages(
        self, store: StateStore, scope: str, caps: Any
    ) -> None:
        """Deterministic: between every two pages, keys before the cursor go and come, and the
        key the cursor points at is deleted when it is not one of the stable keys."""
        stable = [f"m{i:03d}" for i in range(0, 120, 2)]
        churn = [f"m{i:03d}" for i in range(1, 120, 2)]  # interleaved with the stable keys
        before = [f"a{i:03d}" for i in range(80)]  # sort before every m-key
        for k in stable + churn + before:
            store.set(scope, k, 1 if k in stable else 0)
        keys: list[str] = []
        cursor = None
        for page_number in range(1000):
            page = store.list_entries(scope, cursor, 5)
            keys.extend(k for k, _ in page.entries)
            if page.done:
                break
            cursor = page.next_cursor
            last = page.entries[-1][0] if page.entries else ""
            if last and last not in stable:
                store.delete(scope, last)  # the key the cursor stands on is gone
            for _ in range(2):  # two keys before the cursor go, one new one comes
                if before:
                    store.delete(scope, before.pop(0))
            store.set(scope, f"0-new-{page_number:03d}", 2)
            store.set(scope, f"z-new-{page_number:03d}", 2)  # and one after every key
        else:
            raise AssertionError("list_entries never finished")
        counts = Counter(keys)
        missing = [k for k in stable if k not in counts]
        assert not missing, (
            f"{len(missing)} keys present for the whole walk were skipped, e.g. {missing[:3]}: "
            "does the cursor depend on positions, or on the key it names still existing?"
        )
        if caps.ordered_listing:
            dupes = [k for k, n in counts.items() if n > 1]
            assert not dupes, f"ordered listing is declared, yet keys repeat: {dupes[:5]}"

    def test_list_entries_walk_while_another_thread_writes(
        self, store: StateStore, scope: str, caps: Any
    ) -> None:
        """The same store object walked in one thread while another writes and deletes keys."""
        stable = {f"stable-{i:04d}" for i in range(self.sized(600, 200))}
        for k in sorted(stable):
            store.set(scope, k, 1)
        stop, started = threading.Event(), threading.Event()
        failures: list[BaseException] = []
        writes = [0]

        def churn() -> None:
            try:
                n = 0
                while not stop.is_set() or n < 50:
                    key = f"churn-{n % 200:04d}"  # sorts before the stable keys
                    if n % 3 == 2:
                        store.delete(scope, key)
                    else:
                        store.set(scope, key, n)
                    n += 1
                    if n == 20:
                        started.set()
                writes[0] = n
            except BaseException as exc:
                failures.append(exc)
                started.set()

        writer = threading.Thread(target=churn, daemon=True)
        with tight_switching():
            writer.start()
            try:
                assert started.wait(60), "the writer thread did not start"
                keys = _walk(store, scope, 37)
            finally:
                stop.set()
                writer.join(60)
        assert not failures, f"the writer thread failed: {failures[0]!r}"
        counts = Counter(keys)
        missing = sorted(stable - set(counts))
        assert not missing, f"{len(missing)} keys present for the whole walk were not returned: {missing[:5]}"
        if caps.ordered_listing:
            dupes = [k for k, n in counts.items() if n > 1]
            assert not dupes, f"ordered listing is declared, yet keys repeat: {dupes[:5]}"

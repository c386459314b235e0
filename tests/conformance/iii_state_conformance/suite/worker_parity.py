"""The surface of iii's ``state`` worker on this backend: compare-and-set, list_entries paging
(byte budget, limits, cursors across a reopened store), the barrier (exactly one ``allow`` with
8 processes arriving at once) and private scopes claimed in one process, refused in another."""

from __future__ import annotations

import json
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from iii_state_core import StateError, StateStore
from iii_state_core.driver import run_sync
from iii_state_core.namespaces import LEDGER_SCOPE, OWNER_PREFIX, claim

from .. import processes
from ..processes import StoreSpec
from .base import call, wire_error

WORKERS = 8
CALLER = {"_caller_worker_id": "conformance"}


def _page(store: StateStore, scope: str, **fields: Any) -> dict[str, Any]:
    page: dict[str, Any] = call(store, "list_entries", {"scope": scope, **CALLER, **fields})
    return page


def barrier_arrival(store: StateStore, barrier_id: str, me: int, gate: Any) -> str:
    """One process's arrival at an 8-way barrier; returns the decision."""
    gate.wait()
    config = {"id": barrier_id, "expect": WORKERS}
    decision: dict[str, Any] = call(
        store, "barrier", {"event": {"key": f"p{me}"}, "condition_config": config}
    )
    return str(decision["decision"])


class WorkerParityTests:
    # -- compare-and-set -----------------------------------------------------------------------

    def test_compare_and_set_swaps_and_misses_like_iii(self, store: StateStore, scope: str) -> None:
        base = {"scope": scope, "key": "k"}
        assert call(store, "compare-and-set", {**base, "value": {"n": 1}}) == {"swapped": True}
        assert call(store, "compare-and-set", {**base, "value": 2}) == {"swapped": False, "current": {"n": 1}}
        assert (
            call(store, "compare-and-set", {**base, "expected": {"n": 1.0}, "value": 2})["swapped"] is False
        )
        assert call(store, "compare-and-set", {**base, "expected": {"n": 1}, "value": None}) == {
            "swapped": True
        }
        # a stored null counts as absent
        assert call(store, "compare-and-set", {**base, "expected": None, "value": [1]}) == {"swapped": True}
        assert store.get(scope, "k") == [1]
        # a missing key matches no value; a bad payload, an unsupported durable: nothing written
        miss = {"scope": scope, "key": "gone", "expected": 1, "value": 2}
        assert call(store, "compare-and-set", miss) == {"swapped": False, "current": None}
        assert wire_error(store, "compare-and-set", {**base, "data": 2}).code == "deserialization_error"
        durable = {**base, "expected": [1], "value": 3, "durable": True}
        if store.capabilities.durable:
            assert call(store, "compare-and-set", durable) == {"swapped": True}
        else:
            assert wire_error(store, "compare-and-set", durable).code == "UNSUPPORTED"
        assert store.get(scope, "k") == (3 if store.capabilities.durable else [1])
        assert store.get(scope, "gone") is None
        assert wire_error(store, "compare_and_set", base).code == "function_not_found", "the old id is gone"

    # -- list_entries paging -------------------------------------------------------------------

    def test_list_entries_walk_with_offset_and_total(self, store: StateStore, scope: str) -> None:
        for i in range(23):
            store.set(scope, f"k{i:02}", i)
        seen: list[str] = []
        cursor = None
        for _ in range(50):
            page = _page(store, scope, limit=5, **({"cursor": cursor} if cursor else {}))
            assert list(page) == ["entries", "next_cursor", "done", "offset", "total"]
            assert page["offset"] == len(seen) and page["total"] == 23 and len(page["entries"]) <= 5
            seen.extend(k for k, _ in page["entries"])
            if page["done"]:
                break
            cursor = page["next_cursor"]
        assert sorted(set(seen)) == sorted(f"k{i:02}" for i in range(23))

    def test_list_entries_byte_budget_cuts_pages(self, store: StateStore, scope: str) -> None:
        for i in range(6):
            store.set(scope, f"k{i}", "v" * 150)
        seen: list[str] = []
        cursor = None
        for _ in range(50):
            page = _page(store, scope, max_bytes=500, **({"cursor": cursor} if cursor else {}))
            encoded = json.dumps(page, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            assert len(encoded) <= 500
            seen.extend(k for k, _ in page["entries"])
            if page["done"]:
                break
            cursor = page["next_cursor"]
        assert sorted(set(seen)) == [f"k{i}" for i in range(6)]
        store.set(scope, "huge", "v" * 600)
        assert wire_error(store, "list_entries", {"scope": scope, "max_bytes": 256, **CALLER}).code in (
            "ROW_TOO_LARGE",
        )

    def test_list_entries_limits_and_callers(self, store: StateStore, scope: str) -> None:
        for bad in ({"limit": 0}, {"limit": 1001}, {"max_bytes": 255}, {"max_bytes": 8_000_001}):
            assert (
                wire_error(store, "list_entries", {"scope": scope, **CALLER, **bad}).code
                == "INVALID_PAGE_LIMITS"
            )
        assert wire_error(store, "list_entries", {"scope": scope}).code == "UNKNOWN_CALLER"
        for forged in ("00000000-0000-0000-0000-000000000000", "x.y", ""):
            error = wire_error(store, "list_entries", {"scope": scope, "cursor": forged, **CALLER})
            assert error.code == "INVALID_CURSOR"

    def test_list_entries_cursor_survives_a_reopened_store(
        self, store: StateStore, scope: str, spec: StoreSpec
    ) -> None:
        for i in range(6):
            store.set(scope, f"k{i}", i)
        first = _page(store, scope, limit=3)
        with spec.open() as other:  # a restarted worker, or another replica
            rest: list[str] = []
            cursor = first["next_cursor"]
            while cursor:
                page = _page(other, scope, limit=3, cursor=cursor)
                rest.extend(k for k, _ in page["entries"])
                cursor = page["next_cursor"]
        assert sorted({k for k, _ in first["entries"]} | set(rest)) == [f"k{i}" for i in range(6)]

    # -- barrier -------------------------------------------------------------------------------

    def test_barrier_allows_exactly_once_with_8_processes(self, store: StateStore, spec: StoreSpec) -> None:
        barrier_id = f"iii-conf-{secrets.token_hex(6)}"
        try:
            gate = processes.context().Barrier(WORKERS)
            decisions = processes.run_processes(
                spec, barrier_arrival, [(barrier_id, me, gate) for me in range(WORKERS)], timeout=180
            )
            assert sorted(decisions) == ["allow"] + ["skip"] * (WORKERS - 1), decisions
            late = call(
                store,
                "barrier",
                {"event": {"key": "late"}, "condition_config": {"id": barrier_id, "expect": WORKERS}},
            )
            assert late == {"decision": "skip", "reason": f"barrier `{barrier_id}` already complete"}
        finally:
            store.delete("state_barrier", barrier_id)

    def test_barrier_allows_exactly_once_with_8_threads(self, store: StateStore) -> None:
        barrier_id = f"iii-conf-{secrets.token_hex(6)}"
        gate = threading.Barrier(WORKERS)
        try:
            with ThreadPoolExecutor(WORKERS) as pool:
                decisions = list(
                    pool.map(lambda me: barrier_arrival(store, barrier_id, me, gate), range(WORKERS))
                )
            assert sorted(decisions) == ["allow"] + ["skip"] * (WORKERS - 1), decisions
        finally:
            store.delete("state_barrier", barrier_id)

    # -- private scopes ------------------------------------------------------------------------

    def test_a_claim_in_one_process_is_enforced_by_another(
        self, store: StateStore, scope: str, spec: StoreSpec
    ) -> None:
        prefix = f"conf{secrets.token_hex(4)}"
        with spec.open() as replica:
            replica.reserved.refresh_s = 0.05
            call(replica, "set", {"scope": "warm-up-" + scope, "key": "k", "value": 1})
            replica.delete("warm-up-" + scope, "k")
            try:
                (result, _ledger), _ = run_sync(
                    _claim_plan(prefix, [scope]), store.adapter, "claim-namespace"
                )
                assert result["claimed"] is True and result["scopes"] == [scope]
                time.sleep(0.06)
                for function, payload in (
                    ("set", {"scope": scope, "key": "k", "value": 1}),
                    ("get", {"scope": scope, "key": "k"}),
                    ("compare-and-set", {"scope": scope, "key": "k", "value": 1}),
                ):
                    error = wire_error(replica, function, payload)
                    assert (error.code, str(error)) == (
                        "RESERVED_SCOPE",
                        f"`{scope}` is private worker bookkeeping",
                    )
                assert scope not in call(replica, "list_groups", {})["groups"]
                assert store.get(scope, "k") is None  # nothing was written
                with pytest.raises(StateError) as info:
                    run_sync(_claim_plan("other" + prefix, [scope]), store.adapter, "claim-namespace")
                assert info.value.code == "SCOPE_CONFLICT"
            finally:
                store.delete(LEDGER_SCOPE, prefix)
                store.delete(LEDGER_SCOPE, OWNER_PREFIX + scope)


def _claim_plan(prefix: str, scopes: list[str]) -> Any:
    outcome = yield from claim(prefix, scopes)
    return outcome, None

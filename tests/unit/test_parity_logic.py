"""The reference worker's decisions, as pure logic over the in-memory adapter: compare-and-set,
list_entries paging (limit, max_bytes cut, offset/total, cursors), barrier, namespace claims."""

from __future__ import annotations

import json
from typing import Any

import pytest

from iii_state_core import StateStore
from iii_state_core.barrier import BARRIER_SCOPE, BarrierConfig, arrive, barrier, rust_debug_list
from iii_state_core.driver import run_sync
from iii_state_core.errors import DeserializationError, StateError
from iii_state_core.namespaces import LEDGER_SCOPE, Ledger, ReservedScopes, caller_name, check_claim, claim
from iii_state_core.paging import PageRequest, PagingError, list_entries, row_bytes
from iii_state_core.swap import compare_and_set


def run(store: StateStore, plan: Any, function: str = "get") -> Any:
    return run_sync(plan, store.adapter, function)


# -- compare-and-set ---------------------------------------------------------------------------


def cas(store: StateStore, key: str, expected: Any, value: Any) -> tuple[dict[str, Any], Any]:
    result, event = run(store, compare_and_set(store.limits, "s", key, expected, value))
    return result.to_wire(), None if event is None else event.to_wire()


def test_cas_expect_absent_creates_and_emits_created(memory_store: StateStore) -> None:
    assert cas(memory_store, "k", None, 1) == (
        {"swapped": True},
        {
            "type": "state",
            "event_type": "state:created",
            "scope": "s",
            "key": "k",
            "old_value": None,
            "new_value": 1,
        },
    )
    result, event = cas(memory_store, "k", None, 2)
    assert (result, event) == ({"swapped": False, "current": 1}, None)
    assert memory_store.get("s", "k") == 1


def test_cas_stored_null_counts_as_absent_but_event_is_updated(memory_store: StateStore) -> None:
    memory_store.set("s", "k", None)
    result, event = cas(memory_store, "k", None, "x")
    assert result == {"swapped": True}
    assert event is not None and event["event_type"] == "state:updated" and event["old_value"] is None


def test_cas_serde_equality(memory_store: StateStore) -> None:
    memory_store.set("s", "k", {"a": 1, "b": [True]})
    assert cas(memory_store, "k", {"a": 1.0, "b": [True]}, 0)[0] == {
        "swapped": False,
        "current": {"a": 1, "b": [True]},
    }
    assert cas(memory_store, "k", {"b": [1], "a": 1}, 0)[0]["swapped"] is False
    assert cas(memory_store, "k", {"b": [True], "a": 1}, 0)[0] == {"swapped": True}  # key order irrelevant


def test_cas_miss_on_missing_key_returns_current_null_and_writes_nothing(memory_store: StateStore) -> None:
    assert cas(memory_store, "k", 5, 6) == ({"swapped": False, "current": None}, None)
    assert memory_store.list_groups() == []


# -- list_entries paging -----------------------------------------------------------------------


def page(store: StateStore, cursor: str | None = None, **fields: Any) -> dict[str, Any]:
    request = PageRequest.parse(namespace="state::list_entries", scope=fields.pop("scope", "s"),
                                caller=fields.pop("caller", "w1"), **fields)  # fmt: skip
    result, _ = run(store, list_entries(store.limits, request, cursor), "list_entries")
    wire: dict[str, Any] = result.to_wire()
    assert list(wire) == ["entries", "next_cursor", "done", "offset", "total"]
    return wire


def walk(store: StateStore, **fields: Any) -> list[dict[str, Any]]:
    pages = [page(store, **fields)]
    while not pages[-1]["done"]:
        pages.append(page(store, pages[-1]["next_cursor"], **fields))
    return pages


def test_limits_and_caller_checks_in_order(memory_store: StateStore) -> None:
    for bad in (
        {"limit": 0},
        {"limit": 1001},
        {"max_bytes": 255},
        {"max_bytes": 8_000_001},
        {"scope": "x" * 1025},
    ):
        with pytest.raises(PagingError) as info:
            page(memory_store, caller=None, **bad)
        assert info.value.code == "INVALID_PAGE_LIMITS"
        assert str(info.value) == "limit=1..1000, max_bytes=256..8000000, scope/namespace<=1024 bytes"
    for caller in (None, "", "x" * 257):
        with pytest.raises(PagingError) as info:
            page(memory_store, caller=caller)
        assert (info.value.code, str(info.value)) == (
            "UNKNOWN_CALLER",
            "list_entries requires engine-stamped identity",
        )
    for bad in ({"limit": -1}, {"limit": 1.5}, {"limit": "10"}, {"max_bytes": True}):
        with pytest.raises(DeserializationError):
            page(memory_store, **bad)


def test_walk_offsets_total_and_every_key_once(memory_store: StateStore) -> None:
    for i in range(25):
        memory_store.set("s", f"k{i:02}", i)
    pages = walk(memory_store, limit=10)
    assert [p["offset"] for p in pages][:3] == [0, 10, 20]
    assert all(p["total"] == 25 for p in pages)
    keys = [k for p in pages for k, _ in p["entries"]]
    assert keys == sorted(f"k{i:02}" for i in range(25))
    assert pages[-1]["next_cursor"] is None and all(p["next_cursor"] for p in pages[:-1])


def test_total_is_the_count_when_the_walk_began(memory_store: StateStore) -> None:
    for i in range(5):
        memory_store.set("s", f"k{i}", i)
    first = page(memory_store, limit=2)
    memory_store.set("s", "k9", 9)
    second = page(memory_store, first["next_cursor"], limit=2)
    assert (first["total"], second["total"], second["offset"]) == (5, 5, 2)


def test_a_first_page_holding_the_whole_scope_is_its_own_count(
    memory_store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No count call when the first page reaches the scope's end (one backend request on a
    small scope, not two); a longer scope is still counted, and both totals are exact."""
    counted: list[str] = []
    adapter = memory_store.adapter
    real_count = adapter.count
    monkeypatch.setattr(adapter, "count", lambda scope: counted.append(scope) or real_count(scope))
    for i in range(12):
        memory_store.set("s", f"k{i:02}", None if i % 4 == 0 else i)
    whole = page(memory_store, limit=20)
    assert (whole["total"], whole["done"], counted) == (12, True, [])
    assert page(memory_store, limit=20, non_null_only=True)["total"] == 9
    assert page(memory_store, limit=11)["total"] == 12 and counted == ["s"]
    assert page(memory_store, limit=11, non_null_only=True)["total"] == 9


def test_max_bytes_cuts_the_page_and_the_next_page_resumes_after_the_cut(memory_store: StateStore) -> None:
    big = "v" * 200
    for i in range(6):
        memory_store.set("s", f"k{i}", big)
    pages = walk(memory_store, limit=100, max_bytes=600)
    for p in pages:
        assert len(json.dumps(p, ensure_ascii=False, separators=(",", ":")).encode()) <= 600
    assert [k for p in pages for k, _ in p["entries"]] == [f"k{i}" for i in range(6)]
    assert len(pages) >= 3


def test_a_row_larger_than_the_budget_is_row_too_large(memory_store: StateStore) -> None:
    memory_store.set("s", "k", "v" * 400)
    with pytest.raises(PagingError) as info:
        page(memory_store, max_bytes=256)
    assert (info.value.code, str(info.value)) == (
        "ROW_TOO_LARGE",
        "a complete keyed row does not fit the page byte budget",
    )
    assert row_bytes("k", b'"ab"') == len('["k","ab"]')


def test_cursor_is_bound_to_its_walk_and_tamper_evident(memory_store: StateStore) -> None:
    for i in range(4):
        memory_store.set("s", f"k{i}", i)
        memory_store.set("other", f"k{i}", i)
    cursor = page(memory_store, limit=2)["next_cursor"]
    for foreign in ({"scope": "other"}, {"caller": "w2"}, {"limit": 3}, {"max_bytes": 5000}):
        with pytest.raises(PagingError) as info:
            page(memory_store, cursor, **{"limit": 2, **foreign})
        assert info.value.code == "INVALID_CURSOR"
    body, check = cursor.split(".")
    for forged in (
        "",
        "nonsense",
        cursor + "x",
        body[:-2] + "AA." + check,
        "00000000-0000-0000-0000-000000000000",
    ):
        with pytest.raises(PagingError) as info:
            page(memory_store, forged, limit=2)
        assert str(info.value) == "invalid, expired or consumed cursor; restart without cursor"
    # a cursor is not used up: the same page can be asked for again (a retry after a lost reply)
    assert page(memory_store, cursor, limit=2) == page(memory_store, cursor, limit=2)


def test_cursor_survives_a_new_store_over_the_same_data(tmp_path: Any) -> None:
    from iii_state_core import open_store

    config = {"adapter": {"name": "kv", "config": {"store_method": "file_based", "file_path": str(tmp_path)}}}
    with open_store(config) as first:
        for i in range(5):
            first.set("s", f"k{i}", i)
        cursor = page(first, limit=2)["next_cursor"]
    with open_store(config) as restarted:  # a restarted worker, or another replica
        second = page(restarted, cursor, limit=2)
    assert [k for k, _ in second["entries"]] == ["k2", "k3"] and second["offset"] == 2


def test_non_null_only_drops_exact_null_only(memory_store: StateStore) -> None:
    values = {"a": None, "b": False, "c": 0, "d": "", "e": [], "f": {}, "g": "null"}
    for key, value in values.items():
        memory_store.set("s", key, value)
    result = page(memory_store, non_null_only=True)
    assert [k for k, _ in result["entries"]] == ["b", "c", "d", "e", "f", "g"] and result["total"] == 6


# -- barrier -----------------------------------------------------------------------------------


def arrival(store: StateStore, config: dict[str, Any] | None, event: Any) -> dict[str, Any]:
    decision, _ = run(store, barrier(store.limits, {"event": event, "condition_config": config}), "barrier")
    return decision  # type: ignore[no-any-return]


def test_counted_barrier_allows_exactly_once(memory_store: StateStore) -> None:
    config = {"id": "b1", "expect": 2}
    assert arrival(memory_store, config, {"key": "x"}) == {
        "decision": "skip",
        "reason": "barrier `b1`: 1/2 arrived, waiting on 1 more",
    }
    assert arrival(memory_store, config, {"key": "x"}) == {
        "decision": "skip",
        "reason": "barrier `b1`: `x` already counted, still 1/2",
    }
    assert arrival(memory_store, config, {"key": "y", "n": 1}) == {
        "decision": "allow",
        "payload": {"results": {"x": {"key": "x"}, "y": {"key": "y", "n": 1}}},
        "reason": "barrier `b1` complete (2/2)",
    }
    assert arrival(memory_store, config, {"key": "z"}) == {
        "decision": "skip",
        "reason": "barrier `b1` already complete",
    }
    assert memory_store.get(BARRIER_SCOPE, "b1")["complete"] is True


def test_named_barrier_texts_and_carry(memory_store: StateStore) -> None:
    config = {"id": "n", "expect": ["a", "b", "c"], "key_from": "/who", "carry": "/out"}
    assert arrival(memory_store, config, {"who": "a", "out": 7})["reason"] == (
        'barrier `n`: 1/3 arrived, waiting on ["b", "c"]'
    )
    assert arrival(memory_store, config, {"who": "q"})["reason"] == (
        "barrier `n`: `q` is not one of the expected arrivals — check the producer's key against `expect`"
    )
    arrival(memory_store, config, {"who": "b"})
    done = arrival(memory_store, config, {"who": "c", "out": [1]})
    assert done["decision"] == "allow" and done["payload"] == {"results": {"a": 7, "b": None, "c": [1]}}


def test_barrier_errors(memory_store: StateStore) -> None:
    with pytest.raises(StateError) as info:
        arrival(memory_store, None, {})
    assert info.value.code == "BARRIER_CONFIG" and "goes in `conditions: [{ function_id, config }]`" in str(
        info.value
    )
    for expect, text in ((10_001, "barrier `i`: `expect` cannot exceed 10000 arrivals"),
                         (0, "barrier `i`: `expect` must contain at least one arrival"),
                         ([], "barrier `i`: `expect` must contain at least one arrival"),
                         (["a", "a"], "barrier `i`: duplicate expected arrival key `a`")):  # fmt: skip
        with pytest.raises(StateError) as info:
            arrival(memory_store, {"id": "i", "expect": expect}, {"key": "a"})
        assert (info.value.code, str(info.value)) == ("BARRIER_ERROR", text)
    with pytest.raises(StateError) as info:
        arrival(memory_store, {"id": "i", "expect": 2}, {"other": 1})
    assert str(info.value).startswith("barrier `i`: no arrival key at `/key` in the event")
    with pytest.raises(DeserializationError, match="missing field `id`"):
        arrival(memory_store, {"expect": 2}, {"key": "a"})
    assert memory_store.list_groups() == []  # nothing recorded by any refusal


def test_non_string_arrival_key_is_its_compact_json() -> None:
    config = BarrierConfig.parse({"id": "j", "expect": 3})
    outcome = arrive(config, None, {"key": {"a": [1, 2]}})
    assert outcome.record is not None and list(outcome.record["arrived"]) == ['{"a":[1,2]}']
    assert rust_debug_list(['a"b', "c\\d", "e\nf"]) == '["a\\"b", "c\\\\d", "e\\nf"]'


def test_unreadable_barrier_state_is_an_error_not_a_restart(memory_store: StateStore) -> None:
    memory_store.set(BARRIER_SCOPE, "u", [1, 2])
    with pytest.raises(StateError, match="barrier `u` state is unreadable"):
        arrival(memory_store, {"id": "u", "expect": 2}, {"key": "a"})
    assert memory_store.get(BARRIER_SCOPE, "u") == [1, 2]


# -- namespaces --------------------------------------------------------------------------------


def test_claim_checks_in_order() -> None:
    cases = [
        (("", ["a"], "w"), "INVALID_PREFIX", "functions_prefix must be non-empty [A-Za-z0-9_-]"),
        (("a.b", ["a"], "w"), "INVALID_PREFIX", "functions_prefix must be non-empty [A-Za-z0-9_-]"),
        (("p", ["a", ""], None), "INVALID_SCOPE", "scopes must be non-empty"),
        (("p", ["state_barrier"], None), "RESERVED_SCOPE", "`state_barrier` is state worker bookkeeping"),
        (("p", ["a"], None), "UNKNOWN_CALLER", "the engine did not stamp _caller_worker_id"),
    ]
    for args, code, text in cases:
        with pytest.raises(StateError) as info:
            check_claim(*args)
        assert (info.value.code, str(info.value)) == (code, text)
    workers = {"workers": [{"id": "w-1", "name": "billing"}]}
    assert caller_name(workers, "w-1") == "billing"
    with pytest.raises(StateError, match="worker id `w-2` is not registered"):
        caller_name(workers, "w-2")


def test_claim_is_all_or_nothing_and_idempotent(memory_store: StateStore) -> None:
    result, ledger = run(memory_store, claim("billing", ["inv", "pay"]), "claim-namespace")
    assert result == {"claimed": True, "scopes": ["inv", "pay"], "functions": [
        "billing::state::get", "billing::state::list", "billing::state::list_keys",
        "billing::state::list_entries", "billing::state::compare-and-set"]}  # fmt: skip
    assert memory_store.get(LEDGER_SCOPE, "billing") == {
        "functions_prefix": "billing",
        "scopes": ["inv", "pay"],
    }
    again, _ = run(memory_store, claim("billing", ["pay"]), "claim-namespace")
    assert again["claimed"] is False and again["scopes"] == ["inv", "pay"]
    with pytest.raises(StateError) as info:
        run(memory_store, claim("ship", ["new", "pay"]), "claim-namespace")
    assert (info.value.code, str(info.value)) == (
        "SCOPE_CONFLICT",
        "scope `pay` is already claimed by namespace `billing`",
    )
    ledger = Ledger.from_rows(memory_store.adapter.scan(LEDGER_SCOPE, None, 100)[0])
    assert "new" not in ledger.owners and "ship" not in ledger.namespaces
    reserved = ReservedScopes()
    reserved.replace(ledger)
    assert reserved.contains("inv") and reserved.contains("state_barrier") and not reserved.contains("new")
    with pytest.raises(StateError, match="`inv` is private worker bookkeeping"):
        reserved.check("inv")


def test_ledger_rows_of_the_reference_are_read_and_bad_rows_skipped() -> None:
    rows = [
        ("harness", b'{"functions_prefix":"harness","scopes":["h1","h2"]}'),
        ("bad", b'{"functions_prefix":"other","scopes":["x"]}'),
        ("thief", b'{"functions_prefix":"thief","scopes":["h1"]}'),
    ]
    ledger = Ledger.from_rows(rows)
    assert ledger.namespaces == {"harness": {"h1", "h2"}}
    assert sorted(ledger.skipped) == ["bad", "thief"]

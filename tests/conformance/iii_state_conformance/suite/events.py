"""contract § Events: one event per successful write, filters, conditions, failing handlers."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from iii_state_core import StateError, StateEvent, StateStore

from ..processes import StoreSpec


def _record(store: StateStore, **filters: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    store.on_change(lambda e: seen.append(e.to_wire()), **filters)
    return seen


def _event(kind: str, scope: str, key: str, old: Any, new: Any) -> dict[str, Any]:
    return {
        "type": "state",
        "event_type": f"state:{kind}",
        "scope": scope,
        "key": key,
        "old_value": old,
        "new_value": new,
    }


class EventTests:
    def test_every_write_emits_one_event(self, store: StateStore, scope: str) -> None:
        seen = _record(store, scope=scope)
        store.set(scope, "k", 1)
        store.set(scope, "k", 2)
        store.update(scope, "k", [{"type": "set", "path": "", "value": {"a": 1}}])
        store.update(scope, "u", [{"type": "increment", "path": "n", "by": 1}])
        store.compare_and_set(scope, "c", None, [1])
        store.compare_and_set(scope, "c", [1], [2])
        store.delete(scope, "k")
        assert seen == [
            _event("created", scope, "k", None, 1),
            _event("updated", scope, "k", 1, 2),
            _event("updated", scope, "k", 2, {"a": 1}),
            _event("created", scope, "u", None, {"n": 1}),
            _event("created", scope, "c", None, [1]),
            _event("updated", scope, "c", [1], [2]),
            _event("deleted", scope, "k", {"a": 1}, None),
        ]

    def test_delete_of_missing_key_still_emits(self, store: StateStore, scope: str) -> None:
        seen = _record(store, scope=scope)
        assert store.delete(scope, "ghost") is None
        assert seen == [_event("deleted", scope, "ghost", None, None)]

    def test_stored_null_counts_as_present(self, store: StateStore, scope: str) -> None:
        store.set(scope, "k", None)
        seen = _record(store, scope=scope)
        store.set(scope, "k", 1)
        assert seen == [_event("updated", scope, "k", None, 1)]

    def test_update_whose_ops_all_fail_still_emits(self, store: StateStore, scope: str) -> None:
        store.set(scope, "k", "text")
        seen = _record(store, scope=scope)
        result = store.update(scope, "k", [{"type": "increment", "path": "n", "by": 1}])
        assert result.errors and seen == [_event("updated", scope, "k", "text", "text")]

    def test_reads_failed_calls_and_cas_misses_emit_nothing(self, store: StateStore, scope: str) -> None:
        store.set(scope, "k", 1)
        seen = _record(store, scope=scope)
        store.get(scope, "k")
        store.list(scope)
        store.list_keys(scope)
        store.list_entries(scope)
        store.list_groups()
        store.compare_and_set(scope, "k", 2, 3)
        store.compare_and_set(scope, "missing", 2, 3)
        with pytest.raises(StateError):
            store.set(scope, "k", float("nan"))
        with pytest.raises(StateError):
            store.trigger(
                {
                    "function_id": "state::update",
                    "payload": {"scope": scope, "key": "k", "ops": [{"type": "x"}]},
                }
            )
        assert seen == []

    def test_scope_and_key_filters_are_exact(self, store: StateStore, make_scope: Any) -> None:
        a, b = make_scope("-a"), make_scope("-ab")
        by_scope = _record(store, scope=a)
        by_key = _record(store, key="k")
        by_both = _record(store, scope=a, key="k")
        store.set(a, "k", 1)
        store.set(a, "kk", 2)
        store.set(b, "k", 3)
        assert [(e["scope"], e["key"]) for e in by_scope] == [(a, "k"), (a, "kk")]
        assert [(e["scope"], e["key"]) for e in by_key if e["scope"] in (a, b)] == [(a, "k"), (b, "k")]
        assert [(e["scope"], e["key"]) for e in by_both] == [(a, "k")]

    def test_only_a_condition_returning_exactly_false_skips(self, store: StateStore, scope: str) -> None:
        ran: list[str] = []
        def recorder(label: str) -> Any:
            return lambda event: ran.append(label)

        def verdict_of(verdict: Any) -> Any:
            return lambda event: verdict

        for label, verdict in [("false", False), ("none", None), ("zero", 0), ("empty", ""), ("true", True)]:
            store.on_change(recorder(label), scope=scope, condition=verdict_of(verdict))
        store.set(scope, "k", 1)
        assert sorted(ran) == ["empty", "none", "true", "zero"]

    def test_condition_sees_the_event(self, store: StateStore, scope: str) -> None:
        ran: list[Any] = []
        store.on_change(
            lambda e: ran.append(e.new_value),
            scope=scope,
            condition=lambda e: isinstance(e.new_value, int) and e.new_value > 5,
        )
        for n in (1, 10, 3, 7):
            store.set(scope, "k", n)
        assert ran == [10, 7]

    def test_failing_handler_is_logged_and_the_next_runs(
        self, store: StateStore, scope: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        ran: list[str] = []

        def broken(event: StateEvent) -> None:
            raise RuntimeError("handler exploded")

        def broken_condition(event: StateEvent) -> bool:
            raise RuntimeError("condition exploded")

        store.on_change(broken, scope=scope)
        store.on_change(lambda e: ran.append("guarded"), scope=scope, condition=broken_condition)
        store.on_change(lambda e: ran.append("next"), scope=scope)
        with caplog.at_level(logging.ERROR):
            result = store.set(scope, "k", 1)
        assert result.new_value == 1 and store.get(scope, "k") == 1, "a handler never undoes the write"
        assert ran == ["next"]
        assert "handler exploded" in caplog.text and "condition exploded" in caplog.text

    def test_unsubscribe_stops_delivery(self, store: StateStore, scope: str) -> None:
        seen: list[Any] = []
        stop = store.on_change(lambda e: seen.append(e.key), scope=scope)
        store.set(scope, "a", 1)
        stop()
        store.set(scope, "b", 1)
        assert seen == ["a"]

    def test_triggers_disabled_emits_nothing(self, store: StateStore, scope: str) -> None:
        spec = StoreSpec.of(store)
        if spec is None:
            pytest.skip(
                "the store was not opened with open_store(); cannot reopen it with triggers_enabled false"
            )
        quiet_spec = StoreSpec(
            spec.adapter,
            spec.adapter_config,
            {**spec.state_block, "triggers_enabled": False},
            spec.plugin_modules,
            spec.load_entry_points,
        )
        with quiet_spec.open() as quiet:
            seen = _record(quiet)
            quiet.set(scope, "k", 1)
            quiet.update(scope, "k", [])
            quiet.delete(scope, "k")
            assert seen == []

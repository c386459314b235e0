"""contract § Events: one event per successful write, none otherwise; reactions, filters, hooks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from unit_helpers import call

from iii_state_core import (
    DeserializationError,
    Registry,
    StateError,
    StateEvent,
    StateStore,
    hookimpl,
    open_store,
)
from iii_state_core.events import EventBus


class Recorder:
    """A handler that keeps the wire form of every event it sees."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: StateEvent) -> None:
        self.events.append(event.to_wire())

    def kinds(self) -> list[str]:
        return [e["event_type"] for e in self.events]


@pytest.fixture
def recorded(kv_store: StateStore) -> Iterator[tuple[StateStore, Recorder]]:
    recorder = Recorder()
    kv_store.on_change(recorder)
    yield kv_store, recorder


def ev(kind: str, key: str, old: Any, new: Any, scope: str = "s") -> dict[str, Any]:
    return {
        "type": "state",
        "event_type": f"state:{kind}",
        "scope": scope,
        "key": key,
        "old_value": old,
        "new_value": new,
    }


def test_event_set_created_then_updated(recorded: tuple[StateStore, Recorder]) -> None:
    store, rec = recorded
    call(store, "set", scope="s", key="k", value=1)
    call(store, "set", scope="s", key="k", value=2)
    assert rec.events == [ev("created", "k", None, 1), ev("updated", "k", 1, 2)]


def test_event_stored_null_counts_as_present(recorded: tuple[StateStore, Recorder]) -> None:
    store, rec = recorded
    call(store, "set", scope="s", key="k", value=None)
    call(store, "set", scope="s", key="k", value=None)
    call(store, "update", scope="s", key="k", ops=[])
    assert rec.kinds() == ["state:created", "state:updated", "state:updated"]


def test_event_update_created_and_updated(recorded: tuple[StateStore, Recorder]) -> None:
    store, rec = recorded
    call(store, "update", scope="s", key="k", ops=[{"type": "increment", "path": "n", "by": 1}])
    call(store, "update", scope="s", key="k", ops=[{"type": "increment", "path": "n", "by": 1}])
    assert rec.events == [ev("created", "k", None, {"n": 1}), ev("updated", "k", {"n": 1}, {"n": 2})]


def test_event_update_with_all_ops_failing_still_emits(recorded: tuple[StateStore, Recorder]) -> None:
    store, rec = recorded
    call(store, "set", scope="s", key="k", value="text")
    result = call(store, "update", scope="s", key="k", ops=[{"type": "increment", "path": "", "by": 1}])
    assert [e["code"] for e in result["errors"]] == ["increment.not_number"]
    assert rec.events[-1] == ev("updated", "k", "text", "text")


def test_event_update_empty_ops_on_missing_key_emits_created(recorded: tuple[StateStore, Recorder]) -> None:
    store, rec = recorded
    call(store, "update", scope="s", key="k", ops=[])
    assert rec.events == [ev("created", "k", None, {})]


def test_event_compare_and_set_only_when_applied(recorded: tuple[StateStore, Recorder]) -> None:
    store, rec = recorded
    call(store, "compare-and-set", scope="s", key="k", value=1)
    call(store, "compare-and-set", scope="s", key="k", value=5)  # miss: present
    call(store, "compare-and-set", scope="s", key="k", expected=0, value=5)  # miss: other value
    call(store, "compare-and-set", scope="s", key="x", expected=0, value=5)  # miss: missing
    call(store, "compare-and-set", scope="s", key="k", expected=1, value=2)
    assert rec.events == [ev("created", "k", None, 1), ev("updated", "k", 1, 2)]


def test_compare_and_set_builds_its_event_for_whoever_listens_now(memory_store: StateStore) -> None:
    """The swap skips building an event while nobody listens; a handler subscribed later, and a
    store made from another (unobserved) store's limits with a bus of its own, get every event."""
    memory_store.set("s", "k", 1)
    assert memory_store.compare_and_set("s", "k", 1, 2).swapped  # nobody listens: no event
    other = StateStore(memory_store.adapter, memory_store.limits, EventBus())
    other_rec = Recorder()
    other.on_change(other_rec)
    assert other.compare_and_set("s", "k", 2, 3).swapped
    rec = Recorder()
    memory_store.on_change(rec)
    assert memory_store.compare_and_set("s", "k", 3, 4).swapped
    assert other_rec.events == [ev("updated", "k", 2, 3)]
    assert rec.events == [ev("updated", "k", 3, 4)]


def test_event_delete_and_delete_of_missing_key(recorded: tuple[StateStore, Recorder]) -> None:
    store, rec = recorded
    call(store, "set", scope="s", key="k", value=[1])
    call(store, "delete", scope="s", key="k")
    call(store, "delete", scope="s", key="never")
    assert rec.events[1:] == [ev("deleted", "k", [1], None), ev("deleted", "never", None, None)]


def test_event_reads_never_emit(recorded: tuple[StateStore, Recorder]) -> None:
    store, rec = recorded
    call(store, "set", scope="s", key="k", value=1)
    rec.events.clear()
    call(store, "get", scope="s", key="k")
    call(store, "list", scope="s")
    call(store, "list_keys", scope="s")
    call(store, "list_groups")
    call(store, "list_entries", scope="s", _caller_worker_id="unit-test")
    assert rec.events == []


@pytest.mark.parametrize(
    ("function", "payload"),
    [
        ("set", {"scope": "s", "key": "k", "value": float("nan")}),
        ("set", {"scope": 1, "key": "k", "value": 1}),
        ("update", {"scope": "s", "key": "k", "ops": [{"type": "nope"}]}),
        ("update", {"scope": "s", "key": "k", "ops": [{"type": "set", "path": "", "value": 1.5}, {"by": 1}]}),
        ("compare-and-set", {"scope": "s", "key": "k"}),
        ("delete", {"scope": "s"}),
    ],
)
def test_event_failed_calls_emit_nothing(
    recorded: tuple[StateStore, Recorder], function: str, payload: dict[str, Any]
) -> None:
    store, rec = recorded
    with pytest.raises(StateError):
        call(store, function, **payload)
    assert rec.events == []


def test_event_value_too_large_emits_nothing() -> None:
    rec = Recorder()
    with open_store({"adapter": {"name": "kv"}, "max_value_bytes": 4}) as store:
        store.on_change(rec)
        for function, payload in (
            ("set", {"value": "toolong"}),
            ("update", {"ops": [{"type": "set", "path": "", "value": "toolong"}]}),
            ("compare-and-set", {"value": "toolong"}),
        ):
            with pytest.raises(StateError):
                call(store, function, scope="s", key="k", **payload)
    assert rec.events == []


def test_event_triggers_disabled_emit_nothing() -> None:
    rec = Recorder()
    with open_store({"adapter": {"name": "kv"}, "triggers_enabled": False}) as store:
        store.on_change(rec)
        call(store, "set", scope="s", key="k", value=1)
        call(store, "update", scope="s", key="k", ops=[])
        call(store, "delete", scope="s", key="k")
    assert rec.events == []


def test_event_filters_on_exact_scope_and_key(memory_store: StateStore) -> None:
    by_scope, by_key, by_both, everything = Recorder(), Recorder(), Recorder(), Recorder()
    memory_store.on_change(by_scope, scope="a")
    memory_store.on_change(by_key, key="k")
    memory_store.on_change(by_both, scope="a", key="k")
    memory_store.on_change(everything)
    for scope, key in (("a", "k"), ("a", "other"), ("b", "k"), ("ab", "k"), ("a", "k2"), ("", "")):
        call(memory_store, "set", scope=scope, key=key, value=0)
    assert [(e["scope"], e["key"]) for e in by_scope.events] == [("a", "k"), ("a", "other"), ("a", "k2")]
    assert [(e["scope"], e["key"]) for e in by_key.events] == [("a", "k"), ("b", "k"), ("ab", "k")]
    assert [(e["scope"], e["key"]) for e in by_both.events] == [("a", "k")]
    assert len(everything.events) == 6


def test_event_empty_string_filter_is_exact_not_wildcard(memory_store: StateStore) -> None:
    rec = Recorder()
    memory_store.on_change(rec, scope="")
    call(memory_store, "set", scope="x", key="k", value=0)
    call(memory_store, "set", scope="", key="k", value=0)
    assert [e["scope"] for e in rec.events] == [""]


@pytest.mark.parametrize(
    ("verdict", "runs"), [(False, False), (None, True), (0, True), ("", True), ([], True), (True, True)]
)
def test_event_condition_only_exact_false_skips(memory_store: StateStore, verdict: Any, runs: bool) -> None:
    rec = Recorder()
    memory_store.on_change(rec, condition=lambda event: verdict)
    call(memory_store, "set", scope="s", key="k", value=1)
    assert len(rec.events) == (1 if runs else 0)


def test_event_condition_sees_the_event(memory_store: StateStore) -> None:
    rec = Recorder()
    memory_store.on_change(rec, condition=lambda event: event.new_value != 2)
    for value in (1, 2, 3):
        call(memory_store, "set", scope="s", key="k", value=value)
    assert [e["new_value"] for e in rec.events] == [1, 3]


def test_event_failing_handler_is_logged_and_next_runs(
    memory_store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: StateEvent) -> None:
        raise RuntimeError("handler exploded")

    rec = Recorder()
    memory_store.on_change(broken)
    memory_store.on_change(rec)
    with caplog.at_level(logging.ERROR, logger="iii_state.events"):
        result = call(memory_store, "set", scope="s", key="k", value=1)
    assert result == {"old_value": None, "new_value": 1}  # the write stands
    assert len(rec.events) == 1
    assert any("handler exploded" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    assert any("scope='s'" in r.getMessage() for r in caplog.records)
    assert call(memory_store, "get", scope="s", key="k") == 1


def test_event_failing_condition_is_logged_and_skips_only_its_handler(
    memory_store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    skipped, rec = Recorder(), Recorder()
    memory_store.on_change(skipped, condition=lambda event: 1 / 0)
    memory_store.on_change(rec)
    with caplog.at_level(logging.ERROR, logger="iii_state.events"):
        call(memory_store, "set", scope="s", key="k", value=1)
    assert skipped.events == [] and len(rec.events) == 1
    assert caplog.records


def test_event_handler_runs_after_the_write(memory_store: StateStore) -> None:
    seen: list[Any] = []
    memory_store.on_change(lambda event: seen.append(memory_store.get(event.scope, event.key)))
    call(memory_store, "set", scope="s", key="k", value={"v": 1})
    call(memory_store, "delete", scope="s", key="k")
    assert seen == [{"v": 1}, None]


def test_event_unsubscribe_stops_delivery(memory_store: StateStore) -> None:
    rec = Recorder()
    unsubscribe = memory_store.on_change(rec)
    call(memory_store, "set", scope="s", key="k", value=1)
    unsubscribe()
    call(memory_store, "set", scope="s", key="k", value=2)
    assert len(rec.events) == 1


def test_event_typed_api_emits_like_trigger(memory_store: StateStore) -> None:
    rec = Recorder()
    memory_store.on_change(rec)
    memory_store.set("s", "k", 1)
    memory_store.update("s", "k", [{"type": "increment", "path": "", "by": 1}])
    memory_store.compare_and_set("s", "k", 2, 3)
    memory_store.delete("s", "k")
    assert rec.kinds() == ["state:created", "state:updated", "state:updated", "state:deleted"]
    with pytest.raises(DeserializationError):
        memory_store.update("s", "k", [{"type": "increment", "path": "", "by": 0.5}])
    assert len(rec.events) == 4


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_event_async_handler_on_sync_store_runs_or_is_refused(memory_store: StateStore) -> None:
    seen: list[str] = []

    async def handler(event: StateEvent) -> None:
        seen.append(event.key)

    try:
        memory_store.on_change(handler)
    except TypeError:
        return  # refusing it up front is fine too
    call(memory_store, "set", scope="s", key="k", value=1)
    assert seen == ["k"]


# -- the iii_state_event plugin hook -----------------------------------------------------------


class EventPlugin:
    def __init__(self, fail: bool = False) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail = fail

    @hookimpl
    def iii_state_event(self, event: StateEvent) -> None:
        self.events.append(event.to_wire())
        if self.fail:
            raise RuntimeError("plugin exploded")


def test_plugin_hook_observes_every_write_event() -> None:
    plugin = EventPlugin()
    with open_store(adapter="kv", registry=Registry(extra_plugins=[plugin])) as store:
        call(store, "set", scope="s", key="k", value=1)
        call(store, "get", scope="s", key="k")
        call(store, "update", scope="s", key="k", ops=[])
        call(store, "delete", scope="s", key="k")
    assert plugin.events == [
        ev("created", "k", None, 1),
        ev("updated", "k", 1, 1),
        ev("deleted", "k", 1, None),
    ]


def test_plugin_hook_not_called_when_triggers_disabled() -> None:
    plugin = EventPlugin()
    registry = Registry(extra_plugins=[plugin])
    with open_store({"adapter": {"name": "kv"}, "triggers_enabled": False}, registry=registry) as store:
        call(store, "set", scope="s", key="k", value=1)
    assert plugin.events == []


def test_plugin_hook_failure_is_logged_and_subscriptions_still_run(caplog: pytest.LogCaptureFixture) -> None:
    plugin, rec = EventPlugin(fail=True), Recorder()
    with open_store(adapter="kv", registry=Registry(extra_plugins=[plugin])) as store:
        store.on_change(rec)
        with caplog.at_level(logging.ERROR, logger="iii_state.events"):
            assert call(store, "set", scope="s", key="k", value=1)["new_value"] == 1
    assert len(plugin.events) == 1 and len(rec.events) == 1
    assert caplog.records

"""The core's optimistic write loop over adapters without a native ``modify`` (contract § Functions)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import pytest

from iii_state_core import (
    Adapter,
    Capabilities,
    ConflictError,
    Registry,
    StateEvent,
    StateStore,
    UnknownOutcomeError,
    hookimpl,
    open_store,
    retry,
)
from iii_state_core import operations as plans
from iii_state_core.adapter import Page, Token


class RacyAdapter(Adapter):
    """An emulated-update adapter whose ``write_if`` can lose races on purpose.

    ``losses`` conditional writes fail after another writer sneaks in a change (``intruder``
    is stored first), then writes go through normally.
    """

    name = "racy"
    capabilities = Capabilities(atomic_update="emulated")
    instances: ClassVar[list[RacyAdapter]] = []

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.data: dict[tuple[str, str], bytes] = {}
        self.lock = threading.Lock()
        self.losses = 0
        self.intruder: bytes | None = None
        self.write_if_calls = 0
        self.unknown_outcome = False
        RacyAdapter.instances.append(self)

    def read(self, scope: str, key: str) -> bytes | None:
        return self.data.get((scope, key))

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        with self.lock:
            old = self.data.get((scope, key))
            self.data[(scope, key)] = data
            return old

    def remove(self, scope: str, key: str) -> bytes | None:
        with self.lock:
            return self.data.pop((scope, key), None)

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        with self.lock:
            self.write_if_calls += 1
            if self.unknown_outcome:
                self.data[(scope, key)] = data  # applied, but the reply is "lost"
                raise UnknownOutcomeError("connection dropped after the write was sent")
            if self.losses > 0:
                self.losses -= 1
                if self.intruder is not None:
                    self.data[(scope, key)] = self.intruder
                return False
            if self.data.get((scope, key)) != token:
                return False
            self.data[(scope, key)] = data
            return True

    def list_scopes(self) -> list[str]:
        return sorted({s for s, _ in self.data})

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        keys = sorted(k for s, k in self.data if s == scope and (cursor is None or k > cursor))[:limit]
        page = [(k, self.data[(scope, k)]) for k in keys]
        return page, (keys[-1] if len(keys) == limit else None)


class RacyPlugin:
    @hookimpl
    def iii_state_register_adapters(self, register: Callable[[type[Adapter]], None]) -> None:
        register(RacyAdapter)


@pytest.fixture
def racy(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[StateStore, RacyAdapter, list[StateEvent]]]:
    monkeypatch.setattr(retry, "backoff", lambda attempt: 0.0)  # keep retries instant
    RacyAdapter.instances.clear()
    events: list[StateEvent] = []
    with open_store(adapter="racy", registry=Registry(extra_plugins=[RacyPlugin()])) as store:
        store.on_change(events.append)
        yield store, RacyAdapter.instances[-1], events


def test_update_retries_on_lost_race_and_applies_once_to_the_latest_value(
    racy: tuple[StateStore, RacyAdapter, list[StateEvent]],
) -> None:
    store, adapter, events = racy
    store.set("s", "k", {"n": 1})
    adapter.losses, adapter.intruder = 3, b'{"n":10}'
    result = store.update("s", "k", [{"type": "increment", "path": "n", "by": 1}])
    assert result.old_value == {"n": 10} and result.new_value == {"n": 11}
    assert store.get("s", "k") == {"n": 11}
    assert adapter.write_if_calls == 4
    assert [e.event_type for e in events] == ["state:created", "state:updated"]


Racy = tuple[StateStore, RacyAdapter, list[StateEvent]]


def test_compare_and_set_rechecks_after_lost_race(racy: Racy) -> None:
    store, adapter, events = racy
    store.set("s", "k", 1)
    adapter.losses, adapter.intruder = 1, b"2"
    result = store.compare_and_set("s", "k", 1, 5)
    assert (result.swapped, result.current) == (False, 2)
    assert store.get("s", "k") == 2
    assert len(events) == 1  # only the set


def test_retry_budget_exhausted_is_conflict_error_and_writes_nothing(
    racy: tuple[StateStore, RacyAdapter, list[StateEvent]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, adapter, events = racy
    monkeypatch.setattr(retry, "MAX_ATTEMPTS", 5)
    store.set("s", "k", 1)
    adapter.losses = 10**6
    with pytest.raises(ConflictError) as info:
        store.update("s", "k", [{"type": "increment", "path": "", "by": 1}])
    assert info.value.code == "UPDATE_ERROR" and "nothing was written" in str(info.value)
    assert adapter.write_if_calls == 5
    with pytest.raises(ConflictError) as cas_info:
        store.compare_and_set("s", "k", 1, 2)
    assert cas_info.value.code == "CAS_ERROR"
    assert store.get("s", "k") == 1 and len(events) == 1


def test_unknown_outcome_is_not_retried(racy: tuple[StateStore, RacyAdapter, list[StateEvent]]) -> None:
    store, adapter, events = racy
    store.set("s", "k", {"n": 1})
    adapter.unknown_outcome = True
    with pytest.raises(UnknownOutcomeError) as info:
        store.update("s", "k", [{"type": "increment", "path": "n", "by": 1}])
    assert info.value.code == "UPDATE_ERROR"
    assert adapter.write_if_calls == 1  # a retry could apply the increment twice
    adapter.unknown_outcome = False
    assert store.get("s", "k") == {"n": 2}
    assert len(events) == 1  # no event for a write whose outcome is unknown


def test_emulated_update_threads_lose_nothing(racy: tuple[StateStore, RacyAdapter, list[StateEvent]]) -> None:
    store, _, events = racy
    ops = [{"type": "increment", "path": "n", "by": 1}]

    def work() -> None:
        for _ in range(100):
            store.update("s", "k", ops)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert store.get("s", "k") == {"n": 400}
    assert len(events) == 400


def test_scan_pages_are_walked_for_list_and_list_keys(
    racy: tuple[StateStore, RacyAdapter, list[StateEvent]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _, _ = racy
    monkeypatch.setattr(plans, "SCAN_PAGE", 3)
    for i in range(10):
        store.set("s", f"k{i}", i)
    assert sorted(store.list("s")) == list(range(10))
    assert sorted(store.list_keys("s")) == [f"k{i}" for i in range(10)]

"""Shared fixtures and helpers of the suite, and the guard against silently dropped tests."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from iii_state_core import Adapter, StateError, StateStore

from ..processes import StoreSpec


def call(store: StateStore, function: str, payload: Any) -> Any:
    """``store.trigger`` of ``state::<function>``: the wire path every iii caller takes."""
    return store.trigger({"function_id": f"state::{function}", "payload": payload})


def wire_error(store: StateStore, function: str, payload: Any) -> StateError:
    """Run a call that must fail; return its error."""
    with pytest.raises(StateError) as info:
        call(store, function, payload)
    return info.value


class Sized:
    """An area whose tests have a full size and a quick one."""

    #: A quick run (``iii-state conformance --quick`` sets it): every area still runs, on the
    #: smaller sizes its tests pick with :meth:`sized`; the full run keeps its catch power.
    quick: bool = False

    def sized(self, full: int, quick: int) -> int:
        """``full``, or ``quick`` in a quick run."""
        return quick if self.quick else full


class SuiteBase:
    """Fixtures every suite test uses. A subclass provides only ``store``."""

    @pytest.fixture
    def store(self) -> Iterator[StateStore]:
        raise NotImplementedError(
            "the conformance suite needs a `store` fixture: a StateStore for your backend, "
            "e.g. `with open_store(adapter='mine', adapter_config={...}) as s: yield s`"
        )

    @pytest.fixture
    def make_scope(self, store: StateStore) -> Iterator[Callable[[str], str]]:
        """A factory of fresh random scopes (with an optional suffix); all removed after the test."""
        made: list[str] = []

        def make(suffix: str = "") -> str:
            name = f"iii-conf-{secrets.token_hex(6)}{suffix}"
            made.append(name)
            return name

        yield make
        for name in made:
            _clear(store, name)

    @pytest.fixture
    def scope(self, make_scope: Callable[[str], str]) -> str:
        """This test's own random scope."""
        return make_scope("")

    @pytest.fixture
    def adapter(self, store: StateStore) -> Adapter:
        """The suite's test hook to the primitives: the store's adapter, called directly.

        The token tests use it to set up exact sequences (read, delete, re-create, write_if)
        that end-to-end races reach only by luck.
        """
        return store.adapter

    @pytest.fixture
    def caps(self, store: StateStore) -> Any:
        """The adapter's declared capabilities (from its class, never from a fixture)."""
        return type(store.adapter).capabilities

    @pytest.fixture
    def spec(self, store: StateStore, caps: Any) -> StoreSpec:
        """How child processes open the same store; skips (visibly) when they cannot."""
        if not caps.shared:
            pytest.skip(f"{store.adapter.name} declares shared=False: separate processes see separate stores")
        found = StoreSpec.of(store)
        if found is None:
            pytest.skip("the store was not opened with open_store(), so other processes cannot reopen it")
        return found


def _clear(store: StateStore, scope: str) -> None:
    try:
        for key in store.list_keys(scope):
            store.delete(scope, key)
    except Exception:  # cleanup must not mask the test's own outcome
        pass


def _xfailed_with_reason(fn: Any) -> bool:
    for mark in getattr(fn, "pytestmark", []):
        if mark.name == "xfail" and (mark.kwargs.get("reason") or (mark.args and mark.args[-1])):
            return True
    return False


class GuardTests:
    def test_no_overrides_DO_NOT_OVERRIDE(self) -> None:
        """A subclass may not drop or replace a suite test unless it marks it xfail with a reason."""
        from . import StateStoreSuite

        problems = []
        for name in dir(StateStoreSuite):
            if not name.startswith("test_"):
                continue
            ours = getattr(StateStoreSuite, name)
            theirs = getattr(type(self), name, None)
            if theirs is ours:
                continue
            if theirs is None or not callable(theirs):
                problems.append(f"{name} was removed")
            elif not _xfailed_with_reason(theirs):
                problems.append(f"{name} was overridden without @pytest.mark.xfail(reason=...)")
        assert not problems, "; ".join(problems)

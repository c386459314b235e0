"""contract § Functions, backend failures: each function's ``*_ERROR`` code, no secret in any error."""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from iii_state_conformance import doubles

from iii_state_core import (
    Adapter,
    BackendError,
    KeyTooLargeError,
    Registry,
    StateError,
    StateStore,
    UnknownOutcomeError,
    hookimpl,
    open_async_store,
    open_store,
)
from iii_state_core.driver import backend_error

SECRET = "hunter2-S3CRET-token"


def _failure(kind: str) -> Exception:
    """An exception as a careless client library might raise it, secret included."""
    if kind == "message":
        return ConnectionError(f"AUTH failed for redis://admin:{SECRET}@db:6379")
    if kind == "cause":
        try:
            raise PermissionError(f"bad password {SECRET}")
        except PermissionError as inner:
            try:
                raise RuntimeError("connection reset") from inner
            except RuntimeError as outer:
                return outer
    if kind == "context":
        try:
            raise ValueError(f"token={SECRET}")
        except ValueError:
            try:
                raise TimeoutError("timed out")
            except TimeoutError as outer:
                return outer
    if kind == "args":
        return OSError(5, "I/O error", f"/mnt/{SECRET}")
    if kind == "unknown_outcome":
        return UnknownOutcomeError(f"reply lost after sending to {SECRET}@host")
    raise AssertionError(kind)


class FailingAdapter(doubles.FailingAdapter):
    """Every primitive raises the configured failure."""

    kind = "message"

    def failure(self) -> BaseException:
        return _failure(self.kind)

    def secrets(self) -> list[str]:
        return [SECRET, ""]


class FailingPlugin:
    @hookimpl
    def iii_state_register_adapters(self, register: Callable[[type[Adapter]], None]) -> None:
        register(FailingAdapter)


CALLS: list[tuple[str, str, Callable[[StateStore], Any]]] = [
    ("get", "GET_ERROR", lambda s: s.get("s", "k")),
    ("set", "SET_ERROR", lambda s: s.set("s", "k", 1)),
    ("delete", "DELETE_ERROR", lambda s: s.delete("s", "k")),
    ("update", "UPDATE_ERROR", lambda s: s.update("s", "k", [])),
    ("compare-and-set", "CAS_ERROR", lambda s: s.compare_and_set("s", "k", 1, 2)),
    ("list", "LIST_ERROR", lambda s: s.list("s")),
    ("list_keys", "LIST_KEYS_ERROR", lambda s: s.list_keys("s")),
    ("list_entries", "LIST_ENTRIES_ERROR", lambda s: s.list_entries("s")),
    ("list_groups", "LIST_GROUPS_ERROR", lambda s: s.list_groups()),
]
KINDS = ["message", "cause", "context", "args", "unknown_outcome"]


@pytest.fixture
def failing(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], StateStore]]:
    registry = Registry(extra_plugins=[FailingPlugin()])
    stores: list[StateStore] = []

    def make(kind: str) -> StateStore:
        monkeypatch.setattr(FailingAdapter, "kind", kind)
        store = open_store(adapter="failing", registry=registry)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


def _all_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("function", "code", "run"), CALLS, ids=[c[0] for c in CALLS])
def test_backend_failure_has_function_code_and_no_secret(
    failing: Callable[[str], StateStore],
    kind: str,
    function: str,
    code: str,
    run: Callable[[StateStore], Any],
) -> None:
    store = failing(kind)
    with pytest.raises(BackendError) as info:
        run(store)
    error = info.value
    assert error.code == code
    assert str(error).startswith("Failed to ")
    assert "failing adapter at db:6379" in str(error)
    assert SECRET not in _all_text(error)
    if kind == "unknown_outcome":
        assert isinstance(error, UnknownOutcomeError)


@pytest.mark.parametrize("kind", KINDS)
def test_async_backend_failure_has_no_secret(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FailingAdapter, "kind", kind)
    registry = Registry(extra_plugins=[FailingPlugin()])

    async def main() -> StateError:
        store = open_async_store(adapter="failing", registry=registry)
        try:
            await store.set("s", "k", 1)
        except StateError as exc:
            return exc
        finally:
            await store.close()
        raise AssertionError("no error")

    error = asyncio.run(main())
    assert error.code == "SET_ERROR"
    assert SECRET not in _all_text(error)


def test_backend_error_keeps_a_harmless_cause_for_debugging() -> None:
    original = ConnectionRefusedError("connection refused to db:6379")
    wrapped = backend_error("get", original, "redis at db:6379", [SECRET])
    assert wrapped.__cause__ is original
    assert wrapped.code == "GET_ERROR"


def test_backend_error_passes_state_errors_that_are_not_backend_errors() -> None:
    limit = KeyTooLargeError("key is 300 bytes; the x adapter holds at most 250 bytes")
    assert backend_error("set", limit, "x", [SECRET]) is limit


def test_backend_error_redacts_every_occurrence() -> None:
    exc = RuntimeError(f"{SECRET} and again {SECRET}")
    wrapped = backend_error("set", exc, "x", [SECRET])
    assert SECRET not in str(wrapped) and str(wrapped).count("***") == 2
    assert wrapped.__cause__ is None


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes (PEP 678) are Python 3.11+")
def test_backend_error_drops_cause_whose_note_holds_a_secret() -> None:
    exc = RuntimeError("write failed")
    exc.add_note(f"while sending AUTH {SECRET}")  # type: ignore[attr-defined,unused-ignore]
    wrapped = backend_error("set", exc, "x", [SECRET])
    assert SECRET not in "".join(traceback.format_exception(wrapped))



def _fails_after(write: str, args: tuple[Any, ...]) -> Any:
    from iii_state_core.operations import Call

    yield Call(write, args)
    raise ValueError("the result could not be built")


_WRITES = [("write", ("s", "k", b"1")), ("remove", ("s", "k")), ("write_if", ("s", "k", b"1", None))]


@pytest.mark.parametrize(("write", "args"), _WRITES)
def test_a_plan_failing_after_its_write_says_the_write_was_applied(write: str, args: tuple[Any, ...]) -> None:
    """Issue 12 #1, as a rule of the driver: no error after a write may read as "not written"."""
    from iii_state_core import WriteAppliedError
    from iii_state_core.driver import run_sync

    with open_store(adapter="kv", adapter_config={}) as store:
        with pytest.raises(WriteAppliedError, match="the write was applied") as info:
            run_sync(_fails_after(write, args), store.adapter, "set")
        assert info.value.code == "SET_ERROR"
        assert store.adapter.read("s", "k") == (None if write == "remove" else b"1")


@pytest.mark.parametrize(("write", "args"), _WRITES)
def test_an_async_plan_failing_after_its_write_says_the_write_was_applied(
    write: str, args: tuple[Any, ...]
) -> None:
    from iii_state_core import WriteAppliedError
    from iii_state_core.driver import run_async

    async def main() -> None:
        store = open_async_store(adapter="kv", adapter_config={})
        with pytest.raises(WriteAppliedError, match="the write was applied"):
            await run_async(_fails_after(write, args), store.async_adapter, "delete", "kv", [])
        assert store.adapter.read("s", "k") == (None if write == "remove" else b"1")
        await store.close()

    asyncio.run(main())


def test_a_deliberate_state_error_after_compensating_writes_passes_as_it_is() -> None:
    from iii_state_core.driver import run_sync
    from iii_state_core.operations import Call

    def plan() -> Any:
        yield Call("write", ("s", "k", b"1"))
        yield Call("remove", ("s", "k"))
        raise StateError("taken by someone else", code="SCOPE_CONFLICT")

    with open_store(adapter="kv", adapter_config={}) as store:
        with pytest.raises(StateError) as info:
            run_sync(plan(), store.adapter, "set")
        assert info.value.code == "SCOPE_CONFLICT"


def test_a_plan_failing_before_any_write_keeps_its_own_error() -> None:
    from iii_state_core.driver import run_sync

    with open_store(adapter="kv", adapter_config={}) as store:
        with pytest.raises(ValueError, match="could not be built"):
            run_sync(_fails_after("read", ("s", "k")), store.adapter, "get")


def test_a_short_secret_is_hidden_only_as_a_whole_token() -> None:
    """A one-letter password turned "script write failed" into "script writ*** fail***d"."""
    from iii_state_core.driver import redact

    text = "script write failed for redis://:e@db and e"
    assert redact(text, ["e"]) == "script write failed for redis://:***@db and ***"
    assert redact("AUTH hunter2 failed (hunter2x is another word)", ["hunter2"]) == (
        "AUTH *** failed (hunter2x is another word)"
    )


def test_a_long_secret_is_hidden_wherever_it_appears() -> None:
    from iii_state_core.driver import redact

    assert redact(f"x{SECRET}y {SECRET}", [SECRET]) == "x***y ***"
    assert redact("ab abcdefghij", ["abcdefghij", "ab"]) == "*** ***"


def test_only_the_primitives_the_driver_treats_as_writes_can_apply_a_write() -> None:
    """The drivers skip ``_applies`` for a primitive outside ``_WRITES`` (a read, on every call):
    that is only right while ``_applies`` says "no write" for each of those, whatever they answer,
    and ``_ALWAYS_APPLIED`` holds only primitives it says "applied" for in any case."""
    import inspect

    from iii_state_core.adapter import AsyncAdapter
    from iii_state_core.driver import _ALWAYS_APPLIED, _WRITES, _applies

    primitives = {name for name, _ in inspect.getmembers(AsyncAdapter, inspect.iscoroutinefunction)}
    assert _WRITES <= primitives and _ALWAYS_APPLIED <= _WRITES
    answers: list[Any] = [True, False, None, [], [1], (b"old", b"new"), b"x", 0]
    for name in sorted(primitives - _WRITES):
        assert not any(_applies(name, answer) for answer in answers), name
    for name in _ALWAYS_APPLIED:
        assert all(_applies(name, answer) for answer in answers), name

"""Cases the fault campaign's fuzzing found or tried by hand, kept as regression tests.

The two RecursionError cases (a hostile cursor, deeply nested foreign bytes) were open limits
found by the campaign; they are fixed and stay here as regressions.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from bench.faults.fuzz import hostile_requests
from iii_state_core import (
    InvalidCursorError,
    StateError,
    StateStore,
    StoredValueError,
    open_store,
)


@pytest.fixture
def store() -> Iterator[StateStore]:
    with open_store(adapter="kv", adapter_config={"store_method": "in_memory"}) as s:
        yield s


CASES = [pytest.param(request, id=label) for label, request in hostile_requests()]


@pytest.mark.parametrize("request_", CASES)
def test_hostile_request_answers_or_raises_a_state_error(store: StateStore, request_: Any) -> None:
    try:
        store.trigger(request_)
    except StateError:
        pass


def test_deeply_nested_cursor_is_an_invalid_cursor(store: StateStore) -> None:
    cursor = base64.urlsafe_b64encode(b"[" * 100_000).decode()
    with pytest.raises(StateError) as info:  # a cursor error: never a RecursionError
        store.list_entries("s", cursor)
    assert isinstance(info.value, InvalidCursorError) or info.value.code == "INVALID_CURSOR"


def test_deeply_nested_stored_bytes_are_a_stored_value_error(store: StateStore) -> None:
    store.adapter.write("s", "k", b"[" * 100_000)
    with pytest.raises(StoredValueError):
        store.get("s", "k")


def test_nested_stored_bytes_within_the_recursion_limit_read_back(store: StateStore) -> None:
    store.adapter.write("s", "k", b"[" * 200 + b"]" * 200)
    value = store.get("s", "k")
    for _ in range(199):
        value = value[0]
    assert value == []


@pytest.mark.parametrize(
    "data", [b"\xef\xbb\xbf{}", b"\xff\xfe{\x00}\x00", b" {} ", b"{} x", b"\x00", b"1e999", b"NaN", b"1e-400"]
)
def test_foreign_bytes_read_as_strict_json_or_fail_cleanly(store: StateStore, data: bytes) -> None:
    import json
    import math

    store.adapter.write("s", "k", data)
    try:
        expected: Any = json.loads(data)
        strict = not isinstance(expected, float) or (math.isfinite(expected) and expected != 0.0)
    except ValueError:
        strict = False
    if not strict:  # not JSON, or NaN/inf/an underflow to 0.0: never returned, never printed
        with pytest.raises(StoredValueError):
            store.get("s", "k")
    else:
        assert repr(store.get("s", "k")) == repr(expected)


def test_hundred_thousand_ops_apply_in_one_update(store: StateStore) -> None:
    ops = [{"type": "increment", "path": "n", "by": 1}] * 100_000
    assert store.update("s", "k", ops).new_value == {"n": 100_000}

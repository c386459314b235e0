"""contract § Expiry: ``ttl_ms``, ``state::expire``, ``state::ttl``; an expired entry is missing everywhere.

TTLs are short (a few hundred ms) and the tests sleep only until just past the deadline: the
contract allows no lateness on reads (an entry is missing from the millisecond it expires).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from iii_state_core import StateError, StateStore

from .base import call, wire_error

#: Short enough to keep the area fast, long enough for a remote round trip or two before it ends.
SHORT_MS = 400
LONG_MS = 60_000
BAD_TTLS: list[Any] = [0, -1, 1.5, 1000.0, "1000", True, [], {}, 2**53 + 1]


def _needs_ttl(caps: Any) -> None:
    if caps.ttl == "none":
        pytest.skip("the adapter declares ttl='none' (the refusal is checked by another test)")


def _wait_past(written: float, ttl_ms: int) -> None:
    """Sleep until ``ttl_ms`` after ``written`` (time.monotonic() once the write returned: its
    deadline was taken before), plus 20 ms of clock slack."""
    left = written + (ttl_ms + 20) / 1000 - time.monotonic()
    if left > 0:
        time.sleep(left)


class ExpiryTests:
    def test_ttl_ms_is_refused_when_the_adapter_has_no_ttl(
        self, store: StateStore, scope: str, caps: Any
    ) -> None:
        if caps.ttl != "none":
            pytest.skip(f"the adapter declares ttl={caps.ttl!r}")
        for function, payload in (
            ("set", {"scope": scope, "key": "k", "value": 1, "ttl_ms": 1000}),
            ("update", {"scope": scope, "key": "k", "ops": [], "ttl_ms": 1000}),
            ("compare_and_set", {"scope": scope, "key": "k", "new_value": 1, "ttl_ms": 1000}),
            ("compare-and-set", {"scope": scope, "key": "k", "value": 1, "ttl_ms": 1000}),
            ("expire", {"scope": scope, "key": "k", "ttl_ms": 1000}),
            ("ttl", {"scope": scope, "key": "k"}),
        ):
            error = wire_error(store, function, payload)
            assert error.code == "UNSUPPORTED", (function, error.code, str(error))
            assert "expiry" in str(error)
        assert store.get(scope, "k") is None and store.list_keys(scope) == []

    def test_bad_ttl_ms_is_a_clear_error_and_writes_nothing(self, store: StateStore, scope: str) -> None:
        for bad in BAD_TTLS:
            for function, payload in (
                ("set", {"scope": scope, "key": "k", "value": 1, "ttl_ms": bad}),
                ("update", {"scope": scope, "key": "k", "ops": [], "ttl_ms": bad}),
                ("compare_and_set", {"scope": scope, "key": "k", "new_value": 1, "ttl_ms": bad}),
                ("compare-and-set", {"scope": scope, "key": "k", "value": 1, "ttl_ms": bad}),
            ):
                error = wire_error(store, function, payload)
                assert error.code == "deserialization_error", (function, bad, error.code)
                assert "ttl_ms" in str(error) and "\n" not in str(error)
        assert store.get(scope, "k") is None and store.list_keys(scope) == []

    def test_bad_ttl_ms_of_expire_is_a_clear_error(self, store: StateStore, scope: str, caps: Any) -> None:
        _needs_ttl(caps)
        store.set(scope, "k", 1)
        for bad in BAD_TTLS:
            error = wire_error(store, "expire", {"scope": scope, "key": "k", "ttl_ms": bad})
            assert error.code == "deserialization_error" and "ttl_ms" in str(error), bad
        assert wire_error(store, "expire", {"scope": scope, "key": "k"}).code == "deserialization_error"
        assert call(store, "ttl", {"scope": scope, "key": "k"}) == {"exists": True, "ttl_ms": None}

    def test_an_expired_entry_is_missing_for_every_read_at_once(
        self, store: StateStore, make_scope: Callable[[str], str], caps: Any
    ) -> None:
        _needs_ttl(caps)
        mixed, alone = make_scope(""), make_scope("-alone")
        call(store, "set", {"scope": mixed, "key": "brief", "value": {"v": 1}, "ttl_ms": SHORT_MS})
        call(store, "set", {"scope": alone, "key": "only", "value": [1], "ttl_ms": SHORT_MS})
        written = time.monotonic()
        store.set(mixed, "kept", "k")
        assert store.get(mixed, "brief") == {"v": 1}
        assert alone in store.list_groups()
        left = store.ttl(mixed, "brief")
        assert left.exists and left.ttl_ms is not None and 1 <= left.ttl_ms <= SHORT_MS
        _wait_past(written, SHORT_MS)
        assert store.get(mixed, "brief") is None
        assert store.list(mixed) == ["k"]
        assert store.list_keys(mixed) == ["kept"]
        assert store.list_entries(mixed).entries == [("kept", "k")]
        assert store.list_keys(alone) == [] and store.list(alone) == []
        groups = store.list_groups()
        assert alone not in groups and mixed in groups
        assert call(store, "ttl", {"scope": mixed, "key": "brief"}) == {"exists": False, "ttl_ms": None}
        assert store.delete(mixed, "brief") is None

    def test_writes_over_an_expired_entry_start_fresh(self, store: StateStore, scope: str, caps: Any) -> None:
        _needs_ttl(caps)
        seen: list[dict[str, Any]] = []
        store.on_change(lambda e: seen.append(e.to_wire()), scope=scope)
        for key in ("s", "u", "c", "x", "h"):
            store.set(scope, key, {"n": 5}, ttl_ms=SHORT_MS)
        written = time.monotonic()
        _wait_past(written, SHORT_MS)
        seen.clear()
        assert call(store, "set", {"scope": scope, "key": "s", "value": 1})["old_value"] is None
        result = store.update(scope, "u", [{"type": "increment", "path": "n", "by": 1}])
        assert (result.old_value, result.new_value) == (None, {"n": 1})
        assert store.compare_and_set(scope, "c", new_value=2).outcome == "applied"
        assert store.compare_and_set(scope, "x", {"n": 5}, 3).outcome == "not_found"
        assert call(store, "compare-and-set", {"scope": scope, "key": "h", "value": 4}) == {"swapped": True}
        assert [e["event_type"] for e in seen] == ["state:created"] * 4
        # nothing of the old deadline is kept: the fresh entries never expire
        for key in ("s", "u", "c", "h"):
            assert store.ttl(scope, key).ttl_ms is None, key
        assert store.get(scope, "x") is None

    def test_absent_ttl_ms_keeps_the_expiry_on_update_and_clears_it_on_set(
        self, store: StateStore, scope: str, caps: Any
    ) -> None:
        _needs_ttl(caps)
        store.set(scope, "u", {"n": 1}, ttl_ms=LONG_MS)
        store.set(scope, "c", 1, ttl_ms=LONG_MS)
        store.set(scope, "h", 1, ttl_ms=LONG_MS)
        store.set(scope, "s", 1, ttl_ms=LONG_MS)
        store.update(scope, "u", [{"type": "increment", "path": "n", "by": 1}])
        call(store, "update", {"scope": scope, "key": "u", "ops": [], "ttl_ms": None})
        assert store.compare_and_set(scope, "c", 1, 2).outcome == "applied"
        assert call(store, "compare-and-set", {"scope": scope, "key": "h", "expected": 1, "value": 2}) == {
            "swapped": True
        }
        for key in ("u", "c", "h"):
            left = store.ttl(scope, key).ttl_ms
            assert left is not None and LONG_MS - 30_000 < left <= LONG_MS, (key, left)
        store.set(scope, "s", 2)
        assert store.ttl(scope, "s").ttl_ms is None
        # a given ttl_ms replaces the deadline on every write
        store.update(scope, "u", [], ttl_ms=5 * LONG_MS)
        store.compare_and_set(scope, "c", 2, 3, ttl_ms=5 * LONG_MS)
        call(
            store,
            "compare-and-set",
            {"scope": scope, "key": "h", "expected": 2, "value": 3, "ttl_ms": 5 * LONG_MS},
        )
        for key in ("u", "c", "h"):
            left = store.ttl(scope, key).ttl_ms
            assert left is not None and LONG_MS < left <= 5 * LONG_MS, (key, left)

    def test_expire_sets_changes_and_removes_the_deadline(
        self, store: StateStore, scope: str, caps: Any
    ) -> None:
        _needs_ttl(caps)
        assert call(store, "expire", {"scope": scope, "key": "none", "ttl_ms": 1000}) == {"existed": False}
        assert call(store, "expire", {"scope": scope, "key": "none", "ttl_ms": None}) == {"existed": False}
        assert store.get(scope, "none") is None and store.list_keys(scope) == []
        store.set(scope, "k", {"a": 1})
        assert call(store, "ttl", {"scope": scope, "key": "k"}) == {"exists": True, "ttl_ms": None}
        assert store.expire(scope, "k", LONG_MS) is True
        left = store.ttl(scope, "k").ttl_ms
        assert left is not None and LONG_MS - 30_000 < left <= LONG_MS
        assert store.expire(scope, "k", None) is True
        assert store.ttl(scope, "k").ttl_ms is None
        assert store.expire(scope, "k", SHORT_MS) is True
        written = time.monotonic()
        assert store.get(scope, "k") == {"a": 1}
        _wait_past(written, SHORT_MS)
        assert store.get(scope, "k") is None
        assert store.expire(scope, "k", LONG_MS) is False, "an expired entry must not come back"
        assert store.get(scope, "k") is None

    def test_expire_emits_no_event(self, store: StateStore, scope: str, caps: Any) -> None:
        _needs_ttl(caps)
        store.set(scope, "k", 1)
        seen: list[Any] = []
        store.on_change(seen.append, scope=scope)
        store.expire(scope, "k", LONG_MS)
        store.ttl(scope, "k")
        assert seen == []

    def test_ttl_functions_check_scope_and_key(self, store: StateStore, caps: Any) -> None:
        _needs_ttl(caps)
        for function in ("ttl", "expire"):
            with pytest.raises(StateError) as info:
                call(store, function, {"scope": 1, "key": "k", "ttl_ms": 5})
            assert info.value.code == "deserialization_error"

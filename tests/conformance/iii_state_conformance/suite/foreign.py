"""Entries whose stored bytes another program wrote and that are not strict JSON (contract § Functions).

The bytes are put in place with the adapter's own ``write`` primitive, which stores them as
they are, exactly where a foreign writer sharing the backend would have left them.
"""

from __future__ import annotations

from typing import Any

import pytest

from iii_state_core import StateError, StateStore, StoredValueError

#: Not JSON; NaN and numbers no double holds (JSON text the core never writes nor returns). All
#: UTF-8, so that every backend can hold them (a DynamoDB string cannot hold other bytes).
FOREIGN = [b"not json", b"NaN", b"[1,Infinity]", b"1e400", b"1e-400", b"\xef\xbb\xbf\xef\xbb\xbf1"]
_CODES = {
    "get": "GET_ERROR",
    "list": "LIST_ERROR",
    "list_entries": "LIST_ENTRIES_ERROR",
    "update": "UPDATE_ERROR",
    "compare-and-set": "CAS_ERROR",
}


def _events(store: StateStore, scope: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    store.on_change(lambda e: seen.append(e.to_wire()), scope=scope)
    return seen


class ForeignBytesTests:
    @pytest.mark.parametrize("raw", FOREIGN)
    def test_set_over_foreign_bytes_succeeds_and_stores(
        self, store: StateStore, scope: str, raw: bytes
    ) -> None:
        """A write is never reported as failed once applied: set replaces whatever was stored."""
        store.adapter.write(scope, "k", raw)
        seen = _events(store, scope)
        result = store.set(scope, "k", "new")
        assert (result.old_value, result.new_value) == (None, "new")
        assert store.adapter.read(scope, "k") == b'"new"'
        assert store.get(scope, "k") == "new"
        assert [(e["event_type"], e["old_value"], e["new_value"]) for e in seen] == [
            ("state:updated", None, "new")
        ]

    @pytest.mark.parametrize("raw", FOREIGN)
    def test_delete_of_foreign_bytes_succeeds_and_removes(
        self, store: StateStore, scope: str, raw: bytes
    ) -> None:
        store.adapter.write(scope, "k", raw)
        seen = _events(store, scope)
        request = {"function_id": "state::delete", "payload": {"scope": scope, "key": "k"}}
        assert store.trigger(request) is None
        assert store.adapter.read(scope, "k") is None
        assert [(e["event_type"], e["old_value"]) for e in seen] == [("state:deleted", None)]

    @pytest.mark.parametrize("raw", FOREIGN)
    @pytest.mark.parametrize("function", sorted(_CODES))
    def test_reads_and_conditional_writes_refuse_foreign_bytes_and_change_nothing(
        self, store: StateStore, scope: str, raw: bytes, function: str
    ) -> None:
        """Nothing unreadable is ever returned (nor printed as text that is not JSON), the error
        names the store's data rather than the caller's request, and nothing is written."""
        store.adapter.write(scope, "k", raw)
        seen = _events(store, scope)
        payload: dict[str, Any] = {"scope": scope, "key": "k"}
        if function == "update":
            payload["ops"] = [{"type": "set", "path": "", "value": 1}]
        if function == "compare-and-set":
            payload.update(expected=1, value=2)
        if function == "list_entries":
            payload["_caller_worker_id"] = "conformance"  # the engine stamps it
        with pytest.raises(StateError) as info:
            store.trigger({"function_id": f"state::{function}", "payload": payload})
        assert isinstance(info.value, StoredValueError), repr(info.value)
        assert info.value.code == _CODES[function]
        assert "not" in str(info.value) and "\n" not in str(info.value)
        assert store.adapter.read(scope, "k") == raw
        assert seen == []

    @pytest.mark.parametrize(
        "inner", ["zz", "", "0", "\x00", "ü", "[", "{}", "-1", "9" * 400, "ff" * 3000, "%%", "A:B:C"]
    )
    def test_a_forged_cursor_with_this_scope_s_tag_fails_as_a_cursor(
        self, store: StateStore, scope: str, inner: str
    ) -> None:
        """Issue 12 #6: the kv file store answered LIST_ERROR (fromhex) to such a cursor.

        Where an adapter's cursor names a position, a forged one may also give a page from there.
        """
        from iii_state_core.paging import local_cursor

        for key in ("a", "b", "c"):
            store.set(scope, key, 1)
        # the core's check passes (it is tamper-evidence, not a secret), so the adapter sees `inner`
        forged = local_cursor(scope, inner)
        try:
            page = store.list_entries(scope, forged, 2)
        except StateError as exc:
            assert exc.code in ("deserialization_error", "INVALID_CURSOR") and "cursor" in str(exc)
        else:
            assert {k for k, _ in page.entries} <= {"a", "b", "c"}

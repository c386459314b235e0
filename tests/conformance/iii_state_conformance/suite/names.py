"""Hostile scopes and keys: every pair is its own entry, on every backend (contract § Terms)."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

import pytest

from iii_state_core import KeyTooLargeError, StateStore, ValueTooLargeError

HOSTILE = [
    "",
    "foo",
    "foobar",
    "a:b",
    "c",
    "a",
    "b:c",
    "*",
    "?",
    "%",
    "_",
    "%s",
    "%%",
    "{x}",
    "{",
    "}",
    "/",
    "..",
    "../x",
    "a/b",
    " ",
    "  lead",
    "trail ",
    "\n",
    "\r\n",
    "\t",
    "\u0000",
    "\\",
    "'",
    '"',
    "[x]",
    "state:",
    "😀",
    "🏳️‍🌈",
    "é",
    "e\u0301",
    "漢字",
    "\u202e",
    "\ufeff",
    "x" * 1024,
    "é" * 512,
]


def _sized(prefix: str, size: int) -> str:
    """``prefix`` padded with multi-byte characters to exactly ``size`` UTF-8 bytes."""
    need = size - len(prefix.encode("utf-8"))
    assert need >= 0, f"cannot build a {size}-byte name after the prefix {prefix!r}"
    return prefix + "é" * (need // 2) + "a" * (need % 2)


def _fits(name: str, limit: int | None) -> bool:
    """Hostile names beyond a declared limit belong to the limit tests, not these."""
    return limit is None or len(name.encode("utf-8")) <= limit


class NameTests:
    def test_hostile_keys_are_distinct_entries(self, store: StateStore, scope: str, caps: Any) -> None:
        keys = [k for k in HOSTILE if _fits(k, caps.max_key_bytes)]
        for i, key in enumerate(keys):
            store.set(scope, key, {"i": i})
        for i, key in enumerate(keys):
            assert store.get(scope, key) == {"i": i}, f"key {key!r} read back another entry"
        assert sorted(store.list_keys(scope)) == sorted(keys)
        assert sorted(v["i"] for v in store.list(scope)) == list(range(len(keys)))

    def test_hostile_scopes_are_distinct_scopes(self, store: StateStore, make_scope: Any, caps: Any) -> None:
        base = make_scope("")
        scopes = [base + s for s in HOSTILE if _fits(base + s, caps.max_scope_bytes)]
        try:
            for i, (s, key) in enumerate(itertools.product(scopes, ["k", "", "k:x"])):
                store.set(s, key, i)
            for i, (s, key) in enumerate(itertools.product(scopes, ["k", "", "k:x"])):
                assert store.get(s, key) == i, f"scope {s[len(base) :]!r} key {key!r} read another entry"
            for s in scopes:
                assert sorted(store.list_keys(s)) == ["", "k", "k:x"], f"scope {s[len(base) :]!r}"
            groups = set(store.list_groups())
            missing = [s[len(base) :] for s in scopes if s not in groups]
            assert not missing, f"list_groups lacks the scopes {missing!r}"
        finally:
            for s in scopes:
                for key in ["k", "", "k:x"]:
                    store.delete(s, key)

    def test_separator_lookalikes_do_not_collide(self, store: StateStore, make_scope: Any) -> None:
        base = make_scope("")
        pairs = [
            (base + "a:b", "c"),
            (base + "a", "b:c"),
            (base + "a", "b/c"),
            (base + "a/b", "c"),
            (base + "a\u0000b", "c"),
            (base + "a", "b\u0000c"),
            (base + "foo", "bar"),
            (base + "foob", "ar"),
            (base + "", "x"),
            (base + "x", ""),
        ]
        try:
            for i, (s, k) in enumerate(pairs):
                store.set(s, k, i)
            for i, (s, k) in enumerate(pairs):
                assert store.get(s, k) == i, f"({s[len(base) :]!r}, {k!r}) collided with another pair"
        finally:
            for s, k in pairs:
                store.delete(s, k)

    def test_empty_scope_and_empty_key_work(self, store: StateStore) -> None:
        key = f"iii-conf-{secrets.token_hex(6)}"
        # ("", "") may hold the data of whoever owns this store: put back what was there
        before = store.get("", "")
        had = store.adapter.read("", "") is not None  # not a listing: this test may not rely on one
        try:
            assert store.set("", key, 1).old_value is None
            store.set("", "", 2)
            assert store.get("", key) == 1 and store.get("", "") == 2
            assert "" in store.list_groups()
            assert key in store.list_keys("")
        finally:
            store.delete("", key)
            if had:
                store.set("", "", before)
            else:
                store.delete("", "")

    # -- declared limits, checked both ways ----------------------------------------------------------
    def test_key_at_the_declared_limit_works_and_one_byte_more_is_refused(
        self, store: StateStore, scope: str, caps: Any
    ) -> None:
        limit = caps.max_key_bytes
        if limit is None:
            key = _sized("", 8192)
            store.set(scope, key, 1)
            assert store.get(scope, key) == 1, "no key limit declared, so an 8 KiB key must work"
            return
        at = _sized("", limit)
        store.set(scope, at, "at-limit")
        assert store.get(scope, at) == "at-limit"
        assert at in store.list_keys(scope)
        with pytest.raises(KeyTooLargeError) as info:
            store.set(scope, _sized("", limit + 1), 1)
        assert str(limit) in str(info.value) and info.value.code == "KEY_TOO_LARGE"
        assert store.list_keys(scope) == [at]

    def test_scope_at_the_declared_limit_works_and_one_byte_more_is_refused(
        self, store: StateStore, scope: str, caps: Any
    ) -> None:
        limit = caps.max_scope_bytes
        big = _sized(scope, limit if limit is not None else 8192)
        try:
            store.set(big, "k", 1)
            assert store.get(big, "k") == 1
            assert big in store.list_groups()
            if limit is not None:
                with pytest.raises(KeyTooLargeError):
                    store.set(_sized(scope, limit + 1), "k", 1)
        finally:
            store.delete(big, "k")

    def test_value_at_the_declared_limit_works_and_one_byte_more_is_refused(
        self, store: StateStore, scope: str, caps: Any
    ) -> None:
        limit = caps.max_value_bytes
        if limit is None:
            value = "v" * (2 * 1024 * 1024)
            store.set(scope, "big", value)
            assert store.get(scope, "big") == value, "no value limit declared, so 2 MiB must work"
            return
        at = "v" * (limit - 2)  # the quotes make it exactly `limit` bytes of JSON
        store.set(scope, "at", at)
        assert store.get(scope, "at") == at
        with pytest.raises(ValueTooLargeError) as info:
            store.set(scope, "over", at + "v")
        assert info.value.code == "VALUE_TOO_LARGE"
        assert store.get(scope, "over") is None
        with pytest.raises(ValueTooLargeError):
            store.update(scope, "at", [{"type": "append", "value": "v"}])
        assert store.get(scope, "at") == at

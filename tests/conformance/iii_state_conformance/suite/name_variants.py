"""Names that a lossy encoding merges: case and normalisation variants, long shared prefixes,
non-BMP code points, scopes that prefix one another — fixed lists plus Hypothesis-generated ones.

Every scope and key is its exact sequence of code points: ``"Key"``, ``"key"``, ``"K\\u212a"``
and ``"e\\u0301"``/``"\\u00e9"`` are all different, and so are two 300-byte keys that differ in
their last byte.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iii_state_core import StateStore

from .values import UNICODE_VARIANTS

#: Byte lengths at which backends and their authors commonly truncate or hash a name.
TRUNCATIONS = (16, 32, 64, 100, 128, 200, 250, 255, 256, 500, 512, 1000, 1024)

#: Code points whose UTF-16 order differs from code point (and UTF-8) order.
ORDER_TRAPS = [
    "\ud7ff",
    "\ue000",
    "\uff5a",
    "\uffff",
    "\U00010000",
    "\U0001f600",
    "\U0010ffff",
    "z",
    "\u00ff",
]

_ALPHABET = st.sampled_from(
    ["a", "A", "z", "Z", "k", "K", "\u212a", "s", "\u017f", "\u00df", "e", "\u0301", "\u00e9", "\u00c5",
     "\u212b", "i", "\u0130", "\u0131", ":", "/", "\x00", " ", "\U0001f600", "\U0001d518", "\uffff",
     "\ue000", "\ufb01", "\uff21", "-", "_", "."]
)  # fmt: skip
_PREFIX = "p" * 240


def variants(name: str) -> set[str]:
    """The names a lossy layer would confuse with ``name``."""
    out = {name, name.upper(), name.lower(), name.swapcase(), name.casefold(), _PREFIX + name}
    out.update(unicodedata.normalize(form, name) for form in ("NFC", "NFD", "NFKC", "NFKD"))
    return out


def _fits(name: str, limit: int | None) -> bool:
    return limit is None or len(name.encode("utf-8")) <= limit


def _walk(store: StateStore, scope: str, limit: int) -> list[str]:
    keys: list[str] = []
    cursor = None
    for _ in range(10_000):
        page = store.list_entries(scope, cursor, limit)
        keys.extend(k for k, _ in page.entries)
        if page.done:
            return keys
        cursor = page.next_cursor
    raise AssertionError("list_entries never finished")


def _check_distinct_keys(
    store: StateStore, scope: str, keys: list[str], ordered: bool, limits: tuple[int, ...] = (1, 3)
) -> None:
    for i, key in enumerate(keys):
        store.set(scope, key, i)
    for i, key in enumerate(keys):
        got = store.get(scope, key)
        assert got == i, (
            f"key {key!r} read back the value of {keys[got]!r}"
            if isinstance(got, int)
            else (f"key {key!r} read back {got!r}")
        )
    listed = store.list_keys(scope)
    assert sorted(listed) == sorted(keys), (
        f"list_keys differs: extra {sorted(set(listed) - set(keys))[:3]!r}, "
        f"missing {sorted(set(keys) - set(listed))[:3]!r}"
    )
    for limit in limits:
        walked = Counter(_walk(store, scope, limit))
        missing = [k for k in keys if k not in walked]
        assert not missing, f"a walk with limit {limit} skipped {missing[:3]!r}"
        if ordered:
            dupes = [k for k, n in walked.items() if n > 1]
            assert not dupes, f"ordered listing is declared, yet a walk repeated {dupes[:3]!r}"


class NameVariantTests:
    #: Hypothesis examples of the generated-name test (derandomized: the same cases every run).
    name_examples = 8

    def test_case_and_normalisation_variants_are_distinct_keys(
        self, store: StateStore, scope: str, caps: Any
    ) -> None:
        names = set(UNICODE_VARIANTS) | {
            "Key",
            "KEY",
            "key",
            "kEY",
            "\u212aey",
            "Stra\u00dfe",
            "STRASSE",
            "strasse",
        }
        for base in ("Key", "e\u0301", "\u00c5", "Stra\u00dfe", "\U0001f600x"):
            names |= variants(base)
        keys = sorted(k for k in names if _fits(k, caps.max_key_bytes))
        _check_distinct_keys(store, scope, keys, caps.ordered_listing, limits=(3,))

    def test_case_and_normalisation_variants_are_distinct_scopes(
        self, store: StateStore, make_scope: Any, caps: Any
    ) -> None:
        base = make_scope("")
        suffixes = sorted(variants("Key") | variants("\u00e9") | {"\u212b", "\u00c5", "\U0001f600", "\uffff"})
        scopes = [base + s for s in suffixes if _fits(base + s, caps.max_scope_bytes)]
        try:
            for i, s in enumerate(scopes):
                store.set(s, "k", i)
            groups = set(store.list_groups())
            for i, s in enumerate(scopes):
                assert store.get(s, "k") == i, f"scope {s[len(base) :]!r} read another scope's entry"
                assert store.list_keys(s) == ["k"], f"scope {s[len(base) :]!r} lists {store.list_keys(s)!r}"
                assert s in groups, f"list_groups lacks the scope {s[len(base) :]!r}"
            for s in scopes[::2]:
                store.delete(s, "k")
            groups = set(store.list_groups())
            for i, s in enumerate(scopes):
                assert (s in groups) == (i % 2 == 1), (
                    f"after emptying every other scope, list_groups {'keeps' if s in groups else 'lost'} "
                    f"{s[len(base) :]!r}"
                )
        finally:
            for s in scopes:
                store.delete(s, "k")
        groups = set(store.list_groups())
        kept = [s[len(base) :] for s in scopes if s in groups]
        assert not kept, f"emptied scopes with non-ASCII names are still listed: {kept[:3]!r}"

    def test_keys_sharing_a_long_prefix_are_distinct(self, store: StateStore, scope: str, caps: Any) -> None:
        """Two names equal in their first N bytes, for the N where indexes truncate."""
        keys: set[str] = set()
        for size in TRUNCATIONS:
            for fill in ("x", "\u00e9", "\U0001f600"):
                head = fill * (size // len(fill.encode("utf-8")))
                keys |= {head, head + "a", head + "b", head + "\u00e9", head[:-1] + "y"}
        fitting = sorted(k for k in keys if _fits(k, caps.max_key_bytes))
        _check_distinct_keys(store, scope, fitting, caps.ordered_listing, limits=(7,))

    def test_scopes_sharing_a_long_prefix_are_distinct(
        self, store: StateStore, make_scope: Any, caps: Any
    ) -> None:
        base = make_scope("")
        scopes = []
        for size in TRUNCATIONS:
            head = base + "s" * max(0, size - len(base))
            scopes += [head + "a", head + "b"]
        scopes = [s for s in dict.fromkeys(scopes) if _fits(s, caps.max_scope_bytes)]
        try:
            for i, s in enumerate(scopes):
                store.set(s, "k", i)
            for i, s in enumerate(scopes):
                assert store.get(s, "k") == i, f"the {len(s.encode())}-byte scope read another scope's entry"
                assert store.list_keys(s) == ["k"], f"the {len(s.encode())}-byte scope lists other keys"
        finally:
            for s in scopes:
                store.delete(s, "k")
        groups = set(store.list_groups())
        assert not [s for s in scopes if s in groups], "emptied long scopes are still listed"

    def test_non_bmp_keys_walk_in_one_consistent_order(
        self, store: StateStore, scope: str, caps: Any
    ) -> None:
        """UTF-16 and code point order disagree above U+E000: a cursor in one and a sort in the other skip."""
        keys = sorted({a + b for a in ORDER_TRAPS for b in ("", "\U0001f600", "\uffff")})
        _check_distinct_keys(store, scope, keys, caps.ordered_listing)

    def test_scopes_that_prefix_one_another_stay_apart(self, store: StateStore, make_scope: Any) -> None:
        base = make_scope("")
        suffixes = ["", "a", "ab", "a:", "a:b", ":", "/", "a/", "\x00", "a\x00", "A", "\u00e9", "e"]
        scopes = [base + s for s in suffixes]
        try:
            for i, s in enumerate(scopes):
                for key in ("k", f"only-{i}", "b", ":b"):
                    store.set(s, key, i)
            for i, s in enumerate(scopes):
                want = sorted({"k", f"only-{i}", "b", ":b"})
                assert sorted(store.list_keys(s)) == want, (
                    f"scope {s[len(base) :]!r} lists {store.list_keys(s)!r}"
                )
                assert store.list(s) == [i] * 4, f"scope {s[len(base) :]!r} lists another scope's values"
            for key in ("k", "only-1", "b", ":b"):
                store.delete(base + "a", key)
            groups = set(store.list_groups())
            assert base + "a" not in groups, "an emptied scope is listed while longer scopes remain"
            assert all(s in groups for s in scopes if s != base + "a"), "emptying one scope dropped another"
        finally:
            for i, s in enumerate(scopes):
                for key in ("k", f"only-{i}", "b", ":b"):
                    store.delete(s, key)

    def test_reads_and_misses_on_an_unknown_scope_leave_list_groups_alone(
        self, store: StateStore, make_scope: Any
    ) -> None:
        for suffix in ("-unknown", "-\u00e9\U0001f600"):
            scope = make_scope(suffix)
            assert store.get(scope, "k") is None
            assert store.delete(scope, "k") is None
            assert store.compare_and_set(scope, "k", {"v": 1}, 2).swapped is False
            assert store.list(scope) == [] and store.list_keys(scope) == []
            assert store.list_entries(scope, None, 5).entries == []
            assert store.adapter.read_versioned(scope, "k")[0] is None
            assert scope not in store.list_groups(), (
                f"a read or miss on the unknown scope {suffix[1:]!r} made list_groups show it"
            )
            store.set(scope, "k", 1)
            store.delete(scope, "k")
            assert store.get(scope, "k") is None and store.delete(scope, "k") is None
            assert scope not in store.list_groups(), f"reading emptied scope {suffix[1:]!r} brought it back"

    def test_generated_names_are_distinct_entries(
        self, store: StateStore, make_scope: Any, caps: Any
    ) -> None:
        """Hypothesis: names from a trap alphabet, each with its case, normalisation and prefix variants."""

        @settings(
            max_examples=self.name_examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.lists(st.text(_ALPHABET, min_size=1, max_size=6), min_size=1, max_size=4))
        def check(bases: list[str]) -> None:
            names: set[str] = set()
            for b in bases:
                names |= variants(b)
            scope = make_scope(f"-gen-{secrets.token_hex(3)}")
            keys = sorted(k for k in names if _fits(k, caps.max_key_bytes))
            try:
                _check_distinct_keys(store, scope, keys, caps.ordered_listing, limits=(3,))
                for suffix in sorted(names)[:4]:
                    other = scope + suffix
                    if _fits(other, caps.max_scope_bytes):
                        store.set(other, "k", suffix)
                        assert store.get(other, "k") == suffix, f"scope suffix {suffix!r} collided"
                        assert store.list_keys(other) == ["k"], f"scope suffix {suffix!r} lists other keys"
                        store.delete(other, "k")
                        assert other not in store.list_groups(), f"emptied scope suffix {suffix!r} is listed"
            finally:
                for k in keys:
                    store.delete(scope, k)

        check()

"""contract § Values: values round-trip exactly through the backend; non-JSON is refused, nothing stored."""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iii_state_core import InvalidValueError, StateStore

from ..checks import shown, strict_equal
from .base import call

EXACT_VALUES: list[tuple[str, Any]] = [
    ("null", None),
    ("true", True),
    ("false", False),
    ("zero", 0),
    ("i64-min", -(2**63)),
    ("i64-max", 2**63 - 1),
    ("u64-max", 2**64 - 1),
    ("2^53+1", 9007199254740993),
    ("-(2^53+1)", -9007199254740993),
    ("float-one", 1.0),
    ("float-tenth", 0.1),
    ("float-negative-zero", -0.0),
    ("float-max", 1.7976931348623157e308),
    ("float-min-subnormal", 5e-324),
    ("float-big-integral", 1e20),
    ("empty-array", []),
    ("empty-object", {}),
    ("nested-empties", {"a": [], "b": {}, "c": [[], [{}]], "d": {"e": {}}}),
    ("string-empty", ""),
    ("string-unicode", 'héllo 😀 \u0000 \n \t \\ " \u2028 \ufeff 漢字'),
    ("object-unicode-keys", {"😀": 1, "": 2, "a.b": 3, "\u0000": 4, "__proto__": 5}),
    ("mixed", {"n": [1, 1.0, True, None, "1"], "big": [2**64 - 1, -(2**63)]}),
    ("negative-zero-nested", {"z": -0.0, "l": [0.0, -0.0, 0], "o": {"f": -0.0}}),
    ("ints-floats-bools", [0, 0.0, -0.0, False, 1, 1.0, True, -1, -1.0]),
]

#: Strings that Unicode normalisation, case folding or a lossy codec would change.
UNICODE_VARIANTS = [
    "\u00e9",  # é, NFC
    "e\u0301",  # é, NFD
    "\u212b",  # Å ANGSTROM SIGN (NFC turns it into U+00C5)
    "\u00c5",
    "\ufb01",  # ﬁ ligature (NFKC: "fi")
    "fi",
    "\uff21",  # fullwidth capital A
    "A",
    "a",
    "\u1e9e",  # ẞ capital sharp s
    "\u00df",  # ß
    "ss",
    "\u0130",  # İ
    "i\u0307",
    "\U0001f600",  # non-BMP
    "\U0001d518",
    "\U0010ffff",
    "\uffff",
    "\u00a0",  # no-break space
    " ",
]

REJECTED: list[tuple[str, Any]] = [
    ("nan", math.nan),
    ("inf", math.inf),
    ("-inf", {"a": [-math.inf]}),
    ("int-too-big", 2**64),
    ("int-too-small", -(2**63) - 1),
    ("int-key", {1: "x"}),
    ("bool-key", {True: "x"}),
    ("set", {1, 2}),
    ("bytes", b"x"),
    ("datetime", datetime.datetime(2026, 1, 1)),
    ("tuple", (1, 2)),
    ("object", object()),
    ("lone-surrogate", "a\ud800b"),
    ("lone-surrogate-key", {"\udfff": 1}),
]


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


class ValueTests:
    def test_unicode_strings_and_object_keys_are_stored_unnormalised(
        self, store: StateStore, scope: str
    ) -> None:
        """Each variant is its own string and its own object key: no normalisation, no folding."""
        keyed = {v: i for i, v in enumerate(UNICODE_VARIANTS)}
        assert len(keyed) == len(UNICODE_VARIANTS)
        value = {"strings": UNICODE_VARIANTS, "keys": keyed, "joined": "|".join(UNICODE_VARIANTS)}
        store.set(scope, "u", value)
        for where, got in (
            ("get", store.get(scope, "u")),
            ("list", store.list(scope)[0]),
            ("list_entries", store.list_entries(scope).entries[0][1]),
            ("delete", store.delete(scope, "u")),
        ):
            assert strict_equal(got, value), f"{where} returned {shown(got)}"
        for i, variant in enumerate(UNICODE_VARIANTS):
            store.set(scope, "one", {variant: variant})
            got = store.update(scope, "one", [{"type": "set", "path": "n", "value": i}]).old_value
            assert strict_equal(got, {variant: variant}), f"{variant!r} came back as {shown(got)}"
        store.set(scope, "one", {"\u00e9": "\u00e9"})
        for other in ({"e\u0301": "\u00e9"}, {"\u00e9": "e\u0301"}):
            cas = store.compare_and_set(scope, "one", other, 1)
            assert not cas.swapped, f"compare-and-set took {other!r} for the stored NFC value"
        assert strict_equal(store.get(scope, "one"), {"\u00e9": "\u00e9"})

    @pytest.mark.parametrize(("label", "value"), EXACT_VALUES, ids=[v[0] for v in EXACT_VALUES])
    def test_value_round_trips_exactly(self, store: StateStore, scope: str, label: str, value: Any) -> None:
        assert strict_equal(
            call(store, "set", {"scope": scope, "key": "k", "value": value})["new_value"], value
        )
        for got in (
            store.get(scope, "k"),
            call(store, "get", {"scope": scope, "key": "k"}),
            call(store, "list", {"scope": scope})[0],
            call(store, "list_entries", {"scope": scope, "_caller_worker_id": "conformance"})["entries"][0][
                1
            ],
        ):
            assert strict_equal(got, value), f"{label}: read back {shown(got)}"
        replaced = call(store, "set", {"scope": scope, "key": "k", "value": "next"})["old_value"]
        assert strict_equal(replaced, value), f"{label}: old_value {shown(replaced)}"
        assert strict_equal(call(store, "delete", {"scope": scope, "key": "k"}), "next")

    def test_values_survive_update_and_compare_and_set(self, store: StateStore, scope: str) -> None:
        value = {"big": 2**64 - 1, "f": 1.0, "empty": [], "obj": {}}
        store.set(scope, "k", value)
        result = store.update(scope, "k", [{"type": "set", "path": "x", "value": -0.5}])
        assert strict_equal(result.old_value, value)
        assert strict_equal(store.get(scope, "k"), {**value, "x": -0.5})
        cas = store.compare_and_set(scope, "k", {**value, "x": -0.5}, [2**63, 1.0, []])
        assert cas.swapped
        assert strict_equal(store.get(scope, "k"), [2**63, 1.0, []])

    @pytest.mark.parametrize(("label", "value"), REJECTED, ids=[v[0] for v in REJECTED])
    def test_non_json_value_is_refused_and_nothing_stored(
        self, store: StateStore, scope: str, label: str, value: Any
    ) -> None:
        store.set(scope, "k", "before")
        for attempt in (
            lambda: store.set(scope, "k", value),
            lambda: store.set(scope, "new", value),
            lambda: store.update(scope, "k", [{"type": "set", "path": "", "value": value}]),
            lambda: store.compare_and_set(scope, "k", "before", value),
        ):
            with pytest.raises(InvalidValueError) as info:
                attempt()
            assert info.value.code == "deserialization_error" and str(info.value)
        assert store.get(scope, "k") == "before"
        assert store.list_keys(scope) == ["k"], f"{label}: a refused write stored something"

    def test_nesting_at_the_limit_works_and_past_it_is_refused(self, store: StateStore, scope: str) -> None:
        limit = store.limits.max_depth
        at_limit = _nested(limit)
        store.set(scope, "deep", at_limit)
        assert strict_equal(store.get(scope, "deep"), at_limit)
        with pytest.raises(InvalidValueError):
            store.set(scope, "deeper", _nested(limit + 1))
        with pytest.raises(InvalidValueError):
            store.update(scope, "deep", [{"type": "set", "path": "", "value": _nested(limit + 1)}])
        assert store.get(scope, "deeper") is None
        assert strict_equal(store.get(scope, "deep"), at_limit)

    def test_update_whose_result_nests_too_deep_writes_nothing(self, store: StateStore, scope: str) -> None:
        limit = store.limits.max_depth
        store.set(scope, "k", {"a": _nested(limit - 1)})
        with pytest.raises(InvalidValueError):
            # each op value is within the limit; the value they build is one level past it
            store.update(scope, "k", [{"type": "set", "path": "a", "value": _nested(limit)}])
        assert strict_equal(store.get(scope, "k"), {"a": _nested(limit - 1)})


_TEXT = st.sampled_from(UNICODE_VARIANTS) | st.text(max_size=6)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.sampled_from([0, 0.0, -0.0, 1, 1.0, -1.0, 2**53 + 1, 2**64 - 1, -(2**63), 5e-324, 1e20])
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
GENERATED_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=10,
)


class GeneratedValueTests:
    #: Hypothesis examples (derandomized: the same cases every run, so a catch is never luck).
    value_examples = 60

    def test_generated_values_round_trip_exactly(self, store: StateStore, scope: str) -> None:
        @settings(
            max_examples=self.value_examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(GENERATED_VALUES)
        def check(value: Any) -> None:
            assert strict_equal(store.set(scope, "g", value).new_value, value)
            got = store.get(scope, "g")
            assert strict_equal(got, value), f"stored {shown(value)}, read back {shown(got)}"
            listed = store.list(scope)
            assert len(listed) == 1 and strict_equal(listed[0], value), f"list gave {shown(listed)}"
            removed = store.delete(scope, "g")
            assert strict_equal(removed, value), f"delete returned {shown(removed)}"

        check()

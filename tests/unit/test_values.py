"""contract § Values: what a value may be, its compact stored bytes, exact round trips, ``same_json``."""

from __future__ import annotations

import datetime
import decimal
import json
import math
from typing import Any

import pytest
from unit_helpers import assert_same, call

from iii_state_core import (
    ConfigError,
    DeserializationError,
    InvalidValueError,
    StateStore,
    StoredValueError,
    open_store,
)
from iii_state_core.values import (
    DEFAULT_MAX_DEPTH,
    check_value,
    decode_stored,
    dumps,
    encode,
    encode_all,
    encode_parsed,
    json_type,
    loads,
    same_json,
)

I64_MIN = -(2**63)
U64_MAX = 2**64 - 1


def nest(depth: int, leaf: Any = 1) -> Any:
    """``depth`` arrays, one inside the other, around ``leaf``."""
    value = [leaf]
    for _ in range(depth - 1):
        value = [value]
    return value


# -- rejected values ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_rejected(bad: float) -> None:
    for value in (bad, [1, bad], {"a": {"b": bad}}):
        with pytest.raises(InvalidValueError, match="NaN or Infinity"):
            encode(value)


@pytest.mark.parametrize("good", [I64_MIN, U64_MAX, 0, -1, 2**63])
def test_integers_inside_engine_range_are_accepted(good: int) -> None:
    assert encode(good) == str(good).encode()


@pytest.mark.parametrize("bad", [I64_MIN - 1, U64_MAX + 1, 10**30, -(10**30)])
def test_integers_outside_engine_range_are_rejected(bad: int) -> None:
    with pytest.raises(InvalidValueError, match=r"value\[\"n\"\]\[0\]") as info:
        encode({"n": [bad]})
    assert str(bad) in str(info.value)


def test_booleans_are_not_numbers() -> None:
    assert json_type(True) == "boolean" and json_type(1) == "number"
    assert encode([True, 1, False, 0]) == b"[true,1,false,0]"
    assert not same_json(True, 1) and not same_json(0, False)


@pytest.mark.parametrize("key", [1, None, 1.5, (1, 2), True])
def test_non_string_object_keys_are_rejected(key: Any) -> None:
    with pytest.raises(InvalidValueError, match="keys must be strings") as info:
        encode({"outer": {key: 1}})
    assert 'value["outer"]' in str(info.value)


@pytest.mark.parametrize(
    ("bad", "type_name"),
    [
        ({1, 2}, "set"),
        (frozenset(), "frozenset"),
        (b"bytes", "bytes"),
        (bytearray(b"x"), "bytearray"),
        (datetime.datetime(2024, 1, 1), "datetime"),
        (datetime.date(2024, 1, 1), "date"),
        ((1, 2), "tuple"),
        (decimal.Decimal("1.5"), "Decimal"),
        (object(), "object"),
    ],
)
def test_non_json_objects_are_rejected_naming_location(bad: Any, type_name: str) -> None:
    with pytest.raises(InvalidValueError) as info:
        encode({"a": [0, bad]})
    message = str(info.value)
    assert 'value["a"][1]' in message and type_name in message


def test_non_json_at_top_level_names_the_value() -> None:
    with pytest.raises(InvalidValueError, match=r"^value is a set"):
        encode({1})


def test_errors_are_deserialization_errors_on_the_wire() -> None:
    with pytest.raises(DeserializationError) as info:
        encode(math.nan)
    assert info.value.code == "deserialization_error"


# -- depth -------------------------------------------------------------------------------------


def test_depth_default_limit_is_128() -> None:
    assert DEFAULT_MAX_DEPTH == 128
    encode(nest(128))
    encode({"a": nest(127)})
    with pytest.raises(InvalidValueError, match="128"):
        encode(nest(129))
    with pytest.raises(InvalidValueError):
        encode({"a": nest(128)})


def test_depth_counts_containers_not_scalars() -> None:
    encode(nest(128, leaf="deep string"))
    encode(nest(127, leaf={}))
    with pytest.raises(InvalidValueError):
        encode(nest(128, leaf={}))


def test_depth_limit_is_configurable() -> None:
    check_value(nest(3), max_depth=3)
    with pytest.raises(InvalidValueError, match="limit of 3"):
        check_value(nest(4), max_depth=3)
    check_value(nest(500), max_depth=500)


def test_depth_limit_is_configurable_per_store() -> None:
    with open_store({"adapter": {"name": "kv"}, "max_value_depth": 4}) as store:
        store.set("s", "ok", nest(4))
        with pytest.raises(InvalidValueError):
            store.set("s", "deep", nest(5))
        assert store.get("s", "deep") is None


def test_depth_hostile_nesting_is_rejected_not_crashing() -> None:
    with pytest.raises(InvalidValueError):
        encode(nest(100_000))
    with pytest.raises(InvalidValueError):
        loads("[" * 100_000 + "]" * 100_000)


# -- lone surrogates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["\ud800", "ok\udfff", ["\udc00"], {"k": "a\ud83d"}, {"\ud800": 1}, {"a": {"\udfffkey": 1}}],
    ids=["high", "low-tail", "in-array", "dangling-high", "key", "nested-key"],
)
def test_lone_surrogates_are_rejected_in_strings_and_keys(value: Any) -> None:
    with pytest.raises(InvalidValueError, match="surrogate"):
        encode(value)


def test_lone_surrogate_rejected_by_store_nothing_stored(memory_store: StateStore) -> None:
    with pytest.raises(InvalidValueError):
        call(memory_store, "set", scope="s", key="k", value={"\ud800": 1})
    assert call(memory_store, "get", scope="s", key="k") is None
    assert call(memory_store, "list_groups") == {"groups": []}


def test_surrogate_pair_is_fine() -> None:
    assert decode_stored(encode("😀")) == "😀"
    assert loads('"\\ud83d\\ude00"') == "😀"


def test_loads_rejects_lone_surrogate_escape() -> None:
    with pytest.raises(InvalidValueError):
        loads('"\\ud800"')


# -- compact bytes and exact round trips -------------------------------------------------------


def test_encode_is_compact_utf8() -> None:
    data = encode({"a": [1, 2.5, None, True], "é": "ü 😀", "s": "line\nbreak"})
    assert data == '{"a":[1,2.5,null,true],"é":"ü 😀","s":"line\\nbreak"}'.encode()
    assert b" " not in encode({"a": [1, {"b": 2}]})
    assert b"\\u" not in encode("日本語")


@pytest.mark.parametrize(
    "value",
    [[], {}, 9007199254740993, 1.0, -0.0, 0.1, 1e300, 5e-324, U64_MAX, I64_MIN, "", None, False,
     {"": []}, [[], {}], {"nested": {"big": 2**63 + 1, "f": 2.0}}],
    ids=repr,
)  # fmt: skip
def test_round_trip_is_exact(value: Any, kv_store: StateStore) -> None:
    assert_same(decode_stored(encode(value)), value)
    assert_same(loads(encode(value)), value)
    call(kv_store, "set", scope="s", key="k", value=value)
    got = call(kv_store, "get", scope="s", key="k")
    assert_same(got, value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        assert type(got) is type(value)


def test_dumps_of_checked_value_matches_encode() -> None:
    assert dumps({"a": [1]}) == encode({"a": [1]})


# -- loads -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "[1, NaN]", '{"a": Infinity}'])
def test_loads_rejects_nan_and_infinity_text(text: str) -> None:
    with pytest.raises(InvalidValueError, match="NaN or Infinity"):
        loads(text)


@pytest.mark.parametrize("text", ["1e400", "-1e400", "[1.5e999]"])
def test_loads_rejects_float_overflow(text: str) -> None:
    with pytest.raises(InvalidValueError, match="too large"):
        loads(text)


@pytest.mark.parametrize(
    "text", ["18446744073709551616", "-9223372036854775809", '{"a": [1, 2, hello]}', "", "{", "'s'"]
)
def test_loads_rejects_out_of_range_and_invalid_text(text: str) -> None:
    with pytest.raises(InvalidValueError):
        loads(text)


def test_loads_accepts_edges_exactly() -> None:
    assert_same(loads("[18446744073709551615, -9223372036854775808, 1e308, 1.0, 2]"),
                [U64_MAX, I64_MIN, 1e308, 1.0, 2])  # fmt: skip
    assert_same(loads(b'{"\xc3\xa9": "\xf0\x9f\x98\x80"}'), {"é": "😀"})


def test_decode_stored_rejects_foreign_bytes() -> None:
    with pytest.raises(StoredValueError, match="stored bytes"):
        decode_stored(b"\x00not json")


@pytest.mark.parametrize(
    "data", [b"NaN", b"-Infinity", b"[1,Infinity]", b"1e400", b'{"a":-1e999}', b"1e-400", b" 1e-400"]
)
def test_decode_stored_refuses_what_no_json_output_could_print(data: bytes) -> None:
    """Issue 12 #2: foreign NaN/1e400 were returned as floats and printed as `NaN`/`Infinity`."""
    with pytest.raises(StoredValueError, match="strict JSON"):
        decode_stored(data)


@pytest.mark.parametrize("text", ["1e-400", "-2.5e-330", "[1E-999]"])
def test_loads_rejects_numbers_that_underflow_to_zero(text: str) -> None:
    """Issue 12: `1e-400` silently became 0.0; now it is refused, like 1e400."""
    with pytest.raises(InvalidValueError, match="too small for a double"):
        loads(text)


@pytest.mark.parametrize(("text", "value"), [("0e-400", 0.0), ("-0.0e-999", -0.0), ("5e-324", 5e-324)])
def test_loads_keeps_zeros_and_subnormals(text: str, value: float) -> None:
    assert_same(loads(text), value)


# -- same_json ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [(1, 1), (1.0, 1.0), ("a", "a"), (None, None), (True, True), ([], []), ({}, {}),
     ({"a": 1, "b": [1.5]}, {"b": [1.5], "a": 1}), (2**64 - 1, 2**64 - 1)],
)  # fmt: skip
def test_same_json_equal(a: Any, b: Any) -> None:
    assert same_json(a, b) and same_json(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [(1, 1.0), (True, 1), (False, 0), (None, False), ([], {}), ("1", 1), ([1], [1.0]),
     ({"a": 1}, {"a": True}), ({"a": 1}, {"a": 1, "b": 1}), ([1, 2], [2, 1]), ([], [None]),
     (9007199254740993, 9007199254740992.0), ({"a": None}, {})],
)  # fmt: skip
def test_same_json_different(a: Any, b: Any) -> None:
    assert not same_json(a, b) and not same_json(b, a)


def test_assert_same_helper_is_strict_inside_tuples() -> None:
    # the helper the op tests use on (new, errors) pairs must not fall back to Python's ==
    with pytest.raises(AssertionError):
        assert_same(({"n": 1}, []), ({"n": 1.0}, []))
    with pytest.raises(AssertionError):
        assert_same((True, []), (1, []))


def test_depth_limit_above_recursion_limit_is_refused_in_config() -> None:
    """A depth limit deeper than encoding can recurse is a config error, never a RecursionError."""
    with pytest.raises(ConfigError, match="max_value_depth"):
        open_store({"adapter": {"name": "kv"}, "max_value_depth": 5000})
    with open_store({"adapter": {"name": "kv"}, "max_value_depth": 512}) as store:
        store.set("s", "k", nest(511))
        assert store.get("s", "k") == nest(511)
        with pytest.raises(DeserializationError):
            store.set("s", "k", nest(600))


@pytest.mark.parametrize(
    "data",
    [b'{"a":1}', b' {"a":1}', b'{"a":1}\n', b"1 ", b"0", b"-0", b"-0.0", b"1e5", b"12345678901234567890",
     b'"\\ud83d\\ude00"', b'"\xf0\x9f\x98\x80"', b"\xef\xbb\xbf[1]", b"[1,2]", b"[]", b"{}", b"null",
     b"true", b"false", b'"x"', b"t", b"1 2", b"[1,2]x", b"\x00", b"", b'"a\xff"', b"-", b"[1,", b"nul"],
)  # fmt: skip
def test_decode_stored_agrees_with_json_loads(data: bytes) -> None:
    # decode_stored may take shortcuts for the core's own compact bytes; it must never parse
    # anything differently from json.loads, nor accept what json.loads refuses
    import json

    try:
        expected = json.loads(data)
    except ValueError:
        with pytest.raises(StoredValueError):
            decode_stored(data)
        return
    assert_same(decode_stored(data), expected)


class _Str(str):
    pass


class _Dict(dict):  # type: ignore[type-arg]
    pass


@pytest.mark.parametrize(
    "value",
    [{"a": [1, 2.5, None, True, False, "é\n\"\\"]}, 0.1, 1e16, 1e-7, -0.0, 2**64 - 1, -(2**63),
     [_Str("sub")], _Dict(a=1), {"k": _Dict(b=[1])}, nest(47), nest(48), nest(49), nest(128),
     {"\u2028": "\u2029"}, "\x00\x1f", [[], {}], {"": ""}],
    ids=lambda v: repr(v)[:40],
)  # fmt: skip
def test_encode_matches_json_dumps(value: Any) -> None:
    import json

    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    assert encode(value) == expected


@pytest.mark.parametrize("text", [
    '{"a": [1, 2.5, "x", true, null], "b": {"c": "é\\u00e9"}}',
    "18446744073709551615", "18446744073709551616", "-9223372036854775808", "-9223372036854775809",
    '"1234567890123456789012"', "123456789012345678", "[1e308, 1e-7, -0.0, 1E+2]",
    "NaN", "[Infinity]", '{"x": -Infinity}', '"\\ud800"', '["\\udc00x"]',
    "[" * 128 + "]" * 128, "[" * 129 + "]" * 129, '["[[[["]', "{}", "[]", '""',
])  # fmt: skip
def test_encode_parsed_gives_what_encode_gives(text: str) -> None:
    """The import's encoder of parsed values: the same bytes, or the same error, as encode."""
    value = json.loads(text)
    try:
        want: object = encode(value, max_depth=128)
    except InvalidValueError as exc:
        want = str(exc)
    try:
        got: object = encode_parsed(value, max_depth=128)
    except InvalidValueError as exc:
        got = str(exc)
    assert got == want


def test_encode_all_gives_encode_of_each_or_none_when_one_is_refused() -> None:
    good: list[object] = [
        1, 1.0, -0.0, 2**64 - 1, "é\u2028", None, True, [], {}, {"a": [1, {"b": "c"}]}, [[[["deep"]]]],
        "x" * 300,
    ]  # fmt: skip
    assert encode_all(good) == [encode(v) for v in good]
    assert encode_all([]) == []
    for bad in (float("nan"), 2**64, "\ud800", {1: "key"}, (1, 2)):
        assert encode_all([*good, bad]) is None
    assert encode_all([[1], {"a": [2]}], max_depth=2) == [b"[1]", b'{"a":[2]}']
    assert encode_all([[1], [[[1]]]], max_depth=2) is None


#: Values the level-by-level check must judge as the recursive one does: every kind it accepts, and
#: each thing it refuses at several depths (a subclass, a tuple, a set, a key that is not a string, an
#: integer out of range, a non-finite float), a cycle, and nesting up to and past the limits.
class _Str(str):
    pass


def _cyclic() -> list[object]:
    loop: list[object] = [1]
    loop.append(loop)
    return loop


_LEAVES_AND_ODDS: list[object] = [
    None, True, False, 0, -1, I64_MIN, U64_MAX, 1.5, -0.0, "", "é", [], {},
    I64_MIN - 1, U64_MAX + 1, float("nan"), float("inf"), -float("inf"), _Str("s"), (1,), {1}, b"x",
    decimal.Decimal(1),
]  # fmt: skip


def _shapes() -> list[object]:
    shapes: list[object] = []
    for leaf in _LEAVES_AND_ODDS:
        shapes += [leaf, [leaf], {"k": leaf}, [1, "a", {"a": [leaf, 2]}], {"a": 1, "b": [[leaf]]}]
    shapes += [{1: "a"}, {"a": 1, 2: "b"}, {None: 1}, {_Str("k"): 1}, _cyclic(), {"a": _cyclic()}]
    shapes += [nest(d) for d in (1, 2, 47, 48, 49, 60, 127, 128, 129)]
    shapes += [{"a": nest(d)} for d in (46, 47, 48)]
    return shapes


@pytest.mark.parametrize("max_depth", [0, 1, 2, 3, 48, 49, 128])
def test_all_plainly_valid_answers_as_the_recursive_check_of_each(max_depth: int) -> None:
    """``all_plainly_valid`` (a batch's sets) is ``_plainly_valid`` of each value: alone, and mixed
    with other values of every kind (a refused one anywhere makes the whole list ``False``)."""
    from iii_state_core.values import _plainly_valid, all_plainly_valid

    shapes = _shapes()
    good = [s for s in shapes if _plainly_valid(s, 0, max_depth)]
    assert good and len(good) < len(shapes)  # the list holds both kinds at every limit
    for shape in shapes:
        want = _plainly_valid(shape, 0, max_depth)
        assert all_plainly_valid([shape], max_depth) is want, shape
        assert all_plainly_valid([*good, shape, *good], max_depth) is want, shape
    assert all_plainly_valid(good, max_depth) is True
    assert all_plainly_valid([], max_depth) is True

"""Strict JSON values (contract § Values): the checks, and the compact byte form every backend stores."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from itertools import chain, compress, repeat
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from operator import is_
from typing import Any, Final

from .errors import InvalidValueError, StoredValueError

#: The engine's integer range: i64 minimum to u64 maximum.
MIN_INT: Final = -(2**63)
MAX_INT: Final = 2**64 - 1
#: Default nesting limit: how many arrays/objects may enclose one another.
DEFAULT_MAX_DEPTH: Final = 128

JSON = Any  # a value that passed check_value; Python has no precise recursive JSON type


def _type_name(value: object) -> str:
    return type(value).__name__


def _where(path: list[str | int]) -> str:
    """``value[0]["a"]``; a long path keeps its ends: ``value[0][0]…(122 levels)…[0][0]``."""

    def step(part: str | int) -> str:
        if isinstance(part, int):
            return f"[{part}]"
        shown = part if len(part) <= 40 else f"{part[:40]}…"
        return f"[{json.dumps(shown, ensure_ascii=False)}]"

    if len(path) > 8:
        middle = f"…({len(path) - 6} levels)…"
        return "value" + "".join(map(step, path[:3])) + middle + "".join(map(step, path[-3:]))
    return "value" + "".join(map(step, path))


#: How deep the fast check recurses before it leaves the value to the iterative walk.
_FAST_DEPTH: Final = 48
_isfinite = math.isfinite


def _plainly_valid(value: object, depth: int, max_depth: int) -> bool:
    """``True`` only when ``value`` certainly passes :func:`check_value`.

    The hot path of every write: exact builtin types only, recursion capped at ``_FAST_DEPTH``.
    Anything unusual (a subclass, a bad value, deep nesting) answers ``False`` and the full
    walk then runs and names the problem, so results and messages stay the walk's.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return MIN_INT <= value <= MAX_INT  # type: ignore[operator]
    if kind is float:
        return _isfinite(value)  # type: ignore[arg-type]
    if depth >= max_depth or depth >= _FAST_DEPTH:
        return False
    if kind is dict:
        for k, v in value.items():  # type: ignore[attr-defined]
            if type(k) is not str:
                return False
            leaf = type(v)
            if leaf is str or leaf is bool or v is None:
                continue
            if leaf is int:
                if not MIN_INT <= v <= MAX_INT:
                    return False
            elif not _plainly_valid(v, depth + 1, max_depth):
                return False
        return True
    if kind is list:
        for v in value:  # type: ignore[attr-defined]
            leaf = type(v)
            if leaf is str or leaf is bool or v is None:
                continue
            if leaf is int:
                if not MIN_INT <= v <= MAX_INT:
                    return False
            elif not _plainly_valid(v, depth + 1, max_depth):
                return False
        return True
    return False


#: :func:`check_value`'s fast test, for hot paths that spare the call when it passes.
plainly_valid = _plainly_valid

_LEAVES: Final = frozenset((str, bool, type(None)))
_PLAIN_KINDS: Final = _LEAVES | {int, float, dict, list}
_dict_values = dict.values


def _each_of(level: list[Any], kinds: list[type], present: set[type], kind: type) -> Iterable[Any]:
    """The items of ``level`` whose type is exactly ``kind`` (``kinds``: each item's type,
    ``present``: the set of them): the level itself when every item is of that kind."""
    return level if len(present) == 1 else compress(level, map(is_, kinds, repeat(kind)))


def all_plainly_valid(values: list[object], max_depth: int) -> bool:
    """``_plainly_valid(value, 0, max_depth)`` of every value, answered level by level: each
    nesting level of all the values at once, by C iteration (a batch's values: the recursive
    check's Python step per container and per item cost more than encoding them). The same
    answer: exact builtin types only, integers in range, finite floats, string keys, no container
    at ``max_depth`` or ``_FAST_DEPTH`` (so a cycle answers ``False`` too)."""
    level: list[Any] = values
    depth = 0
    while level:
        kinds = list(map(type, level))
        present = set(kinds)
        if present <= _LEAVES:
            return True
        if not present <= _PLAIN_KINDS:
            return False
        if int in present:
            ints = list(_each_of(level, kinds, present, int))
            if min(ints) < MIN_INT or max(ints) > MAX_INT:
                return False
        if float in present and not all(map(_isfinite, _each_of(level, kinds, present, float))):
            return False
        below: list[Any] = []
        if dict in present or list in present:
            if depth >= max_depth or depth >= _FAST_DEPTH:
                return False
            if dict in present:
                dicts = list(_each_of(level, kinds, present, dict))
                if not set(map(type, chain.from_iterable(dicts))) <= {str}:  # the keys
                    return False
                below += chain.from_iterable(map(_dict_values, dicts))
            if list in present:
                below += chain.from_iterable(_each_of(level, kinds, present, list))
        level = below
        depth += 1
    return True


def check_value(value: object, *, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    """Raise :class:`InvalidValueError` unless ``value`` is strict JSON.

    :param value: the Python value a caller wants to store.
    :param max_depth: how many containers may nest; one more is an error.
    :raises InvalidValueError: naming where in the value the problem is and what it was.
    """
    if _plainly_valid(value, 0, max_depth):
        return
    # Iterative walk: a deeply nested hostile value must not hit Python's recursion limit.
    stack: list[tuple[object, int, list[str | int]]] = [(value, 0, [])]
    while stack:
        item, depth, path = stack.pop()
        if item is None or isinstance(item, (str, bool)):
            continue
        if isinstance(item, int):
            if not MIN_INT <= item <= MAX_INT:
                raise InvalidValueError(
                    f"{_where(path)} is the integer {item}, outside the supported range "
                    f"-2^63 … 2^64-1; store it as a string instead"
                )
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidValueError(f"{_where(path)} is {item!r}: JSON has no NaN or Infinity")
            continue
        if isinstance(item, (dict, list)):
            if depth >= max_depth:
                raise InvalidValueError(
                    f"{_where(path)} nests deeper than the limit of {max_depth} arrays/objects"
                )
            if isinstance(item, dict):
                for k, v in item.items():
                    if not isinstance(k, str):
                        raise InvalidValueError(
                            f"{_where(path)} has a key {k!r} of type {_type_name(k)}; "
                            f"JSON object keys must be strings"
                        )
                    stack.append((v, depth + 1, [*path, k]))
            else:
                for i, v in enumerate(item):
                    stack.append((v, depth + 1, [*path, i]))
            continue
        raise InvalidValueError(
            f"{_where(path)} is a {_type_name(item)}, which is not JSON; "
            f"use null, a boolean, a number, a string, a list or a dict"
        )


def encode(value: object, *, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """Check ``value`` and return its compact UTF-8 JSON bytes.

    :raises InvalidValueError: when the value is not strict JSON.
    """
    if not _plainly_valid(value, 0, max_depth):  # the walk's fast path, one call less per write
        check_value(value, max_depth=max_depth)
    if _encode_checked is None:
        return dumps(value)
    # A checked value nests at most max_depth deep, so it has no cycle and the encoder can
    # skip its cycle bookkeeping; the text is what json.dumps with our options gives.
    text = "".join(_encode_checked(value, 0))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _utf8(text)  # raises, naming the lone surrogate


def encode_all(values: list[object], *, max_depth: int = DEFAULT_MAX_DEPTH) -> list[bytes] | None:
    """:func:`encode` of each value, checked in one walk and encoded by C iteration (a batch's
    sets: the Python step per value cost more than its encoding). ``None`` when some value is not
    plainly valid or holds a lone surrogate: :func:`encode` of each then says which and why."""
    if _encode_checked is None or not all_plainly_valid(values, max_depth):
        return None
    try:
        return list(map(str.encode, map("".join, map(_encode_checked, values, repeat(0)))))
    except UnicodeEncodeError:
        return None


def dumps(value: object) -> bytes:
    """Compact UTF-8 JSON of an already checked value.

    :raises InvalidValueError: when a string holds a lone surrogate (it has no UTF-8 form).
    """
    return _utf8(json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False))


#: ``json.dumps(separators=(",", ":"), ensure_ascii=False, allow_nan=False)`` as one reusable C
#: encoder without cycle markers (building a JSONEncoder per call cost more than the encoding).
_encode_checked: Any = (
    None
    if c_make_encoder is None
    else c_make_encoder(
        None, json.JSONEncoder().default, encode_basestring, None, ":", ",", False, False, False
    )
)


#: An integer of this many digits may be outside the supported range (up to 18 never is).
_LONG_NUMBER: Final = re.compile(r"[0-9]{19}")


def encode_parsed(value: object, *, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """:func:`encode` of a value the ``json`` module's parser just built (an import line's).

    Such a value holds only exact JSON types with string keys and no cycle, so the C encoder alone
    finds a NaN or Infinity; its text then shows whether it may nest too deep (no more brackets
    than ``max_depth``) or hold an integer out of range (no 19-digit run): when it might, the walk
    of :func:`encode` decides. Same bytes, same errors, without a Python step per container.
    """
    if _encode_checked is not None:
        try:
            text = "".join(_encode_checked(value, 0))
        except ValueError:  # NaN or Infinity: the walk names it
            return encode(value, max_depth=max_depth)
        if text.count("[") + text.count("{") <= max_depth and _LONG_NUMBER.search(text) is None:
            try:
                return text.encode("utf-8")
            except UnicodeEncodeError:
                return _utf8(text)  # raises, naming the lone surrogate
    return encode(value, max_depth=max_depth)


def canonical_or_none(value: object) -> bytes | None:
    """The bytes :func:`encode` gives for an already checked value, or ``None`` when it has none
    (a lone surrogate): what the core would have stored for it."""
    if _encode_checked is None:
        try:
            return dumps(value)
        except InvalidValueError:
            return None
    try:
        return "".join(_encode_checked(value, 0)).encode("utf-8")
    except UnicodeEncodeError:
        return None


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end]
        raise InvalidValueError(
            f"value holds a lone surrogate {bad.encode('unicode_escape').decode()}: "
            f"strings must be valid Unicode"
        ) from None


def _reject_constant(name: str) -> object:
    raise InvalidValueError(f"JSON text contains {name}: JSON has no NaN or Infinity")


def _finite_float(text: str) -> float:
    """A JSON number as a double, refusing the texts a double cannot hold.

    ``1e400`` overflows to infinity (not JSON). ``1e-400`` underflows to ``0.0``: a nonzero
    number silently read as zero, refused too (``0e-400`` is a zero and stays one).
    """
    number = float(text)
    if not math.isfinite(number):
        raise InvalidValueError(f"JSON number {_clip(text)} is too large for a double")
    if number == 0.0 and any(c in "123456789" for c in text.partition("e")[0].partition("E")[0]):
        raise InvalidValueError(
            f"JSON number {_clip(text)} is too small for a double (it would read back as 0.0)"
        )
    return number


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[:limit]}…"


def loads(data: bytes | str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> JSON:
    """Parse strict JSON text (stored bytes, CLI input, import lines) into a checked value.

    :raises InvalidValueError: when the text is not JSON or not strict JSON.
    """
    try:
        value = json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    except InvalidValueError:
        raise
    except (ValueError, RecursionError) as exc:
        raise InvalidValueError(f"not valid JSON: {exc}") from None
    check_value(value, max_depth=max_depth)
    dumps(value)  # refuses lone surrogates, which a \ud800 escape can smuggle in
    return value


#: The strict scanner for stored bytes: NaN, Infinity and numbers no double holds are refused,
#: so nothing read from a store can be printed as text that is not JSON.
_STRICT = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_scan_once = _STRICT.scan_once  # type: ignore[attr-defined]
#: First bytes of the compact JSON the core stores: no BOM, no NUL, no leading whitespace.
_PLAIN_FIRST: Final = frozenset(b'{["-0123456789tfn')


def decode_stored(data: bytes) -> JSON:
    """Parse bytes a backend returned. They were checked on the way in, so only parse.

    :raises StoredValueError: when the stored bytes are not strict JSON (another program wrote
        them): not JSON at all, NaN/Infinity, a number no double holds, or nested past parsing.
    """
    # Fast path for what the core itself wrote: UTF-8 without a BOM (json.loads would detect
    # the same encoding), one document and nothing after it. Anything else takes json.loads.
    if type(data) is bytes and data and data[0] in _PLAIN_FIRST and (len(data) == 1 or data[1]):
        try:
            text = data.decode("utf-8", "surrogatepass")
            value, end = _scan_once(text, 0)
            if end == len(text):
                return value
        except InvalidValueError as exc:
            raise StoredValueError(f"stored bytes are not strict JSON ({exc})") from None
        except Exception:
            pass  # json.loads below raises what it always raised
    try:
        return json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    except InvalidValueError as exc:
        raise StoredValueError(f"stored bytes are not strict JSON ({exc})") from None
    except ValueError as exc:
        raise StoredValueError(f"stored bytes are not JSON ({exc})") from None
    except RecursionError:  # a foreign writer's value nested past what Python can parse
        raise StoredValueError("stored bytes nest too deeply to parse") from None


def decode_all(raws: list[bytes]) -> list[JSON]:
    """:func:`decode_stored` of each, with its fast path inlined: a listing page decodes a
    hundred values, and the call per value was a third of the page's cost.

    :raises StoredValueError: as :func:`decode_stored`, for the first value that is not strict JSON.
    """
    out: list[JSON] = []
    append = out.append
    for data in raws:
        if type(data) is bytes and data and data[0] in _PLAIN_FIRST and (len(data) == 1 or data[1]):
            try:
                text = data.decode("utf-8", "surrogatepass")
                value, end = _scan_once(text, 0)
                if end == len(text):
                    append(value)
                    continue
            except Exception:
                pass  # decode_stored below says what is wrong
        append(decode_stored(data))
    return out


def json_type(value: object) -> str:
    """The JSON type name the engine's messages use: null, boolean, number, string, array, object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def same_json(a: object, b: object) -> bool:
    """Structural JSON equality: ``1`` is not ``1.0`` and ``true`` is not ``1`` (unlike ``==``)."""
    if type(a) is not type(b):
        # dict/list/str subclasses compare by JSON kind, not Python class
        if json_type(a) != json_type(b) or isinstance(a, (bool, float)) or isinstance(b, (bool, float)):
            return False
        if isinstance(a, int) != isinstance(b, int):
            return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(same_json(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def copy_json(value: JSON) -> JSON:
    """A deep copy of a checked value (faster than ``copy.deepcopy`` for plain JSON)."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value

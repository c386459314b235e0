"""The ``state::update`` op engine (contract § Update ops): parse the wire ops, apply them to a value.

Pure functions, no I/O: every backend runs exactly this code, so results cannot drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple

from .errors import DeserializationError
from .values import JSON, MAX_INT, MIN_INT, check_value, copy_json, json_type

MAX_PATH_DEPTH: Final = 32
MAX_SEGMENT_BYTES: Final = 256
MAX_MERGE_DEPTH: Final = 16
MAX_MERGE_KEYS: Final = 1024
PROTO_POLLUTION_KEYS: Final = frozenset({"__proto__", "constructor", "prototype"})
I64_MIN: Final = -(2**63)
I64_MAX: Final = 2**63 - 1

OpType = Literal["set", "merge", "increment", "decrement", "append", "remove"]
OP_TYPES: Final[tuple[OpType, ...]] = ("set", "merge", "increment", "decrement", "append", "remove")


class Op(NamedTuple):
    """One parsed update op. ``segments`` is the normalised path (``()`` = the whole value).

    A named tuple: one is built per op of every update, and a frozen dataclass's ``__init__``
    was a good part of the cost of parsing one.
    """

    type: OpType
    segments: tuple[str, ...]
    value: JSON = None
    by: int = 0

    @property
    def path_text(self) -> str:
        """The single field name of a field-path op (``""`` for the whole value)."""
        return self.segments[0] if self.segments else ""


@dataclass(frozen=True, slots=True)
class OpError:
    """A skipped op, reported in ``errors`` of the update result."""

    op_index: int
    code: str
    message: str

    def to_wire(self) -> dict[str, Any]:
        return {"op_index": self.op_index, "code": self.code, "message": self.message}


# ---------------------------------------------------------------------------------------------
# Parsing: a malformed op fails the whole call (deserialization_error), before anything runs.


def parse_ops(raw: object, *, max_depth: int) -> list[Op]:
    """Turn the wire ``ops`` list into :class:`Op` objects.

    :raises DeserializationError: naming the op index and field when the shape is wrong.
    """
    if not isinstance(raw, list):
        raise DeserializationError(f"ops must be a list of update ops, got {json_type(raw)}")
    return [_parse_op(i, item, max_depth) for i, item in enumerate(raw)]


def _where(index: int) -> str:
    # Built only on the error paths: formatting it for every op cost more than parsing the op.
    return f"ops[{index}]"


def _parse_op(index: int, raw: object, max_depth: int) -> Op:
    if not isinstance(raw, dict):
        raise DeserializationError(f"{_where(index)} must be an object, got {json_type(raw)}")
    op_type = raw.get("type")
    if op_type not in OP_TYPES:
        raise DeserializationError(
            f"{_where(index)}.type is {op_type!r}; expected one of {', '.join(OP_TYPES)}"
        )
    if op_type in ("merge", "append"):
        segments = _segment_path(index, raw.get("path"))
        if "value" not in raw:
            raise DeserializationError(f"{_where(index)} ({op_type}) is missing its value")
        return Op(op_type, segments, _op_value(index, raw["value"], max_depth))
    path = raw.get("path")
    if not isinstance(path, str):
        raise DeserializationError(
            f"{_where(index)}.path must be a string for {op_type}, got "
            f"{'nothing' if 'path' not in raw else json_type(path)}"
        )
    segments = (path,) if path else ()
    if op_type == "set":
        return Op("set", segments, _op_value(index, raw.get("value"), max_depth))
    if op_type in ("increment", "decrement"):
        by = raw.get("by")
        if isinstance(by, bool) or not isinstance(by, int) or not I64_MIN <= by <= I64_MAX:
            raise DeserializationError(
                f"{_where(index)}.by must be an integer between -2^63 and 2^63-1, got "
                f"{'nothing' if 'by' not in raw else repr(by)}"
            )
        return Op(op_type, segments, by=by)
    return Op("remove", segments)


def _segment_path(index: int, path: object) -> tuple[str, ...]:
    if path is None or path == "":
        return ()
    if isinstance(path, str):
        return (path,)
    if isinstance(path, list) and all(isinstance(s, str) for s in path):
        return tuple(path)
    raise DeserializationError(f"{_where(index)}.path must be a string or a list of strings")


def _op_value(index: int, value: object, max_depth: int) -> JSON:
    try:
        check_value(value, max_depth=max_depth)
    except DeserializationError as exc:
        raise type(exc)(f"{_where(index)}.{exc.message}") from None
    return value


# ---------------------------------------------------------------------------------------------
# Applying: a failing op is skipped and reported; the others still apply.


def _number_op(value: JSON, by: int, op: OpType) -> JSON | None:
    """``value ± by``, or ``None`` when the target is no number or the result leaves the range."""
    delta = by if op == "increment" else -by
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        result = value + delta
        return result if MIN_INT <= result <= MAX_INT else None
    if isinstance(value, float):
        result_f = value + float(delta)
        return result_f if math.isfinite(result_f) else None
    return None


def _field_label(path: str) -> str:
    return path or "root"


def _segments_label(segments: tuple[str, ...]) -> str:
    return f"[{', '.join(segments)}]" if segments else "root"


def _check_path(op: Op, index: int) -> OpError | None:
    name = op.type
    if len(op.segments) > MAX_PATH_DEPTH:
        return OpError(
            index,
            f"{name}.path.too_deep",
            f"Path depth {len(op.segments)} exceeds maximum of {MAX_PATH_DEPTH}",
        )
    for segment in op.segments:
        if not segment:
            return OpError(index, f"{name}.path.empty_segment", "Path contains an empty segment")
        # A character takes at most 4 UTF-8 bytes: only a longer segment needs encoding to measure.
        if len(segment) > MAX_SEGMENT_BYTES // 4:
            size = len(segment.encode("utf-8", "surrogatepass"))
            if size > MAX_SEGMENT_BYTES:
                return OpError(
                    index,
                    f"{name}.path.segment_too_long",
                    f"Path segment of {size} bytes exceeds maximum of {MAX_SEGMENT_BYTES}",
                )
        if segment in PROTO_POLLUTION_KEYS:
            return OpError(
                index,
                f"{name}.path.proto_polluted",
                f"Path segment '{segment}' is not allowed (prototype pollution).",
            )
    return None


def _depth(value: JSON) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _check_merge_value(value: JSON, index: int) -> OpError | None:
    if not isinstance(value, dict):
        return OpError(index, "merge.value.not_an_object", "Merge value must be a JSON object")
    if len(value) > MAX_MERGE_KEYS:
        return OpError(
            index,
            "merge.value.too_many_keys",
            f"Merge value has {len(value)} top-level keys, exceeds maximum of {MAX_MERGE_KEYS}",
        )
    for key in value:
        if key in PROTO_POLLUTION_KEYS:
            return OpError(
                index,
                "merge.value.proto_polluted",
                f'Merge value top-level key "{key}" is a prototype-pollution sink',
            )
    depth = _depth(value)
    if depth > MAX_MERGE_DEPTH:
        return OpError(
            index,
            "merge.value.too_deep",
            f"Merge value JSON nesting depth {depth} exceeds maximum of {MAX_MERGE_DEPTH}",
        )
    return None


def _walk_or_create(root: dict[str, JSON], segments: tuple[str, ...]) -> dict[str, JSON]:
    """Descend ``segments``, replacing missing or non-object intermediates with ``{}``."""
    node = root
    for segment in segments:
        child = node.get(segment)
        if not isinstance(child, dict):
            child = {}
            node[segment] = child
        node = child
    return node


def _initial_append(value: JSON) -> JSON:
    return value if isinstance(value, str) else [value]


def _append_into(
    container: dict[str, JSON] | list[JSON], slot: str | int, value: JSON, label: str, index: int
) -> OpError | None:
    """Append ``value`` to ``container[slot]`` (an existing array, string or null)."""
    target = container[slot]  # type: ignore[index]
    if isinstance(target, list):
        target.append(value)
    elif isinstance(target, str):
        if not isinstance(value, str):
            return OpError(
                index,
                "append.type_mismatch",
                f"Expected string append value at path '{label}', got {json_type(value)}.",
            )
        container[slot] = target + value  # type: ignore[index]
    elif target is None:
        container[slot] = _initial_append(value)  # type: ignore[index]
    else:
        return OpError(
            index,
            "append.type_mismatch",
            f"Cannot append at path '{label}': target is {json_type(target)}, "
            f"expected array, string, null, or missing field.",
        )
    return None


def apply_ops(current: JSON, missing: bool, ops: list[Op]) -> tuple[JSON, list[OpError]]:
    """Apply ``ops`` in order to ``current`` (owned: it is changed in place where possible).

    :param current: the stored value, or anything when ``missing``.
    :param missing: the key did not exist; the value starts as ``{}``.
    :returns: the new value and the errors of the ops that were skipped.
    """
    if missing:
        current = {}
    errors: list[OpError] = []
    for index, op in enumerate(ops):
        error = _check_path(op, index)
        if error is None and op.type == "merge":
            error = _check_merge_value(op.value, index)
        if error is None:
            current, missing, error = _apply_one(current, missing, op, index)
        if error is not None:
            errors.append(error)
    return current, errors


def _apply_one(current: JSON, missing: bool, op: Op, index: int) -> tuple[JSON, bool, OpError | None]:
    """One op. Returns the new value, whether it is still the missing-key default, and an error."""
    kind = op.type
    if kind in ("set", "remove", "increment", "decrement"):
        path = op.path_text
        if not path:
            if kind == "set":
                return copy_json(op.value), False, None
            if kind == "remove":
                return None, False, None
            if missing:
                return (op.by if kind == "increment" else -op.by), False, None
            result = _number_op(current, op.by, kind)
            if result is None:
                return current, missing, _not_number(kind, "root", current, index)
            return result, False, None
        if not isinstance(current, dict):
            return current, missing, _not_object(kind, path, current, index)
        if kind == "set":
            current[path] = copy_json(op.value)
        elif kind == "remove":
            current.pop(path, None)
        elif path in current:
            result = _number_op(current[path], op.by, kind)
            if result is None:
                return current, missing, _not_number(kind, path, current[path], index)
            current[path] = result
        else:
            current[path] = op.by if kind == "increment" else -op.by
        return current, False, None

    value = op.value
    if kind == "merge":
        if not op.segments:
            if isinstance(current, dict):
                current.update(copy_json(value))
                return current, False, None
            return current, missing, None  # engine parity: silent no-op on a non-object root
        if not isinstance(current, dict):
            current = {}
        _walk_or_create(current, op.segments).update(copy_json(value))
        return current, False, None

    # append
    value = copy_json(value)
    if not op.segments:
        holder = [None if missing else current]
        error = _append_into(holder, 0, value, "root", index)
        if error is not None:
            return current, missing, error
        return holder[0], False, None
    if not isinstance(current, dict):
        return current, missing, _not_object(kind, _segments_label(op.segments), current, index)
    *parents, leaf = op.segments
    parent = _walk_or_create(current, tuple(parents))
    if leaf in parent:
        error = _append_into(parent, leaf, value, leaf, index)
    else:
        parent[leaf] = _initial_append(value) if not parents else [value]
        error = None
    # engine parity: the walk's created intermediates stay even when the leaf append fails
    return current, False, error


def _not_object(kind: OpType, label: str, found: JSON, index: int) -> OpError:
    return OpError(
        index,
        f"{kind}.target_not_object",
        f"Cannot {kind} at path '{label}': target is {json_type(found)}, expected object.",
    )


def _not_number(kind: OpType, label: str, found: JSON, index: int) -> OpError:
    return OpError(
        index,
        f"{kind}.not_number",
        f"Expected number at path '{_field_label(label)}', got {json_type(found)}.",
    )

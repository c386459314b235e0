"""The JSON Lines form of state: one ``{"scope", "key", "value"}`` object per line, plus
``"expires_at"`` (the absolute deadline, epoch milliseconds) for an entry that expires.

Reading is streaming (one line in memory at a time) and reports each bad line with its
number and the reason, so a file can be checked completely before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final, NamedTuple

from ..adapter import Capabilities
from ..errors import StateError
from ..operations import Limits
from ..values import JSON, json_type
from .errors import InvalidLinesError, LineProblem, show

_scan_once: Any = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # json.loads, no layers
_new: Any = tuple.__new__  # an Entry without its Python-level __new__ (no deadline to set)
#: A line longer than this is reported rather than read into memory whole.
MAX_LINE_BYTES: Final = 64 * 1024 * 1024
#: How many bad lines a check keeps for its report (it counts all of them).
MAX_REPORTED: Final = 100
FIELDS: Final = ("scope", "key", "value")
#: The optional field of an entry that expires (absent in files exported before deadlines were).
EXPIRES_AT: Final = "expires_at"
#: The largest deadline a line may carry: the largest signed 64-bit integer.
MAX_EXPIRES_AT: Final = 2**63 - 1
#: Checks for a file read without a target store: strict JSON, valid Unicode, no size limits.
ANY_TARGET: Final = Limits(Capabilities(ttl="emulated"), adapter_name="target")


class _Fields(NamedTuple):
    scope: str
    key: str
    value: JSON


class Entry(_Fields):
    """One stored entry: its scope, its key, its JSON value — a 3-tuple, so ``for scope, key,
    value in export_entries(store)`` reads it — and its deadline, ``expires_at`` (epoch ms, or
    ``None`` for an entry that never expires), as an attribute beside the tuple."""

    expires_at: int | None = None  # set on the instance only when it has one

    def __new__(cls, scope: str, key: str, value: JSON, expires_at: int | None = None) -> Entry:
        entry = tuple.__new__(cls, (scope, key, value))
        if expires_at is not None:
            entry.expires_at = expires_at
        return entry

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Entry) and other.expires_at != self.expires_at:
            return False
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((tuple(self), self.expires_at))

    def __repr__(self) -> str:
        deadline = "" if self.expires_at is None else f", expires_at={self.expires_at}"
        return f"Entry(scope={self.scope!r}, key={self.key!r}, value={self.value!r}{deadline})"


def encode_line(entry: Entry) -> bytes:
    """The entry as one compact UTF-8 JSON line (non-ASCII kept as is), newline included."""
    record = {"scope": entry.scope, "key": entry.key, "value": entry.value}
    if entry.expires_at is not None:
        record[EXPIRES_AT] = entry.expires_at
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8") + b"\n"


def write_jsonl(entries: Iterable[Entry], stream: BinaryIO) -> int:
    """Write each entry as one line to a binary stream.

    :param entries: any iterable; it is consumed lazily, one entry at a time.
    :param stream: a file opened in binary mode (``sys.stdout.buffer`` works).
    :returns: how many lines were written.
    """
    count = 0
    for entry in entries:
        stream.write(encode_line(entry))
        count += 1
    return count


def parse_line(raw: bytes, limits: Limits = ANY_TARGET) -> Entry | str | None:
    """Parse and check one line.

    :param raw: the line's bytes, with or without its line ending.
    :param limits: the target store's checks (``store.limits``): strict JSON values, the depth
        limit, and the scope/key/value sizes the target can hold.
    :returns: the entry; ``None`` for a blank line; otherwise the reason the line is bad.
    """
    parsed = parse_encoded(raw, limits)
    return parsed[0] if isinstance(parsed, tuple) else parsed


def parse_encoded(raw: bytes, limits: Limits = ANY_TARGET) -> tuple[Entry, bytes] | str | None:
    """:func:`parse_line`, the entry beside its value's bytes as ``limits.encode`` gave them."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
    if text[:1] == "{":  # the usual line, as export writes it: no field checks beyond the types
        try:
            record, end = _scan_once(text, 0)
        except Exception:
            record, end = None, 0  # json.loads below says what is wrong
        if (
            type(record) is dict
            and len(record) == 3
            and type(scope := record.get("scope")) is str
            and type(key := record.get("key")) is str
            and "value" in record
            and (end == len(text) or text[end:].isspace())
        ):
            try:
                limits.check_entry(scope, key)
                data = limits.encode_parsed(record["value"])
            except StateError as exc:
                return str(exc)
            return _new(Entry, (scope, key, record["value"])), data
    if not text.strip():
        return None
    try:
        record = json.loads(text)
    except ValueError as exc:
        return f"not valid JSON: {exc}"
    except RecursionError:
        return "not valid JSON: nested too deeply to parse"
    if not isinstance(record, dict):
        return f'expected a JSON object {{"scope", "key", "value"}}, got {json_type(record)}'
    missing = [f for f in FIELDS if f not in record]
    if missing:
        return "missing field " + ", ".join(f'"{f}"' for f in missing)
    unknown = [f for f in record if f not in FIELDS and f != EXPIRES_AT]
    if unknown:
        return f"unknown field {show(unknown[0])} (a line holds only scope, key, value and expires_at)"
    scope, key, value = record["scope"], record["key"], record["value"]
    for name, item in (("scope", scope), ("key", key)):
        if not isinstance(item, str):
            return f'"{name}" must be a string, got {json_type(item)}'
    expires_at = record.get(EXPIRES_AT)
    if expires_at is not None:
        number = isinstance(expires_at, (int, float)) and not isinstance(expires_at, bool)
        if not (number and isinstance(expires_at, int) and 0 <= expires_at <= MAX_EXPIRES_AT):
            got = repr(expires_at) if number else json_type(expires_at)
            return (
                f'"{EXPIRES_AT}" must be a deadline in epoch milliseconds (an integer from 0 to 2^63-1) '
                f"or null, got {got}"
            )
        if limits.capabilities.ttl == "none":
            return (
                f'the entry expires ("{EXPIRES_AT}") but the {limits.adapter_name} adapter does not '
                f"support entry expiry (capability ttl is none)"
            )
    try:
        limits.check_entry(scope, key)
        data = limits.encode_parsed(value)
    except StateError as exc:
        return str(exc)
    return Entry(scope, key, value, expires_at), data


def _lines(stream: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """Number each line; an over-long line comes as ``None`` and is skipped without keeping it."""
    number = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # drain the rest of this line
                raw = stream.readline(MAX_LINE_BYTES)
            yield number, None
        else:
            yield number, raw


def iter_jsonl(stream: BinaryIO, limits: Limits = ANY_TARGET) -> Iterator[tuple[int, Entry | LineProblem]]:
    """Each non-blank line of a binary stream as ``(line number, entry or problem)``."""
    for number, parsed in iter_encoded(stream, limits):
        yield number, (parsed if isinstance(parsed, LineProblem) else parsed[0])


def iter_encoded(
    stream: BinaryIO, limits: Limits = ANY_TARGET
) -> Iterator[tuple[int, tuple[Entry, bytes] | LineProblem]]:
    """:func:`iter_jsonl`, each entry beside its value's bytes (see :func:`parse_encoded`)."""
    for number, raw in _lines(stream):
        if raw is None:
            yield number, LineProblem(number, f"line is longer than {MAX_LINE_BYTES} bytes")
            continue
        parsed = parse_encoded(raw, limits)
        if parsed is None:
            continue
        yield number, (LineProblem(number, parsed) if isinstance(parsed, str) else parsed)


def read_jsonl(
    stream: BinaryIO, limits: Limits = ANY_TARGET, *, skip_invalid: bool = False
) -> Iterator[Entry]:
    """The entries of a JSON Lines stream, one at a time.

    :param skip_invalid: drop bad lines silently instead of raising at the first one.
    :raises InvalidLinesError: at the first bad line, unless ``skip_invalid``.
    """
    for _, item in iter_jsonl(stream, limits):
        if isinstance(item, LineProblem):
            if skip_invalid:
                continue
            raise InvalidLinesError([item], 1)
        yield item


@dataclass
class Validation:
    """What a full check of a file found: entry count, and the bad lines (the first few kept)."""

    entries: int = 0
    invalid: int = 0
    problems: list[LineProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.invalid == 0

    def add(self, problem: LineProblem) -> None:
        self.invalid += 1
        if len(self.problems) < MAX_REPORTED:
            self.problems.append(problem)

    def error(self) -> InvalidLinesError:
        return InvalidLinesError(self.problems, self.invalid)


def validate_jsonl(stream: BinaryIO, limits: Limits = ANY_TARGET) -> Validation:
    """Check every line of a stream without keeping more than one line in memory.

    :returns: the entry count and the bad lines (each with its number and reason).
    """
    result = Validation()
    for _, item in iter_jsonl(stream, limits):
        if isinstance(item, LineProblem):
            result.add(item)
        else:
            result.entries += 1
    return result

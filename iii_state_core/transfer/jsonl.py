"""The JSON Lines form of state: one ``{"scope", "key", "value"}`` object per line.

Reading is streaming (one line in memory at a time) and reports each bad line with its
number and the reason, so a file can be checked completely before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Final, NamedTuple

from ..adapter import Capabilities
from ..errors import StateError
from ..operations import Limits
from ..values import JSON, json_type
from .errors import InvalidLinesError, LineProblem, show

#: A line longer than this is reported rather than read into memory whole.
MAX_LINE_BYTES: Final = 64 * 1024 * 1024
#: How many bad lines a check keeps for its report (it counts all of them).
MAX_REPORTED: Final = 100
FIELDS: Final = ("scope", "key", "value")
#: Checks for a file read without a target store: strict JSON, valid Unicode, no size limits.
ANY_TARGET: Final = Limits(Capabilities(), adapter_name="target")


class Entry(NamedTuple):
    """One stored entry: its scope, its key, and its JSON value."""

    scope: str
    key: str
    value: JSON


def encode_line(entry: Entry) -> bytes:
    """The entry as one compact UTF-8 JSON line (non-ASCII kept as is), newline included."""
    record = {"scope": entry.scope, "key": entry.key, "value": entry.value}
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
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
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
    unknown = [f for f in record if f not in FIELDS]
    if unknown:
        return f"unknown field {show(unknown[0])} (a line holds only scope, key and value)"
    scope, key, value = record["scope"], record["key"], record["value"]
    for name, item in (("scope", scope), ("key", key)):
        if not isinstance(item, str):
            return f'"{name}" must be a string, got {json_type(item)}'
    try:
        limits.check_entry(scope, key)
        limits.encode(value)
    except StateError as exc:
        return str(exc)
    return Entry(scope, key, value)


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
    for number, raw in _lines(stream):
        if raw is None:
            yield number, LineProblem(number, f"line is longer than {MAX_LINE_BYTES} bytes")
            continue
        parsed = parse_line(raw, limits)
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

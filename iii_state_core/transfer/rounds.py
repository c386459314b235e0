"""``import_file`` in big rounds, on an adapter with ``read_present`` and ``create_missing`` (kv).

The store is in-process: a round costs no round trip, only its commit, so rounds are
:data:`ROUND` entries rather than :data:`~.importing.CHUNK`. A round keeps three plain lists
(scopes, keys, the values' checked bytes) instead of one entry object per line, and no parsed
value: nothing for the garbage collector to walk. The check pass reads each round's keys with
``read_present`` (one range probe per scope: a new scope costs no lookup per key); the write pass
reads them again the same way and creates every missing key with one ``create_missing``. Anything
else goes the general way, with the same results: a key that holds a value, a round that
``create_missing`` refuses (a key created meanwhile, a key twice in the file), a line with a
deadline (``expires_at``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Final

from ..adapter import Adapter
from ..errors import StateError
from ..operations import Call, Limits, Plan
from ..results import StateEvent
from ..store import StateStore
from ..values import _LONG_NUMBER, _encode_checked, decode_stored
from .errors import ConflictsFoundError, InvalidLinesError, LineProblem, show
from .jsonl import MAX_LINE_BYTES, MAX_REPORTED, Entry, _lines, parse_encoded

if TYPE_CHECKING:
    from .importing import ImportReport, OnConflict

#: Entries per round (one read per scope, one transaction of writes).
ROUND: Final = 10_000
#: How much memory the check pass may spend keeping its rounds for the writes (a larger file is
#: read and parsed again): per entry its bytes and its names' plus :data:`_ENTRY_BYTES` of object
#: headers and list slots (measured: 249 bytes an entry for a 39-byte value and 9-byte names); a
#: line with a deadline keeps its parsed value too, counted as in the general path (10 bytes a byte).
KEPT_BYTES: Final = 128 * 1024 * 1024
_ENTRY_BYTES: Final = 200

_scan_once: Any = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def available(adapter: Adapter) -> bool:
    """Whether the adapter implements both primitives of the big rounds."""
    kind = type(adapter)
    return kind.read_present is not Adapter.read_present and kind.create_missing is not Adapter.create_missing


@dataclass
class Round:
    """Up to :data:`ROUND` good lines: the usual ones as parallel lists, those with a deadline
    as entries (the general path's)."""

    scopes: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    datas: list[bytes] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    timed: list[tuple[int, Entry, bytes]] = field(default_factory=list)
    #: Per scope: the places of its entries and their keys (made once, for both passes).
    groups: list[tuple[str, list[int], list[str]]] | None = None
    #: The check pass found none of the usual entries' keys holding a value (the writes then try
    #: ``create_missing`` without reading again: it refuses if one was created meanwhile).
    none_held: bool = False

    def __len__(self) -> int:
        return len(self.lines) + len(self.timed)


def read_rounds(stream: BinaryIO, limits: Limits, report: ImportReport | None) -> Iterator[Round]:
    """The good lines of a stream in rounds. Each bad line is counted in ``report`` (``None``: the
    check pass saw them already; they are left out again)."""
    problems = _Problems(report)
    check_entry, encode_parsed, scan, join = limits.check_entry, limits.encode_parsed, _scan_once, "".join
    caps = limits.capabilities
    # Limits.check_entry's and values.encode_parsed's fast paths, written out for the usual line:
    # ASCII names within the limits, a value the C encoder takes whole, too short to nest past the
    # depth limit or shorter than an out-of-range integer (else counted), no size limit. Anything
    # else takes those functions whole, so results and messages stay theirs.
    encoder = _encode_checked if limits.max_value_bytes is None and caps.max_value_bytes is None else None
    # no name limits (kv): no name is longer than its line, so the length checks always pass
    named = caps.max_scope_bytes is not None or caps.max_key_bytes is not None
    scope_limit = caps.max_scope_bytes if caps.max_scope_bytes is not None else MAX_LINE_BYTES
    key_limit = caps.max_key_bytes if caps.max_key_bytes is not None else MAX_LINE_BYTES
    max_depth = limits.max_depth
    long_number = _LONG_NUMBER.search
    rnd = Round()
    scopes, keys, datas, lines = rnd.scopes, rnd.keys, rnd.datas, rnd.lines
    for number, raw in _lines(stream):
        if raw is None:
            problems.add(number, f"line is longer than {MAX_LINE_BYTES} bytes")
            continue
        # parse_encoded's own fast path, written out: the usual line, as export writes it
        try:
            text = raw.decode("utf-8")
            record, end = scan(text, 0)
        except Exception:
            record = None
        if (
            type(record) is dict
            and len(record) == 3
            and type(scope := record.get("scope")) is str
            and type(key := record.get("key")) is str
            and "value" in record
            and (end == len(text) or text[end:].isspace())
        ):
            data = None
            if encoder is not None and scope.isascii() and key.isascii():
                try:
                    encoded = join(encoder(record["value"], 0))
                except ValueError:  # NaN or Infinity: encode_parsed names it
                    encoded = ""
                size = len(encoded)
                if (
                    size
                    and (size < 19 or long_number(encoded) is None)
                    and (size <= max_depth or encoded.count("[") + encoded.count("{") <= max_depth)
                    and (not named or (len(scope) <= scope_limit and len(key) <= key_limit))
                ):
                    try:
                        data = encoded.encode("utf-8")
                    except UnicodeEncodeError:  # a lone surrogate: encode_parsed names it
                        pass
            if data is None:
                try:
                    check_entry(scope, key)
                    data = encode_parsed(record["value"])
                except StateError as exc:
                    problems.add(number, str(exc))
                    continue
            scopes.append(scope)
            keys.append(key)
            datas.append(data)
            lines.append(number)
            if len(lines) < ROUND:
                continue
        else:
            parsed = parse_encoded(raw, limits)
            if parsed is None:
                continue
            if isinstance(parsed, str):
                problems.add(number, parsed)
                continue
            entry, data = parsed
            if entry.expires_at is not None:
                rnd.timed.append((number, entry, data))
            else:
                scopes.append(entry.scope)
                keys.append(entry.key)
                datas.append(data)
                lines.append(number)
            if len(rnd) < ROUND:
                continue
        yield rnd
        rnd = Round()
        scopes, keys, datas, lines = rnd.scopes, rnd.keys, rnd.datas, rnd.lines
    if len(rnd):
        yield rnd


class _Problems:
    def __init__(self, report: ImportReport | None) -> None:
        self.report = report

    def add(self, number: int, reason: str) -> None:
        report = self.report
        if report is not None:
            report.invalid += 1
            if len(report.problems) < MAX_REPORTED:
                report.problems.append(LineProblem(number, reason))


def _groups(rnd: Round) -> list[tuple[str, list[int], list[str]]]:
    if rnd.groups is None:
        places: dict[str, list[int]] = {}
        for i, scope in enumerate(rnd.scopes):
            got = places.get(scope)
            if got is None:
                places[scope] = [i]
            else:
                got.append(i)
        keys = rnd.keys
        rnd.groups = [(scope, at, [keys[i] for i in at]) for scope, at in places.items()]
    return rnd.groups


def _read_plan(groups: list[tuple[str, list[int], list[str]]]) -> Plan:
    found = []
    for scope, _, keys in groups:
        found.append((yield Call("read_present", (scope, keys))))
    return found, None


def present(store: StateStore, rnd: Round) -> dict[int, bytes]:
    """The stored bytes of the round's usual entries whose keys hold a value, by place."""
    groups = _groups(rnd)
    found: list[dict[str, bytes]] = store._run("get", _read_plan(groups))
    out: dict[int, bytes] = {}
    for (_, at, keys), held in zip(groups, found, strict=True):
        if held:
            for i, key in zip(at, keys, strict=True):
                raw = held.get(key)
                if raw is not None:
                    out[i] = raw
    return out


def differs(raw: bytes, data: bytes) -> bool:
    """Whether stored bytes hold another value than the checked bytes ``data``."""
    if raw == data:
        return False
    from .importing import _differs  # the general path's comparison (foreign bytes differ)

    return _differs(raw, decode_stored(data))


def _create_plan(limits: Limits, rows: list[tuple[str, str, bytes]]) -> Plan:
    created = yield Call("create_missing", (rows,))
    if not created or not (limits.listening is None or limits.listening()):
        return created, None
    events = [StateEvent("state:created", scope, key, None, decode_stored(data)) for scope, key, data in rows]
    return created, events


def check(store: StateStore, rnd: Round, conflicts: list[LineProblem]) -> int:
    """Under ``fail``: how many of the round's keys hold another value (the first few are listed
    in ``conflicts``)."""
    from .importing import _differing

    count = 0
    found = present(store, rnd) if rnd.lines else {}
    rnd.none_held = not found
    if rnd.none_held:
        rnd.groups = None  # the writes will not read: no need to keep it (about 45 bytes an entry)
    differing = [
        (rnd.lines[i], rnd.scopes[i], rnd.keys[i]) for i, raw in found.items() if differs(raw, rnd.datas[i])
    ]
    if rnd.timed:
        numbered = [(line, entry) for line, entry, _ in rnd.timed]
        differing += [
            (line, entry.scope, entry.key) for line, entry in _differing(store, numbered, checked=True)
        ]
    for line, scope, key in sorted(differing):
        count += 1
        if len(conflicts) < MAX_REPORTED:
            conflicts.append(
                LineProblem(line, f"scope {show(scope)} key {show(key)} already holds a different value")
            )
    return count


def write(store: StateStore, report: ImportReport, rnd: Round, on_conflict: OnConflict) -> None:
    """Write a round: its missing keys in one ``create_missing``, the rest the general way."""
    from .importing import CHUNK, _write_chunk

    found = {} if rnd.none_held or not rnd.lines else present(store, rnd)
    # a key that holds the same value is left as it is (the general path would read it and do so)
    held = [i for i in sorted(found) if differs(found[i], rnd.datas[i])]
    report.unchanged += len(found) - len(held)
    if len(found) < len(rnd.lines):
        scopes, keys, datas = rnd.scopes, rnd.keys, rnd.datas
        if found:
            fresh: Any = [i for i in range(len(rnd.lines)) if i not in found]
            rows = [(scopes[i], keys[i], datas[i]) for i in fresh]
        else:
            fresh, rows = range(len(rnd.lines)), list(zip(scopes, keys, datas, strict=True))
        if store._run("compare-and-set", _create_plan(store.limits, rows)):
            report.written += len(rows)
        else:  # a key created meanwhile, or one the file holds twice: each the general way
            held = sorted([*held, *fresh])
    general = [
        (rnd.lines[i], Entry(rnd.scopes[i], rnd.keys[i], decode_stored(rnd.datas[i])), rnd.datas[i])
        for i in held
    ]
    general += rnd.timed
    general.sort(key=lambda item: item[0])
    for at in range(0, len(general), CHUNK):
        part = general[at : at + CHUNK]
        lines: list[int | None] = [line for line, _, _ in part]
        _write_chunk(store, report, [e for _, e, _ in part], lines, on_conflict, [d for _, _, d in part])


def import_rounds(
    store: StateStore,
    path: str | os.PathLike[str],
    on_conflict: OnConflict,
    skip_invalid: bool,
    report: ImportReport,
) -> None:
    """:func:`~.importing.import_file` in big rounds (see the module's text); counts go to ``report``."""
    conflicts: list[LineProblem] = []
    conflict_count = 0
    kept: list[Round] | None = []
    size = 0
    with open(path, "rb") as stream:
        for rnd in read_rounds(stream, store.limits, report):
            if on_conflict == "fail":
                conflict_count += check(store, rnd, conflicts)
            if kept is not None:
                size += (
                    sum(map(len, rnd.datas))
                    + sum(map(len, rnd.keys))
                    + sum(map(len, rnd.scopes))
                    + _ENTRY_BYTES * len(rnd)
                    + sum(10 * len(d) for _, _, d in rnd.timed)
                )
                if size > KEPT_BYTES:  # too large to keep: the writes read the file again
                    kept = None
                else:
                    kept.append(rnd)
    if report.invalid and not skip_invalid:
        raise InvalidLinesError(report.problems, report.invalid)
    if conflict_count:
        raise ConflictsFoundError(conflicts, conflict_count)
    if kept is not None:
        for rnd in kept:
            write(store, report, rnd, on_conflict)
        return
    with open(path, "rb") as stream:
        for rnd in read_rounds(stream, store.limits, None):
            write(store, report, rnd, on_conflict)

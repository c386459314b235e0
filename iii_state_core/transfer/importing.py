"""Write entries into a store under a conflict policy; import a JSON Lines file in two passes."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Final, Literal, get_args

from ..batch import BatchItem, located, numbered_side_by_side, plans_side_by_side
from ..driver import RUN_MANY, run_sync
from ..errors import StateError, StoredValueError
from ..expiry import now_ms
from ..operations import Call, Limits, Plan, set_value
from ..results import CompareAndSetResult, SetResult, StateEvent
from ..store import StateStore
from ..swap import create_after_miss, create_only
from ..values import JSON, decode_stored, same_json
from . import rounds
from .errors import ConflictsFoundError, EntryConflictError, InvalidLinesError, LineProblem, show
from .jsonl import MAX_REPORTED, Entry, iter_encoded

#: Builds a named tuple from its fields without its Python-level ``__new__`` (one per entry).
_new: Any = tuple.__new__

OnConflict = Literal["fail", "skip", "overwrite"]
ON_CONFLICT: Final[tuple[str, ...]] = get_args(OnConflict)
Outcome = Literal["written", "unchanged", "skipped", "conflict", "expired"]


def check_policy(on_conflict: str) -> OnConflict:
    """:raises ValueError: unless ``on_conflict`` is ``fail``, ``skip`` or ``overwrite``."""
    if on_conflict not in ON_CONFLICT:
        raise ValueError(f"on_conflict must be one of {', '.join(ON_CONFLICT)}, got {on_conflict!r}")
    return on_conflict  # type: ignore[return-value]


def put_entry(store: StateStore, entry: Entry, on_conflict: OnConflict) -> Outcome:
    """Store one entry under the policy; safe against concurrent writers.

    ``skip`` and ``fail`` write "only if missing" (:func:`~iii_state_core.swap.create_only`), so a key another
    writer creates meanwhile is never overwritten. A key that already holds an equal value is
    ``unchanged`` under every policy (this is what makes re-running an import or a migration safe).

    An entry with a deadline (``expires_at``) is written with the time left to it, so it expires
    at the same instant; one already past it is not written (``expired``).

    :returns: ``written``, ``unchanged``, ``skipped`` (skip: the target kept its different value),
        ``conflict`` (fail: the target holds a different value; nothing was written) or
        ``expired`` (past its deadline; nothing was written).
    :raises StateError: when the store fails or refuses the value.
    """
    scope, key, value = entry
    expires_at = entry.expires_at
    ttl_ms = None
    if expires_at is not None:
        ttl_ms = expires_at - now_ms()
        if ttl_ms <= 0:
            return "expired"
    if on_conflict == "overwrite":
        old = store.set(scope, key, value, ttl_ms=ttl_ms).old_value
        # ``None`` is also what a missing key reports, so only a non-null equal value is "unchanged"
        return "unchanged" if old is not None and same_json(old, value) else "written"
    # not a wire function (the wire's compare-and-set would replace a stored null): run the plan
    plan = create_only(store.limits, scope, key, value, ttl_ms)
    result: CompareAndSetResult = store._run("compare-and-set", plan)
    if result.swapped:
        return "written"
    if same_json(result.current, value):
        return "unchanged"
    return "skipped" if on_conflict == "skip" else "conflict"


#: Entries written per ``state::batch`` round trip by import and migrate.
CHUNK: Final = 500


def _plan(store: StateStore, entry: Entry, on_conflict: OnConflict) -> tuple[str, Plan] | None:
    """The single write :func:`put_entry` makes for ``entry``, as a plan (``None``: expired)."""
    scope, key, value = entry
    ttl_ms = None
    if entry.expires_at is not None:
        ttl_ms = entry.expires_at - now_ms()
        if ttl_ms <= 0:
            return None
    if on_conflict == "overwrite":
        return "set", set_value(store.limits, scope, key, value, ttl_ms)
    return "compare-and-set", create_only(store.limits, scope, key, value, ttl_ms)


def put_entries(
    store: StateStore,
    entries: list[Entry],
    on_conflict: OnConflict,
    encoded: list[bytes] | None = None,
) -> list[Outcome]:
    """:func:`put_entry` for many entries in one ``state::batch``-style run (one round trip per
    round on adapters with ``run_many``); the same outcomes, in order.

    :param encoded: each value's bytes as ``store.limits.encode`` gave them (a caller that already
        checked the values passes them, so they are not encoded again).
    :raises StateError: the first entry the store failed or refused (the others were written).
    """
    if on_conflict != "overwrite" and store.limits.bytes_tokens:
        found: list[BatchItem | None] = store._run("batch", _create_many(store.limits, entries, encoded))
    else:
        planned = [(i, _plan(store, e, on_conflict)) for i, e in enumerate(entries)]
        runs = [(p[0], entries[i].scope, entries[i].key, p[1]) for i, p in planned if p is not None]
        items: list[BatchItem] = store._run("batch", plans_side_by_side(runs)) if runs else []
        done = iter(items)
        found = [None if p is None else next(done) for _, p in planned]
    if found.count(_CREATED_ITEM) == len(entries):
        return ["written"] * len(entries)
    outcomes: list[Outcome] = []
    for item, entry in zip(found, entries, strict=True):
        if item is _CREATED_ITEM:  # the usual import: a missing key, written
            outcomes.append("written")
            continue
        if item is None:
            outcomes.append("expired")
            continue
        if item.error is not None:
            raise item.error
        outcomes.append(_outcome(item.result, entry.value, on_conflict))
    return outcomes


_CREATED: Final = CompareAndSetResult(True)
#: The item of every entry written at once (a named tuple is never changed: one serves them all).
_CREATED_ITEM: Final = BatchItem("compare-and-set", _CREATED)


def _create_many(limits: Limits, entries: list[Entry], encoded: list[bytes] | None) -> Plan:
    """:func:`~iii_state_core.swap.create_only` of each entry (``None`` for an expired one), its
    first call, the write "only if missing", for every entry in one round; an entry whose key is
    there goes on as its plan (read, maybe write again), side by side with the others'.

    Results, errors (numbered among the entries not expired) and events are the plans' own.
    """
    found: list[BatchItem | None] = [None] * len(entries)
    calls: list[Call] = []
    sent: list[tuple[int, int]] = []  # (place in entries, number among the live ones)
    if encoded is not None and all(e.expires_at is None for e in entries):
        # checked with these limits as their lines were read, and no deadline: nothing to refuse
        pairs = zip(entries, encoded, strict=True)
        calls = [_new(Call, ("write_if", (e[0], e[1], data, None))) for e, data in pairs]
        sent = [(i, i) for i in range(len(entries))]
    else:
        _checked_calls(limits, entries, encoded, found, calls, sent)
    answers = (yield Call(RUN_MANY, (calls, ["compare-and-set"] * len(calls)))) if calls else []
    wanted = limits.listening is None or limits.listening()  # nobody listening: build no event
    if not wanted and len(sent) == len(entries) and answers.count(True) == len(answers):
        return [_CREATED_ITEM] * len(entries), []  # the usual round: every key was missing
    events: dict[int, StateEvent] = {}
    rest: list[tuple[int, str, str, str, Plan]] = []
    places: dict[int, int] = {}
    for (i, n), call, answer in zip(sent, calls, answers, strict=True):
        if answer is True:
            found[i] = _CREATED_ITEM
            if wanted:
                events[n] = StateEvent("state:created", call.args[0], call.args[1], None, entries[i].value)
            continue
        scope, key, data = call.args[0], call.args[1], call.args[2]
        if isinstance(answer, StateError):
            found[i] = BatchItem("compare-and-set", error=located(n, "compare-and-set", answer))
        elif answer:
            found[i] = _CREATED_ITEM
            events[n] = StateEvent("state:created", scope, key, None, entries[i].value)
        else:  # the key is there (or was): its plan reads it
            places[n] = i
            plan = create_after_miss(scope, key, entries[i].value, data, call.args[4:])
            rest.append((n, "compare-and-set", scope, key, plan))
    if rest:
        items, more = yield from numbered_side_by_side(rest)
        for (n, *_), item in zip(rest, items, strict=True):
            found[places[n]] = item
        events.update(more)
    return found, [events[n] for n in sorted(events)]


def _checked_calls(
    limits: Limits,
    entries: list[Entry],
    encoded: list[bytes] | None,
    found: list[BatchItem | None],
    calls: list[Call],
    sent: list[tuple[int, int]],
) -> None:
    """:func:`_create_many`'s calls one entry at a time: deadlines turned into what is left of
    them (an expired entry is left out), entries checked unless ``encoded``; a refused one gets
    its error item in ``found``."""
    numbered = 0
    for i, entry in enumerate(entries):
        ttl_ms = None
        if entry.expires_at is not None:
            ttl_ms = entry.expires_at - now_ms()
            if ttl_ms <= 0:
                continue
        numbered += 1
        scope, key, value = entry
        try:
            if encoded is None:
                limits.check_entry(scope, key)
                data = limits.encode(value)
            else:  # checked with these limits as its line was read
                data = encoded[i]
            expires_at = limits.expires_at("compare-and-set", ttl_ms)
        except StateError as exc:
            found[i] = BatchItem("compare-and-set", error=located(numbered - 1, "compare-and-set", exc))
            continue
        calls.append(Call("write_if", (scope, key, data, None, *expires_at)))
        sent.append((i, numbered - 1))


def _outcome(result: object, value: JSON, on_conflict: OnConflict) -> Outcome:
    if isinstance(result, SetResult):
        old = result.old_value
        return "unchanged" if old is not None and same_json(old, value) else "written"
    assert isinstance(result, CompareAndSetResult)
    if result.swapped:
        return "written"
    if same_json(result.current, value):
        return "unchanged"
    return "skipped" if on_conflict == "skip" else "conflict"


@dataclass
class ImportReport:
    """Counts of what an import did (``invalid``: bad lines skipped under ``skip_invalid``;
    ``expired``: entries already past their deadline, not written)."""

    written: int = 0
    unchanged: int = 0
    skipped: int = 0
    invalid: int = 0
    expired: int = 0
    problems: list[LineProblem] = field(default_factory=list)

    def count(self, outcome: Outcome) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def to_dict(self) -> dict[str, int]:
        return {"written": self.written, "unchanged": self.unchanged, "skipped": self.skipped,
                "invalid": self.invalid, "expired": self.expired}  # fmt: skip


def import_entries(
    store: StateStore, entries: Iterable[Entry], on_conflict: OnConflict = "fail"
) -> ImportReport:
    """Write entries in batches of :data:`CHUNK` (the iterable is consumed a chunk at a time).

    :param on_conflict: what to do with a key the store already holds with a different value:
        ``fail`` stops there, ``skip`` keeps the stored value, ``overwrite`` replaces it.
    :raises EntryConflictError: under ``fail``; entries before it stay written.
    :raises StateError: when the store fails or refuses a value.
    """
    check_policy(on_conflict)
    report = ImportReport()
    chunk: list[Entry] = []
    for entry in [*entries, None]:
        if entry is not None:
            chunk.append(entry)
        if chunk and (entry is None or len(chunk) == CHUNK):
            _write_chunk(store, report, chunk, [None] * len(chunk), on_conflict)
            chunk = []
    return report


def _write_chunk(
    store: StateStore,
    report: ImportReport,
    chunk: list[Entry],
    lines: list[int | None],
    on_conflict: OnConflict,
    encoded: list[bytes] | None = None,
) -> None:
    """Write a chunk in one batch (see :func:`put_until_conflict`) and count it.

    :param encoded: the values' bytes, when a check pass read these keys moments ago (the file
        import): no second read round, no second encoding.
    :raises EntryConflictError: at the first key holding a different value (under ``fail``).
    """
    outcomes = put_until_conflict(store, chunk, on_conflict, encoded)
    if outcomes.count("written") == len(chunk):  # the usual chunk: every key was missing
        report.written += len(chunk)
        return
    for entry, outcome, line in zip(chunk, outcomes, lines, strict=False):
        if outcome == "conflict":
            raise EntryConflictError(entry.scope, entry.key, report.written, line)
        report.count(outcome)


def put_until_conflict(
    store: StateStore, chunk: list[Entry], on_conflict: OnConflict, encoded: list[bytes] | None = None
) -> list[Outcome]:
    """:func:`put_entries` for a chunk; under ``fail`` it first reads the chunk (one batch) and
    writes only up to the first key holding a different value, so nothing after a conflict is
    written (a key another writer creates meanwhile can still conflict). The outcomes end at
    the first ``conflict``.

    :param encoded: the values' bytes from a check pass that read these keys already (the file
        import's first pass): the writes go without reading again, still "only if missing".
    """
    checked = encoded is not None
    stop = _first_differing(store, chunk) if on_conflict == "fail" and not checked else None
    part = chunk if stop is None else chunk[:stop]
    outcomes = put_entries(store, part, on_conflict, encoded)
    if "conflict" in outcomes:
        return outcomes[: outcomes.index("conflict") + 1]
    return outcomes if stop is None else [*outcomes, "conflict"]


def _first_differing(store: StateStore, chunk: list[Entry]) -> int | None:
    """The index of the first entry whose key holds another value (read in one batch)."""
    found = _differing(store, list(enumerate(chunk)))
    return found[0][0] if found else None


def _differing(
    store: StateStore, numbered: list[tuple[int, Entry]], checked: bool = False
) -> list[tuple[int, Entry]]:
    """The entries (with their numbers) whose key holds another value, read in one round; an entry
    past its deadline never differs (it will not be written).

    :param checked: the scopes and keys were checked with ``store.limits`` already (lines read).
    """
    raws = store._run("get", _read_many(store.limits, [e for _, e in numbered], checked))
    pairs = zip(numbered, raws, strict=True)
    return [(n, e) for (n, e), raw in pairs if raw is not None and not _past(e) and _differs(raw, e.value)]


def _read_many(limits: Limits, entries: list[Entry], checked: bool = False) -> Plan:
    """The stored bytes of each entry, in one ``RUN_MANY`` round.

    :raises StateError: the first read that failed (wrapped and redacted as for ``get``).
    """
    if not checked:
        for e in entries:
            limits.check_entry(e.scope, e.key)
    calls = [_new(Call, ("read", (e[0], e[1]))) for e in entries]
    raws = yield Call(RUN_MANY, (calls, ["get"] * len(entries)))
    for raw in raws:
        if isinstance(raw, StateError):
            raise raw
    return raws, None


def _read_raw(limits: Limits, scope: str, key: str) -> Plan:
    limits.check_entry(scope, key)
    raw = yield Call("read", (scope, key))
    return raw, None


def differs_from_stored(store: StateStore, entry: Entry) -> bool:
    """Whether the store holds this key with a value other than the entry's.

    ``get`` cannot tell a missing key from a stored ``null``, so this reads the raw bytes through
    the core's driver (errors are wrapped and redacted as for ``get``).
    """
    raw: bytes | None = run_sync(_read_raw(store.limits, entry.scope, entry.key), store.adapter, "get")[0]
    return _differs(raw, entry.value)


def _differs(raw: bytes | None, value: JSON) -> bool:
    if raw is None:
        return False
    try:
        stored: JSON = decode_stored(raw)
    except StoredValueError:  # another program's bytes: not the entry's value, whatever it is
        return True
    return not same_json(stored, value)


def _past(entry: Entry) -> bool:
    """Whether the entry's deadline has passed (it will not be written, so it cannot conflict)."""
    return entry.expires_at is not None and entry.expires_at <= now_ms()


def import_file(
    store: StateStore,
    path: str | os.PathLike[str],
    on_conflict: OnConflict = "fail",
    *,
    skip_invalid: bool = False,
) -> ImportReport:
    """Import a JSON Lines file: check every line first, then write.

    The first pass checks each line (JSON object with string ``scope``/``key``, a value the
    target accepts) and, under ``fail``, that no key already holds a different value. Nothing is
    written unless it passes. The second pass writes. Both read one line at a time.

    :param skip_invalid: write the good lines even when some are bad (their count is reported).
    :raises InvalidLinesError: bad lines and not ``skip_invalid``; nothing written.
    :raises ConflictsFoundError: under ``fail``, keys that hold different values; nothing written.
    :raises EntryConflictError: under ``fail``, a key another writer created between the passes.
    :raises OSError: when the file cannot be read.
    """
    check_policy(on_conflict)
    report = ImportReport()
    if rounds.available(store.adapter):  # an in-process store: big rounds, fewer objects
        rounds.import_rounds(store, path, on_conflict, skip_invalid, report)
        return report
    conflicts: list[LineProblem] = []
    conflict_count = 0
    checking: list[tuple[int, Entry]] = []  # under fail: read in batches of CHUNK
    kept = _Kept()
    with open(path, "rb") as stream:
        for number, item in chain(iter_encoded(stream, store.limits), [(0, None)]):
            if isinstance(item, LineProblem):
                report.invalid += 1
                if len(report.problems) < MAX_REPORTED:
                    report.problems.append(item)
            elif item is not None:
                kept.add(number, item)
                if on_conflict == "fail" and (item[0].expires_at is None or not _past(item[0])):
                    checking.append((number, item[0]))
            if checking and (item is None or len(checking) == CHUNK):
                for number_, entry in _differing(store, checking, checked=True):
                    conflict_count += 1
                    if len(conflicts) < MAX_REPORTED:
                        where = f"scope {show(entry.scope)} key {show(entry.key)}"
                        conflicts.append(LineProblem(number_, f"{where} already holds a different value"))
                checking = []
    if report.invalid and not skip_invalid:
        raise InvalidLinesError(report.problems, report.invalid)
    if conflict_count:
        raise ConflictsFoundError(conflicts, conflict_count)
    if kept.lines is not None:  # the checked entries are all in memory: no second read or parse
        for at in range(0, len(kept.lines), CHUNK):
            chunk = kept.entries[at : at + CHUNK]
            lines: list[int | None] = list(kept.lines[at : at + CHUNK])
            _write_chunk(store, report, chunk, lines, on_conflict, kept.encoded[at : at + CHUNK])
        return report
    with open(path, "rb") as stream:
        chunk = []
        encoded: list[bytes] = []
        lines = []
        ended = False
        lines_in = iter_encoded(stream, store.limits)
        while not ended:
            number, got = next(lines_in, None) or (0, None)
            ended = got is None
            if isinstance(got, LineProblem):
                continue
            if got is not None:
                chunk.append(got[0])
                encoded.append(got[1])
                lines.append(number)
            if chunk and (ended or len(chunk) == CHUNK):
                _write_chunk(store, report, chunk, lines, on_conflict, encoded)
                chunk, encoded, lines = [], [], []
    return report


#: How much memory the first pass of :func:`import_file` may spend keeping its checked entries for
#: the second (estimated per entry, see :data:`_ENTRY_BYTES`). A larger file is read and parsed
#: again instead, so memory stays bounded whatever the file's size.
KEPT_BYTES: Final = 128 * 1024 * 1024
#: Per entry: Python's tuples, string headers and list slots, plus about 10 bytes of objects per
#: byte of the value's JSON (a small dict of short strings takes that much; a long string less).
#: Measured: 100,000 entries of a 39-byte value kept cost 78 MB (about 790 bytes each).
_ENTRY_BYTES: Final = 400


class _Kept:
    """The good entries of the first pass, while they fit in :data:`KEPT_BYTES` (then none)."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.encoded: list[bytes] = []
        self.lines: list[int] | None = []
        self.size = 0

    def add(self, number: int, item: tuple[Entry, bytes]) -> None:
        if self.lines is None:
            return
        entry, data = item
        self.size += len(data) * 10 + len(entry[0]) + len(entry[1]) + _ENTRY_BYTES
        if self.size > KEPT_BYTES:  # too large to keep: the second pass reads the file again
            self.entries, self.encoded, self.lines = [], [], None
            return
        self.entries.append(entry)
        self.encoded.append(data)
        self.lines.append(number)

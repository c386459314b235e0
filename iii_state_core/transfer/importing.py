"""Write entries into a store under a conflict policy; import a JSON Lines file in two passes."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from ..driver import run_sync
from ..errors import StoredValueError
from ..expiry import now_ms
from ..operations import Call, Limits, Plan
from ..results import CompareAndSetResult
from ..store import StateStore
from ..swap import create_only
from ..values import JSON, decode_stored, same_json
from .errors import ConflictsFoundError, EntryConflictError, InvalidLinesError, LineProblem, show
from .jsonl import MAX_REPORTED, Entry, iter_jsonl

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
    """Write entries one by one (the iterable is consumed lazily).

    :param on_conflict: what to do with a key the store already holds with a different value:
        ``fail`` stops there, ``skip`` keeps the stored value, ``overwrite`` replaces it.
    :raises EntryConflictError: under ``fail``; entries before it stay written.
    :raises StateError: when the store fails or refuses a value.
    """
    check_policy(on_conflict)
    report = ImportReport()
    for entry in entries:
        outcome = put_entry(store, entry, on_conflict)
        if outcome == "conflict":
            raise EntryConflictError(entry.scope, entry.key, report.written)
        report.count(outcome)
    return report


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
    if raw is None:
        return False
    try:
        stored: JSON = decode_stored(raw)
    except StoredValueError:  # another program's bytes: not the entry's value, whatever it is
        return True
    return not same_json(stored, entry.value)


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
    conflicts: list[LineProblem] = []
    conflict_count = 0
    with open(path, "rb") as stream:
        for number, item in iter_jsonl(stream, store.limits):
            if isinstance(item, LineProblem):
                report.invalid += 1
                if len(report.problems) < MAX_REPORTED:
                    report.problems.append(item)
            elif on_conflict == "fail" and not _past(item) and differs_from_stored(store, item):
                conflict_count += 1
                if len(conflicts) < MAX_REPORTED:
                    reason = f"scope {show(item.scope)} key {show(item.key)} already holds a different value"
                    conflicts.append(LineProblem(number, reason))
    if report.invalid and not skip_invalid:
        raise InvalidLinesError(report.problems, report.invalid)
    if conflict_count:
        raise ConflictsFoundError(conflicts, conflict_count)
    with open(path, "rb") as stream:
        for number, item in iter_jsonl(stream, store.limits):
            if isinstance(item, LineProblem):
                continue
            outcome = put_entry(store, item, on_conflict)
            if outcome == "conflict":
                raise EntryConflictError(item.scope, item.key, report.written, number)
            report.count(outcome)
    return report


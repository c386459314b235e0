"""Entry deadlines for moving state (contract § Expiry): read beside each listed entry."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..batch import BatchItem, plans_side_by_side
from ..driver import run_sync
from ..operations import Call, Limits, Plan
from ..store import StateStore
from ..values import JSON
from .jsonl import Entry


def _read_expiry(limits: Limits, scope: str, key: str) -> Plan:
    limits.check_entry(scope, key)
    found = yield Call("read_expiry", (scope, key))
    return found, None


def deadline_of(store: StateStore, scope: str, key: str) -> tuple[bool, int | None]:
    """``(present, absolute deadline or None)`` of an entry now; an adapter without ``ttl`` has
    no deadlines, so it is ``(True, None)`` without a call.

    :raises StateError: when the store fails (wrapped and redacted as for ``state::ttl``).
    """
    if store.capabilities.ttl == "none":
        return True, None
    found: tuple[bool, int | None] = run_sync(_read_expiry(store.limits, scope, key), store.adapter, "ttl")[0]
    return found


def deadlines_of(store: StateStore, scope: str, keys: list[str]) -> list[tuple[bool, int | None]]:
    """:func:`deadline_of` for many keys of one scope, in one batch round.

    :raises StateError: the first read that failed.
    """
    if store.capabilities.ttl == "none":
        return [(True, None)] * len(keys)
    runs = [("ttl", scope, key, _read_expiry(store.limits, scope, key)) for key in keys]
    items: list[BatchItem] = store._run("batch", plans_side_by_side(runs))
    for item in items:
        if item.error is not None:
            raise item.error
    return [item.result for item in items]


def with_deadlines(store: StateStore, scope: str, entries: Iterable[tuple[str, JSON]]) -> Iterator[Entry]:
    """The listed entries with their deadlines; one that expired (or was deleted) since it was
    listed is left out, as a listing made a moment later would."""
    for key, value in entries:
        present, deadline = deadline_of(store, scope, key)
        if present:
            yield Entry(scope, key, value, deadline)

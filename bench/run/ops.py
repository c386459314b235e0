"""The standard table: get, set, delete, update (1 and 10 ops), compare_and_set, list_entries (a
first page, and the next page of the same walk)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from iii_state_core import StateStore

from . import workload as w
from .measuring import Budget, Op, Pair, alternate, alternate_consuming
from .raw import RawSide

LABELS = {
    "get": "get",
    "set": "set",
    "delete": "delete",
    "update1": "update (1 op)",
    "update10": "update (10 ops)",
    "compare_and_set": "compare-and-set",
    "list_entries": f"list_entries (page of {w.PAGE})",
    "list_entries_next": f"list_entries (next page of {w.PAGE})",
}
#: What the next-page row is, in the report.
NEXT_PAGE_NOTE = (
    "ours: the second page of the same walk, through its cursor, so no `total` to count (the "
    "first page's row beside this one is what counting `total` costs)"
)


class Ours:
    """The same workload through the iii-state store."""

    def __init__(self, store: StateStore, scope: str) -> None:
        self.store, self.scope, self.list_scope = store, scope, f"{scope}-list"
        self._second: str | None = None

    def populate(self) -> None:
        for i in range(w.KEYS):
            self.store.set(self.scope, w.key(i), w.VALUE)
        for i in range(w.LISTED):
            self.store.set(self.list_scope, f"e{i:04d}", w.VALUE)
        self.store.set(self.scope, "cas", {"v": 0})

    def fill_deletes(self, start: int, count: int) -> None:
        for j in range(start, start + count):
            self.store.set(self.scope, f"d{j}", w.VALUE)

    def get(self, i: int) -> Any:
        return self.store.get(self.scope, w.key(i))

    def set(self, i: int) -> Any:
        return self.store.set(self.scope, w.key(i), w.VALUE)

    def delete(self, j: int) -> Any:
        return self.store.delete(self.scope, f"d{j}")

    def update1(self, i: int) -> Any:
        return self.store.update(self.scope, w.key(i), w.INCREMENT)

    def update10(self, i: int) -> Any:
        return self.store.update(self.scope, w.key(i), w.TEN_OPS)

    def compare_and_set(self, n: int) -> bool:
        return self.store.compare_and_set(self.scope, "cas", {"v": n}, {"v": n + 1}).swapped

    def list_entries(self) -> Any:
        return self.store.list_entries(self.list_scope, None, w.PAGE)

    def list_entries_next(self) -> Any:
        # cursors are stateless: the same one serves the same page again
        if self._second is None:
            self._second = self.store.list_entries(self.list_scope, None, w.PAGE).next_cursor
        return self.store.list_entries(self.list_scope, self._second, w.PAGE)


def _cas_op(side: Ours | RawSide) -> Op:
    """Each call expects what the previous one stored, so every compare-and-set applies."""
    state = {"n": 0}

    def op(_i: int) -> bool:
        applied = side.compare_and_set(state["n"])
        if not applied:
            raise AssertionError(f"compare_and_set did not apply at n={state['n']}")
        state["n"] += 1
        return applied

    return op


def _page_op(page: Callable[[], Any]) -> Op:
    return lambda _i: page()


def _delete_op(side: Ours | RawSide, misses: list[int]) -> Op:
    def op(j: int) -> Any:
        old = side.delete(j)
        if old is None:
            misses[0] += 1
        return old

    return op


def standard_pairs(ours: Ours, raw: RawSide, budget: Budget) -> tuple[list[Pair], dict[str, str]]:
    """Populate both sides and measure every operation of the standard table.

    :returns: the pairs in table order and notes (what the raw side does, anything odd).
    """
    ours.populate()
    raw.populate()
    notes: dict[str, str] = {}
    pairs: list[Pair] = []
    for operation in LABELS:
        has_raw = operation in raw.supported
        if operation == "delete":
            our_misses, raw_misses = [0], [0]
            pair = alternate_consuming(
                LABELS[operation],
                (ours.fill_deletes, _delete_op(ours, our_misses)),
                (raw.fill_deletes, _delete_op(raw, raw_misses)) if has_raw else None,
                budget,
            )
            if our_misses[0] or raw_misses[0]:
                notes[LABELS[operation]] = (
                    f"{our_misses[0]} of ours and {raw_misses[0]} raw deletes found no entry (a bug in "
                    "the benchmark's filling)"
                )
        elif operation == "compare_and_set":
            pair = alternate(LABELS[operation], _cas_op(ours), _cas_op(raw) if has_raw else None, budget)
        elif operation in ("list_entries", "list_entries_next"):
            # the raw side's page has no total: the same raw page beside both of ours
            pair = alternate(
                LABELS[operation],
                _page_op(ours.list_entries if operation == "list_entries" else ours.list_entries_next),
                _page_op(raw.list_entries) if "list_entries" in raw.supported else None,
                budget,
            )
        else:
            pair = alternate(
                LABELS[operation],
                getattr(ours, operation),
                getattr(raw, operation) if has_raw else None,
                budget,
            )
        pairs.append(pair)
    return pairs, notes


def raw_notes(raw: RawSide) -> dict[str, str]:
    """What the raw side does per operation (and which have no raw equivalent), for the report."""
    notes = {}
    for operation, label in LABELS.items():
        if operation == "list_entries_next":
            raw_side = "; raw: as the first page's" if "list_entries" in raw.supported else ""
            notes[label] = NEXT_PAGE_NOTE + raw_side
        elif operation not in raw.supported:
            notes[label] = "no raw equivalent (the backend cannot do it by itself)"
        elif operation in raw.described:
            notes[label] = f"raw: {raw.described[operation]}"
    return notes

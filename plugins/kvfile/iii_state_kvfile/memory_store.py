"""``store_method: in_memory``: a thread-safe dict, gone when the process ends."""

from __future__ import annotations

import heapq
import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Sequence
from typing import Any

from iii_state_core import Adapter, Capabilities
from iii_state_core.adapter import Expired, Page, PlannedWrite, Token
from iii_state_core.expiry import KEEP, ExpiresAt, now_ms

from . import cursors

#: Expired entries an in-memory store keeps for ``take_expired``; beyond it the oldest are dropped
#: (a store without expiry events would otherwise hold every expired value for ever).
MAX_KEPT_EXPIRED = 100_000


#: The primitives a batch round runs under one lock, and their unlocked forms.
_ROUND = {name: f"_{name}_in" for name in ("read", "read_versioned", "write", "remove", "write_if")}


class KvMemoryStore(Adapter):
    name = "kv"
    distribution = "iii-state-kvfile"
    capabilities = Capabilities(
        durable=False,
        shared=False,
        atomic_update="native",
        ordered_listing=True,
        listing_cost="list_entries O(log n + page) per page (a sorted key list per scope)",
        ttl="emulated",
        expiry_event_delay_ms=500,
        transactions=True,
    )

    def __init__(self, config: Any = None) -> None:
        self._scopes: dict[str, dict[str, bytes]] = {}
        # Each scope's keys, kept sorted so a page is a bisect and a slice, not a sort.
        self._sorted: dict[str, list[str]] = {}
        # Deadlines of the entries that have one, and a heap of (when, scope, key) to drop them
        # in order. ``_queued`` holds each entry's one current heap item's ``when``, never after
        # its deadline; other heap items of the entry are stale and skipped. A deadline moved
        # later keeps its item (rewriting an entry with a TTL pushes nothing): when the item
        # comes due early, ``_purge`` queues it again at the deadline.
        self._deadlines: dict[tuple[str, str], int] = {}
        self._queued: dict[tuple[str, str], int] = {}
        self._heap: list[tuple[int, str, str]] = []
        # Entries dropped at their deadline, oldest first, until ``take_expired`` takes them.
        self._expired: list[Expired] = []
        self._lock = threading.Lock()

    def describe(self) -> str:
        return "kv (in_memory)"

    def _put(self, scope: str, key: str, data: bytes, expires_at: ExpiresAt) -> bytes | None:
        entries = self._scopes.setdefault(scope, {})
        old = entries.get(key)
        if old is None:
            insort(self._sorted.setdefault(scope, []), key)
        entries[key] = data
        # no call when there is no deadline to set or clear (the usual write without a TTL)
        if expires_at is not KEEP and (expires_at is not None or self._deadlines):
            self._set_deadline(scope, key, expires_at)  # type: ignore[arg-type]
        return old

    def _set_deadline(self, scope: str, key: str, expires_at: int | None) -> None:
        entry = (scope, key)
        if expires_at is None:
            self._deadlines.pop(entry, None)
            return
        self._deadlines[entry] = expires_at
        queued = self._queued.get(entry)
        if queued is None or queued > expires_at:
            self._queue(entry, expires_at)

    def _queue(self, entry: tuple[str, str], when: int) -> None:
        self._queued[entry] = when
        heapq.heappush(self._heap, (when, *entry))
        if len(self._heap) > 2 * len(self._deadlines) + 64:
            # Moving deadlines earlier, or dropping entries, leaves heap items behind; rebuild
            # from the live deadlines so the heap does not grow without bound.
            self._heap = [(d, s, k) for (s, k), d in self._deadlines.items()]
            heapq.heapify(self._heap)
            self._queued = self._deadlines.copy()

    def _drop(self, scope: str, key: str, *, keep_empty_scope: bool = False) -> bytes | None:
        entries = self._scopes.get(scope)
        if entries is None or key not in entries:
            return None
        old = entries.pop(key)
        self._deadlines.pop((scope, key), None)
        keys = self._sorted[scope]
        del keys[bisect_left(keys, key)]
        if not entries and not keep_empty_scope:
            del self._scopes[scope], self._sorted[scope]
        return old

    def _purge(self) -> None:
        """Drop every entry past its deadline (under the lock), keeping them for ``take_expired``.

        Afterwards no entry left has a deadline at or before the clock reading it made (each has a
        heap item no later than its deadline), so a write that follows needs no check of its own.
        """
        heap = self._heap
        if not heap:  # nothing has a deadline: skip the clock (this runs before every write)
            return
        now = now_ms()
        while heap and heap[0][0] <= now:
            when, scope, key = heapq.heappop(heap)
            entry = (scope, key)
            if self._queued.get(entry) != when:
                continue  # stale: the entry has a newer item
            del self._queued[entry]
            deadline = self._deadlines.get(entry)
            if deadline is None:
                continue  # the entry lost its deadline (or is gone) since
            if deadline <= now:
                self._expired.append((scope, key, self._scopes[scope][key], deadline))
                self._drop(scope, key)
            else:  # the deadline moved later since this item was queued
                self._queue(entry, deadline)
                heap = self._heap  # the queueing may have rebuilt it
        if len(self._expired) > MAX_KEPT_EXPIRED:
            # nobody takes them (no sweeper on this store): keep memory bounded, oldest go first
            del self._expired[: len(self._expired) - MAX_KEPT_EXPIRED]

    def take_expired(self, limit: int) -> list[Expired]:
        with self._lock:
            self._purge()
            taken, self._expired = self._expired[:limit], self._expired[limit:]
        return taken

    def _live(self, scope: str, key: str) -> bytes | None:
        """The entry's bytes, dropping it first if it expired (under the lock): a write that
        follows sees a missing key, with no deadline left to keep."""
        if self._deadlines:
            deadline = self._deadlines.get((scope, key))
            if deadline is not None and deadline <= now_ms():
                self._expired.append((scope, key, self._scopes[scope][key], deadline))
                self._drop(scope, key)
        entries = self._scopes.get(scope)
        return None if entries is None else entries.get(key)

    def read(self, scope: str, key: str) -> bytes | None:
        entries = self._scopes.get(scope)
        if entries is None:
            return None
        data = entries.get(key)
        if data is not None and self._deadlines:
            deadline = self._deadlines.get((scope, key))
            if deadline is not None and deadline <= now_ms():
                return None
        return data

    def write(self, scope: str, key: str, data: bytes, expires_at: int | None = None) -> bytes | None:
        with self._lock:
            if self._heap:  # drops this entry too if it expired: the write sees it missing
                self._purge()
            return self._put(scope, key, data, expires_at)

    def remove(self, scope: str, key: str) -> bytes | None:
        with self._lock:
            self._purge()
            self._live(scope, key)
            return self._drop(scope, key)

    def write_if(self, scope: str, key: str, data: bytes, token: Token, expires_at: ExpiresAt = KEEP) -> bool:
        with self._lock:
            if self._heap:  # compare-and-set's hot path: no calls for deadlines nothing has
                self._purge()
            if self._deadlines:
                current = self._live(scope, key)
            else:
                entries = self._scopes.get(scope)
                current = None if entries is None else entries.get(key)
            if current != token:
                return False
            self._put(scope, key, data, expires_at)
            return True

    def run_many(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """A batch round under one lock, each call as its primitive alone (only the primitives a
        plain round sends; a round with any other goes one by one)."""
        if not all(name in _ROUND for name, _ in calls):
            return super().run_many(calls)
        out: list[Any] = []
        with self._lock:
            self._purge()  # nothing left is past its deadline: a plain round needs no per-call walk
            bulk = self._bulk_in(calls)
            if bulk is not None:
                return bulk
            for name, args in calls:
                try:
                    out.append(getattr(self, _ROUND[name])(*args))
                except Exception as exc:
                    out.append(exc)
        return out

    def _bulk_in(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any] | None:
        """A round of only reads, or only writes without a deadline of distinct entries, in one scope
        (under the lock, just after :meth:`_purge`, so no entry is past its deadline: the round reads
        and writes at that clock reading): its answers as :meth:`_read_in` and :meth:`_write_in` give
        them, with one dict look-up per call instead of three method calls. ``None``: not such a
        round."""
        if not calls:
            return None
        first = calls[0]
        name, scope = first[0], first[1][0]
        if name not in ("read", "write") or any(c[0] != name or c[1][0] != scope for c in calls):
            return None
        if name == "read":
            entries = self._scopes.get(scope)
            return [None] * len(calls) if entries is None else [entries.get(c[1][1]) for c in calls]
        if any(len(c[1]) != 3 for c in calls):  # a deadline to set
            return None
        keys = [c[1][1] for c in calls]
        if len(set(keys)) != len(keys):
            return None  # an entry written twice: in order, one by one
        entries = self._scopes.setdefault(scope, {})
        old = list(map(entries.get, keys))
        if None in old:  # new keys join the scope's sorted list, as _put adds them
            listed = self._sorted.setdefault(scope, [])
            for key, was in zip(keys, old, strict=True):
                if was is None:
                    insort(listed, key)
        entries.update(zip(keys, [c[1][2] for c in calls], strict=True))
        if self._deadlines:  # a write without a deadline clears the entry's, as _put does
            for key in keys:
                self._set_deadline(scope, key, None)
        return old

    def _read_in(self, scope: str, key: str) -> bytes | None:
        return self._live(scope, key)

    def _read_versioned_in(self, scope: str, key: str) -> tuple[bytes | None, Token]:
        raw = self._live(scope, key)
        return raw, raw

    def _write_in(self, scope: str, key: str, data: bytes, expires_at: int | None = None) -> bytes | None:
        self._live(scope, key)
        return self._put(scope, key, data, expires_at)

    def _remove_in(self, scope: str, key: str) -> bytes | None:
        self._live(scope, key)
        return self._drop(scope, key)

    def _write_if_in(
        self, scope: str, key: str, data: bytes, token: Token, expires_at: ExpiresAt = KEEP
    ) -> bool:
        if self._live(scope, key) != token:
            return False
        self._put(scope, key, data, expires_at)
        return True

    def write_many_if(
        self, checks: Sequence[tuple[str, str, Token]], writes: Sequence[PlannedWrite]
    ) -> bool:
        with self._lock:
            self._purge()
            if any(self._live(scope, key) != token for scope, key, token in checks):
                return False
            for scope, key, data, expires_at in writes:
                if data is None:
                    self._drop(scope, key)
                else:
                    self._put(scope, key, data, expires_at)
            return True

    def modify_many(
        self,
        entries: Sequence[tuple[str, str]],
        change: Callable[[list[bytes | None]], Sequence[PlannedWrite] | None],
    ) -> bool:
        with self._lock:
            self._purge()
            if self._deadlines:
                live = [self._live(scope, key) for scope, key in entries]
            else:  # nothing can expire: each entry is one look-up
                scopes = self._scopes
                live = [None if (held := scopes.get(s)) is None else held.get(k) for s, k in entries]
            writes = change(live)
            for scope, key, data, expires_at in writes or ():
                if data is None:
                    self._drop(scope, key)
                elif expires_at is None and not self._deadlines:  # _put, with no deadline to clear
                    held = self._scopes.setdefault(scope, {})
                    if key not in held:
                        insort(self._sorted.setdefault(scope, []), key)
                    held[key] = data
                else:
                    self._put(scope, key, data, expires_at)
            return True

    def modify(
        self, scope: str, key: str, change: Callable[[bytes | None], bytes], expires_at: ExpiresAt = KEEP
    ) -> tuple[bytes | None, bytes]:
        with self._lock:
            if self._heap:  # nothing has a deadline: no purge and no deadline look-up
                self._purge()
            if self._deadlines:
                old = self._live(scope, key)
            else:
                entries = self._scopes.get(scope)
                old = None if entries is None else entries.get(key)
            new = change(old)
            self._put(scope, key, new, expires_at)
            return old, new

    def read_expiry(self, scope: str, key: str) -> tuple[bool, int | None]:
        with self._lock:
            self._purge()
            if self._live(scope, key) is None:
                return False, None
            return True, self._deadlines.get((scope, key))

    def set_expiry(self, scope: str, key: str, expires_at: int | None) -> bool:
        with self._lock:
            self._purge()
            if self._live(scope, key) is None:
                return False
            self._set_deadline(scope, key, expires_at)
            return True

    def read_present(self, scope: str, keys: Sequence[str]) -> dict[str, bytes]:
        with self._lock:
            self._purge()  # an expired entry is gone before the lookup
            entries = self._scopes.get(scope)
            if not entries:
                return {}
            return {key: entries[key] for key in keys if key in entries}

    def create_missing(self, rows: Sequence[tuple[str, str, bytes]]) -> bool:
        with self._lock:
            self._purge()
            scopes = self._scopes
            seen = {(scope, key) for scope, key, _ in rows}
            if len(seen) != len(rows) or any(key in scopes.get(scope, ()) for scope, key in seen):
                return False
            for scope, key, data in rows:
                self._put(scope, key, data, None)
            return True

    def list_scopes(self) -> list[str]:
        with self._lock:
            self._purge()
            return [scope for scope, entries in self._scopes.items() if entries]

    def count(self, scope: str) -> int | None:
        with self._lock:
            self._purge()
            return len(self._scopes.get(scope, {}))

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        after = None if cursor is None else cursors.decode(cursor).decode("utf-8")
        with self._lock:
            self._purge()
            entries = self._scopes.get(scope, {})
            keys = self._sorted.get(scope, [])
            start = 0 if after is None else bisect_right(keys, after)
            page = [(k, entries[k]) for k in keys[start : start + limit]]
        more = len(page) == limit
        return page, (cursors.encode(page[-1][0].encode("utf-8")) if more and page else None)

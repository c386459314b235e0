"""Remembered (cas, item) pairs, so a blind ``set`` of a known entry is one round trip.

memcached's cas is a per-server counter that changes on every store, so a conditional store
with a remembered cas succeeds only if the item is byte-for-byte what we remembered — and then
the remembered item *is* the value that was replaced. A cas means nothing on another server
process (a restarted memcached counts from 1 again), so an entry is only used on the very
connection it was learnt on (see ``nodes.Conn.epoch``). It is a hint, never an answer: reads
never come from here.
"""

from __future__ import annotations

import threading
from typing import NamedTuple


class Known(NamedTuple):
    epoch: int
    cas: bytes
    item: bytes


class CasCache:
    """A bounded, thread-safe LRU of :class:`Known` by memcached key."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: dict[bytes, Known] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: bytes) -> Known | None:
        return self._entries.get(key)

    def put(self, key: bytes, epoch: int, cas: bytes, item: bytes) -> None:
        if not cas or len(item) > self._max_bytes or self._max_entries == 0:
            self.drop(key)
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old.item)
            self._entries[key] = Known(epoch, cas, item)
            self._bytes += len(item)
            while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
                oldest = next(iter(self._entries))
                self._bytes -= len(self._entries.pop(oldest).item)

    def put_many(self, learnt: list[tuple[bytes, Known]]) -> None:
        """:meth:`put` of each ``(key, known)``, the lock taken once (a batch round's stores)."""
        if self._max_entries == 0:
            return
        with self._lock:
            entries = self._entries
            for key, known in learnt:
                old = entries.pop(key, None)
                if old is not None:
                    self._bytes -= len(old.item)
                if known.cas and len(known.item) <= self._max_bytes:
                    entries[key] = known
                    self._bytes += len(known.item)
            while len(entries) > self._max_entries or self._bytes > self._max_bytes:
                oldest = next(iter(entries))
                self._bytes -= len(entries.pop(oldest).item)

    def drop(self, key: bytes) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old.item)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

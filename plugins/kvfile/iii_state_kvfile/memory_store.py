"""``store_method: in_memory``: a thread-safe dict, gone when the process ends."""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from typing import Any

from iii_state_core import Adapter, Capabilities
from iii_state_core.adapter import Page, Token

from . import cursors


class KvMemoryStore(Adapter):
    name = "kv"
    distribution = "iii-state-kvfile"
    capabilities = Capabilities(
        durable=False,
        shared=False,
        atomic_update="native",
        ordered_listing=True,
        listing_cost="list_entries O(log n + page) per page (a sorted key list per scope)",
    )

    def __init__(self, config: Any = None) -> None:
        self._scopes: dict[str, dict[str, bytes]] = {}
        # Each scope's keys, kept sorted so a page is a bisect and a slice, not a sort.
        self._sorted: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return "kv (in_memory)"

    def _put(self, scope: str, key: str, data: bytes) -> bytes | None:
        entries = self._scopes.setdefault(scope, {})
        old = entries.get(key)
        if old is None:
            insort(self._sorted.setdefault(scope, []), key)
        entries[key] = data
        return old

    def _drop(self, scope: str, key: str, *, keep_empty_scope: bool = False) -> bytes | None:
        entries = self._scopes.get(scope)
        if entries is None or key not in entries:
            return None
        old = entries.pop(key)
        keys = self._sorted[scope]
        del keys[bisect_left(keys, key)]
        if not entries and not keep_empty_scope:
            del self._scopes[scope], self._sorted[scope]
        return old

    def read(self, scope: str, key: str) -> bytes | None:
        entries = self._scopes.get(scope)
        return None if entries is None else entries.get(key)

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        with self._lock:
            return self._put(scope, key, data)

    def remove(self, scope: str, key: str) -> bytes | None:
        with self._lock:
            return self._drop(scope, key)

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        with self._lock:
            if self.read(scope, key) != token:
                return False
            self._put(scope, key, data)
            return True

    def modify(
        self, scope: str, key: str, change: Callable[[bytes | None], bytes]
    ) -> tuple[bytes | None, bytes]:
        with self._lock:
            old = self.read(scope, key)
            new = change(old)
            self._put(scope, key, new)
            return old, new

    def list_scopes(self) -> list[str]:
        with self._lock:
            return [scope for scope, entries in self._scopes.items() if entries]

    def count(self, scope: str) -> int | None:
        with self._lock:
            return len(self._scopes.get(scope, {}))

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        after = None if cursor is None else cursors.decode(cursor).decode("utf-8")
        with self._lock:
            entries = self._scopes.get(scope, {})
            keys = self._sorted.get(scope, [])
            start = 0 if after is None else bisect_right(keys, after)
            page = [(k, entries[k]) for k in keys[start : start + limit]]
        more = len(page) == limit
        return page, (cursors.encode(page[-1][0].encode("utf-8")) if more and page else None)

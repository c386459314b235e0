"""``store_method: in_memory``: a thread-safe dict, gone when the process ends."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from iii_state_core import Adapter, Capabilities
from iii_state_core.adapter import Page, Token


class KvMemoryStore(Adapter):
    name = "kv"
    distribution = "iii-state-kvfile"
    capabilities = Capabilities(
        durable=False,
        shared=False,
        atomic_update="native",
        ordered_listing=True,
        listing_cost="list_entries sorts the scope's keys per page: O(n log n) per page",
    )

    def __init__(self, config: Any = None) -> None:
        self._scopes: dict[str, dict[str, bytes]] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return "kv (in_memory)"

    def read(self, scope: str, key: str) -> bytes | None:
        entries = self._scopes.get(scope)
        return None if entries is None else entries.get(key)

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        with self._lock:
            entries = self._scopes.setdefault(scope, {})
            old = entries.get(key)
            entries[key] = data
            return old

    def remove(self, scope: str, key: str) -> bytes | None:
        with self._lock:
            entries = self._scopes.get(scope)
            if entries is None:
                return None
            old = entries.pop(key, None)
            if not entries:
                del self._scopes[scope]
            return old

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        with self._lock:
            if self.read(scope, key) != token:
                return False
            self._scopes.setdefault(scope, {})[key] = data
            return True

    def modify(
        self, scope: str, key: str, change: Callable[[bytes | None], bytes]
    ) -> tuple[bytes | None, bytes]:
        with self._lock:
            old = self.read(scope, key)
            new = change(old)
            self._scopes.setdefault(scope, {})[key] = new
            return old, new

    def list_scopes(self) -> list[str]:
        with self._lock:
            return list(self._scopes)

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        with self._lock:
            entries = self._scopes.get(scope, {})
            keys = sorted(k for k in entries if cursor is None or k > cursor)[:limit]
            page = [(k, entries[k]) for k in keys]
        more = len(page) == limit
        return page, (keys[-1] if more and keys else None)

"""The example adapter: a versioned in-process dict.

It shows each primitive the core needs, with versions as conditional-write tokens — the
shape a networked store (with CAS ids, version attributes or WATCH) takes. Versions come
from one counter for the whole store, never per key, so a key deleted and re-created never
gets an old token's version back; every check-then-act holds the lock (the suite races
threads on one store object). Replace the dict
with calls to your store's client. The core does everything else: validation, the update-op
engine, events and wire results.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Mapping
from typing import Any

from iii_state_core import Adapter, Capabilities, Options
from iii_state_core.adapter import Page, Token

#: The "missing" form of a version token: write_if with it means "only if still missing".
MISSING_VERSION = 0


class TemplateAdapter(Adapter):
    name = "template"  # <REPLACE ME>: the name users write in iii-config.yaml
    distribution = "iii-state-template"  # <REPLACE ME>
    # <REPLACE ME>: declare exactly what your store gives; the conformance suite checks both ways.
    capabilities = Capabilities(
        durable=False,  # a dict dies with the process
        shared=False,  # other processes do not see it
        atomic_update="emulated",  # the core loops over read_versioned + write_if
        ordered_listing=True,  # scan pages in key order: each key exactly once
        listing_cost="walks the scope's keys per page, keeping `limit` of them: O(n log limit)",
    )

    def __init__(self, config: Mapping[str, Any]) -> None:
        opts = Options(f"adapter '{self.name}'", config)
        # <REPLACE ME>: read your options (URL, timeouts …); finish() rejects unknown keys.
        self.label = opts.str("label", "example")
        opts.finish()
        self._entries: dict[str, dict[str, tuple[int, bytes]]] = {}
        self._version = 0
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"{self.name} ({self.label})"  # never include a password here

    def read(self, scope: str, key: str) -> bytes | None:
        return self.read_versioned(scope, key)[0]

    def read_versioned(self, scope: str, key: str) -> tuple[bytes | None, Token]:
        with self._lock:
            found = self._entries.get(scope, {}).get(key)
        return (None, MISSING_VERSION) if found is None else (found[1], found[0])

    def _store(self, scope: str, key: str, data: bytes) -> bytes | None:
        self._version += 1
        old = self._entries.setdefault(scope, {}).get(key)
        self._entries[scope][key] = (self._version, data)
        return None if old is None else old[1]

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        with self._lock:  # the replaced value must be exactly what this write replaced
            return self._store(scope, key, data)

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        with self._lock:
            found = self._entries.get(scope, {}).get(key)
            if (found[0] if found else MISSING_VERSION) != token:
                return False  # someone wrote in between: the core re-reads and retries
            self._store(scope, key, data)
            return True

    def remove(self, scope: str, key: str) -> bytes | None:
        with self._lock:
            entries = self._entries.get(scope, {})
            old = entries.pop(key, None)
            if not entries:
                self._entries.pop(scope, None)  # list_groups must not show emptied scopes
            return None if old is None else old[1]

    def list_scopes(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        with self._lock:
            entries = self._entries.get(scope, {})
            # memory bounded by `limit`: a heap of the next `limit` keys, never a sorted copy
            # of the whole scope (your store's "keys after X, ordered, LIMIT n" query)
            keys = heapq.nsmallest(limit, (k for k in entries if cursor is None or k > cursor))
            page = [(k, entries[k][1]) for k in keys]
        # the cursor is yours: here the last key returned; the core wraps it opaquely
        return page, (keys[-1] if len(keys) == limit else None)

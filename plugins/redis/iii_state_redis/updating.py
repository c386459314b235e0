"""``update`` in one round trip when this process already knows the entry.

The core computes the new value (its op engine; Lua's cjson would lose ``[]`` and big
integers); Redis only has to swap it in atomically. :data:`~.scripts.SWAP` stores the new
bytes if the entry still holds exactly the bytes the change was computed from, and otherwise
returns what it does hold — so a lost race costs one more round trip, not two.

What the change starts from is the last value this process wrote or swapped for the entry
(:class:`Recent`), or one read (``scripts.READ``) when it knows nothing. The remembered bytes are a hint,
never an answer: reads never come from here, and a stale hint only fails the swap. A
byte-equal entry changed and changed back meanwhile (ABA) is harmless: the new value was
computed from exactly those bytes, so the update still reads as one atomic step.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, Final

from iii_state_core.expiry import now_ms
from iii_state_core.retry import LOST, Lost, optimistic

from .layout import Names
from .listing import Run
from .scripts import READ

#: Entries and bytes remembered per adapter (values above the byte cap are not kept).
RECENT_ENTRIES: Final = 4096
RECENT_BYTES: Final = 8 * 1024 * 1024


class Recent:
    """A bounded, thread-safe LRU of the last bytes seen per (hash, field); ``None`` = missing."""

    def __init__(self, max_entries: int = RECENT_ENTRIES, max_bytes: int = RECENT_BYTES) -> None:
        self._max_entries, self._max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[tuple[bytes, bytes], bytes | None] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, name: bytes, field: bytes) -> tuple[bool, bytes | None]:
        """``(known, bytes)``: whether anything is remembered, and what."""
        with self._lock:
            key = (name, field)
            if key not in self._entries:
                return False, None
            self._entries.move_to_end(key)
            return True, self._entries[key]

    def put(self, name: bytes, field: bytes, data: bytes | None) -> None:
        with self._lock:
            self._put(name, field, data)

    def put_many(self, seen: Iterable[tuple[bytes, bytes, bytes | None]]) -> None:
        """:meth:`put` of each ``(name, field, bytes)``, under one lock (a batch, a transaction)."""
        entries, biggest = self._entries, self._max_bytes // 64
        with self._lock:  # _put inlined, the trim once at the end (a call per entry cost more)
            for name, field, data in seen:
                old = entries.pop((name, field), None)
                if old:
                    self._bytes -= len(old)
                if data is not None and len(data) > biggest:
                    continue  # big values cost more memory than the round trip they save
                entries[(name, field)] = data
                if data:
                    self._bytes += len(data)
            while len(entries) > self._max_entries or self._bytes > self._max_bytes:
                _, dropped = entries.popitem(last=False)
                self._bytes -= len(dropped or b"")

    def _put(self, name: bytes, field: bytes, data: bytes | None) -> None:
        old = self._entries.pop((name, field), None)
        self._bytes -= len(old or b"")
        if data is not None and len(data) > self._max_bytes // 64:
            return  # big values cost more memory than the round trip they save
        self._entries[(name, field)] = data
        self._bytes += len(data or b"")
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= len(dropped or b"")

    def forget(self, name: bytes, field: bytes) -> None:
        with self._lock:
            self._bytes -= len(self._entries.pop((name, field), None) or b"")


@dataclass(frozen=True)
class Swap:
    """Run SWAP: store ``data`` if the entry holds ``expected`` (``None``: is missing or expired).

    ``expires``: the scripts' ``expires`` argument (``b"k"``: keep the entry's deadline).
    """

    names: Names
    field: bytes
    expected: bytes | None
    data: bytes
    expires: bytes = b"k"

    def keys(self) -> tuple[bytes, ...]:
        return self.names.writing()


@dataclass(frozen=True)
class Pause:
    seconds: float


def swap_args(request: Swap, keep: bytes) -> tuple[bytes | int, ...]:
    """SWAP's ARGV; ``keep``: b"1" to keep an expired entry it replaces (expiry events on)."""
    expected = request.expected
    flag = b"0" if expected is None else b"1"
    names = request.names
    return request.field, flag, expected or b"", request.data, now_ms(), request.expires, names.scope, keep


def swap_result(reply: Any) -> tuple[bool, bytes | None]:
    """``(stored, current)`` from SWAP's reply ``[1]``, ``[0, bytes]`` or ``[0]``."""
    if int(reply[0]) == 1:
        return True, None
    return False, (bytes(reply[1]) if len(reply) > 1 else None)


def modify_plan(
    recent: Recent,
    names: Names,
    field: bytes,
    change: Callable[[bytes | None], bytes],
    expires: bytes = b"k",
) -> Generator[Run | Swap | Pause, Any, tuple[bytes | None, bytes]]:
    """Yield requests until ``change`` applied atomically; return ``(replaced, stored)``.

    :raises ConflictError: when other writers won every attempt of the core's retry budget.
    """
    known, current = recent.get(names.hash, field)
    if not known:
        current = yield Run(READ, (names.hash, names.deadlines), (field, now_ms()))
    seen = [current]  # what the next attempt computes from: the bytes the last swap found

    def attempt(_n: int) -> Generator[Swap | Pause, Any, tuple[bytes | None, bytes] | Lost]:
        data = change(seen[0])
        stored, found = yield Swap(names, field, seen[0], data, expires)
        if stored:
            return seen[0], data
        seen[0] = found
        return LOST

    # the first miss is usually a stale hint, not contention: retry it at once
    return (yield from optimistic(attempt, Pause, retry_at_once=True))

"""What this adapter's transactions last wrote (or read), per entry: the guess that lets a
transaction of sets and deletes skip its read (``write_many_when``, decision 0018).

``TransactWriteItems`` returns no old values, so a transaction that answers each write's old
value must know what every entry holds first: normally one ``BatchGetItem``. After this adapter
committed a transaction, it knows exactly what each entry it wrote holds: the bytes, and the
version drawn for them (unique per write, see ``layout.new_version``). The next transaction on
those entries conditions each write on that version instead of reading: if the condition holds,
the entry still holds those bytes, so they are its old value. If anyone wrote in between, the
condition fails, nothing is applied, and the caller reads and tries again. So a remembered entry
is never trusted, only checked; a stale one costs one cancelled request.

A transaction that had to read remembers what it read too: as exact a guess as a write, until
someone writes. Bounded (entries and value size), per adapter object, and forgotten by this
adapter's own single writes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Final

from iii_state_core.adapter import Token

#: Entries remembered at most (the oldest written is forgotten first).
MAX_ENTRIES: Final = 1024
#: Values larger than this are not remembered (bounds the memory to about 4 MB).
MAX_VALUE_BYTES: Final = 4096

#: What a consistent read would give for an entry: its bytes and token (as ``read_versioned``).
Guess = tuple[bytes, Token]


class Remembered:
    """Thread-safe, bounded map of ``(scope, key)`` to the :data:`Guess` this adapter wrote last."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max = max_entries
        self._entries: OrderedDict[tuple[str, str], Guess] = OrderedDict()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._entries)

    def get(self, scope: str, key: str) -> Guess | None:
        with self._lock:
            return self._entries.get((scope, key))

    def wrote(self, scope: str, key: str, data: bytes | None, token: Token) -> None:
        """Remember ``data`` with ``token``, as written or as a consistent read gave them
        (``data`` ``None``, missing: forget the entry)."""
        with self._lock:
            if data is None or len(data) > MAX_VALUE_BYTES:
                self._entries.pop((scope, key), None)
                return
            self._entries[(scope, key)] = (data, token)
            self._entries.move_to_end((scope, key))
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def forget(self, scope: str, key: str) -> None:
        if self._entries:  # nothing remembered (the usual case): no lock on the write path
            with self._lock:
                self._entries.pop((scope, key), None)

"""The expiry schedule: where ``take_expired`` finds the entries that expired.

memcached cannot list its keys, so, with expiry events on, a write that gives an entry a deadline
first appends a *candidate* ``(scope, key, generation, deadline)`` to the slot item of that
deadline (one slot per ``SLOT_MS`` of time). A candidate is only a hint: the sweeper reads the
entry and claims it only if it still holds that generation with that deadline and the deadline
has passed. The claim is a cas-checked delete (or rewrite) of the entry's item, so of all the
sweepers and writers racing for it exactly one wins, and only the winner reports it.

A write that replaces an entry already expired but not yet taken won that race: it *stashes*
the old record in an item of its own and appends a ``STASH`` candidate pointing at it; the stash
is claimed by a cas-checked delete too.

Slots are swept once their time is ``LAG_MS`` past, from a cursor item (the first slot not yet
swept) kept with cas; the last ``RECHECK_SLOTS`` before it are read again on every sweep, for
candidates appended late. A swept slot is deleted if unchanged since read.
"""

from __future__ import annotations

import logging
import random
import struct
from collections.abc import Callable
from typing import NamedTuple

from iii_state_core import BackendError
from iii_state_core.expiry import now_ms

from . import records
from .keys import KeyCodec
from .nodes import Cluster
from .records import Record

log = logging.getLogger("iii_state.memcached")

SLOT_MS = 250
#: How long after a slot's end it is swept: room for a writer between choosing a deadline and
#: appending its candidate.
LAG_MS = 100
#: Slots before the cursor read again on each sweep (2 s): candidates appended that late.
RECHECK_SLOTS = 8
#: Slots read per request.
_BATCH = 64
ENTRY, STASH = 1, 2
_CANDIDATE = struct.Struct(">BQQII")


class Candidate(NamedTuple):
    kind: int
    #: The entry's generation; for a ``STASH``, the stash's id.
    number: int
    deadline: int
    scope: str
    key: str


def _candidate(kind: int, number: int, deadline: int, scope: bytes, key: bytes) -> bytes:
    return _CANDIDATE.pack(kind, number, deadline, len(scope), len(key)) + scope + key


def _parse(item: bytes) -> list[Candidate]:
    out: list[Candidate] = []
    at, end = 0, len(item)
    while at + _CANDIDATE.size <= end:
        kind, number, deadline, scope_len, key_len = _CANDIDATE.unpack_from(item, at)
        at += _CANDIDATE.size
        scope, key = item[at : at + scope_len], item[at + scope_len : at + scope_len + key_len]
        at += scope_len + key_len
        if at > end or kind not in (ENTRY, STASH):
            break  # a torn or foreign tail: nothing after it can be trusted
        out.append(Candidate(kind, number, deadline, scope.decode("utf-8"), key.decode("utf-8")))
    return out


#: ``claim(candidate)``: the entry's value if this call took it, else ``None``.
Claim = Callable[[Candidate], bytes | None]


class Schedule:
    def __init__(self, cluster: Cluster, codec: KeyCodec, grace: int, max_attempts: int) -> None:
        self.cluster = cluster
        self.codec = codec
        self.grace = grace
        self.max_attempts = max_attempts

    # -- writers -------------------------------------------------------------------------------
    def _append(self, slot: int, candidate: bytes) -> None:
        """Append to the slot's item, creating it when missing; it lives past the grace."""
        key = self.codec.slot_key(slot)
        node = self.cluster.node(key)
        ttl = max(1, (slot + 1) * SLOT_MS // 1000 - now_ms() // 1000) + self.grace + 1
        for _ in range(self.max_attempts):
            if node.append(key, candidate) or node.store(key, candidate, None, ttl).ok:
                return
        raise_busy(key)

    def note(self, scope: str, key: str, generation: int, deadline: int) -> None:
        """Before an entry is stored with ``deadline``: make the sweeper look at it then."""
        candidate = _candidate(ENTRY, generation, deadline, scope.encode(), key.encode())
        self._append(deadline // SLOT_MS, candidate)

    def stash(self, record: Record, now: int) -> None:
        """Keep an expired record a write just replaced, for the sweeper to report."""
        number = random.getrandbits(63)
        key = self.codec.stash_key(number)
        if not self.cluster.node(key).store(key, records.pack([record]), None, self.grace).ok:
            return  # a 63-bit id already taken: not reachable in practice
        candidate = _candidate(STASH, number, record.deadline or now, record.scope, record.key)
        self._append(now // SLOT_MS, candidate)

    def take_stash(self, candidate: Candidate) -> Record | None:
        """Claim a stash: the one caller whose cas-checked delete removes it gets the record."""
        key = self.codec.stash_key(candidate.number)
        node = self.cluster.node(key)
        item, cas, _ = node.gets(key)
        if item is None or cas is None or node.delete(key, cas) is not True:
            return None
        found = list(records.iter_records(item, key))
        return found[0] if found else None

    # -- the sweep -----------------------------------------------------------------------------
    def sweep(self, claim: Claim, limit: int) -> list[tuple[Candidate, bytes]]:
        """Claim up to ``limit`` expired entries from the slots due now."""
        now = now_ms()
        due = (now - LAG_MS) // SLOT_MS  # slots below this one are swept
        oldest = (now // 1000 - self.grace) * 1000 // SLOT_MS  # older slots memcached dropped
        cursor_key = self.codec.sweep_cursor_key
        cursor_node = self.cluster.node(cursor_key)
        raw, cursor_cas, _ = cursor_node.gets(cursor_key)
        cursor = int(raw) if raw is not None and raw.isdigit() else oldest
        start = max(oldest, min(cursor, due) - RECHECK_SLOTS)
        taken: list[tuple[Candidate, bytes]] = []
        complete = True
        for first in range(start, due, _BATCH):
            slots = range(first, min(due, first + _BATCH))
            keys = [self.codec.slot_key(s) for s in slots]
            found = self.cluster.gets_many(keys)
            for key in keys:
                hit = found.get(key)
                if hit is None:
                    continue
                item, cas = hit
                for candidate in _parse(item):
                    if len(taken) >= limit:
                        complete = False
                        break
                    try:
                        value = claim(candidate)
                    except Exception as exc:
                        if not taken:
                            raise
                        # what was claimed before the failure is deleted already: hand it back
                        # (raising would lose those events); the slots and cursor stay as they
                        # were, so the next sweep reads them again and finds the rest
                        log.warning(
                            "expiry sweep: a claim failed after %d taken (%s); returning those",
                            len(taken),
                            exc,
                        )
                        return taken
                    if value is not None:
                        taken.append((candidate, value))
                if not complete:
                    break
                self.cluster.node(key).delete(key, cas)  # unchanged: every candidate was seen
            if not complete:
                break
        if complete and due > cursor:
            new = b"%d" % due
            cursor_node.store(cursor_key, new, cursor_cas, 0)  # a racing sweeper may win: fine
        return taken


def raise_busy(key: bytes) -> None:
    raise BackendError(
        f"memcached: could not append to the expiry schedule item {key.decode('ascii', 'replace')!r} "
        f"(it kept changing)"
    )

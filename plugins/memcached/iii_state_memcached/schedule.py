"""The expiry schedule: where ``take_expired`` finds the entries that expired.

memcached cannot list its keys, so, with expiry events on, a write that gives an entry a deadline
first appends a *candidate* ``(scope, key, generation, deadline)`` to the slot item of that
deadline (one slot per ``SLOT_MS`` of time). A candidate is only a hint: the sweeper reads the
entry and claims it only if it still holds that generation with that deadline and the deadline
has passed. The claim is a cas-checked delete (or rewrite) of the entry's item, so of all the
sweepers and writers racing for it exactly one wins, and only the winner reports it.

A write that replaces an entry already expired but not yet taken won that race: it *stashes*
the old record in an item of its own and appends a ``STASH`` candidate pointing at it; the stash
is claimed by a cas-checked delete too (without expiry-event leases).

With leases (the sweeper's ``take_expired``, expiry events on), a claim loses nothing when its
sweeper dies or its reply is lost: claiming an entry first appends a ``STASH`` candidate to the
slot of the lease's end, then adds (only if missing) a *leased* stash of the record, then takes
the record from the entry's item. A stash's number is derived from the record (scope, key,
generation, deadline: :func:`stash_number`), so one expiry has one stash whoever stashes it
first (a sweeper, or a write that replaces the expired record). A leased stash whose candidate
comes up after its lease ended is leased again (cas), and acknowledging a delivered one
overwrites it with a *delivered* marker, kept for the grace, so nobody stashes it again.

Slots are swept once their time is ``LAG_MS`` past, from a cursor item (the first slot not yet
swept to its end: a sweep stopped by its limit or time budget moves it to the slot it stopped in)
kept with cas; the last ``RECHECK_SLOTS`` before it are read again on every sweep, for
candidates appended late. A swept slot is deleted if unchanged since read.

A sweep claims a slot's candidates in chunks (``Claim``: the adapter pipelines each chunk's round
trips), and each process remembers how far into each slot item it walked (``Schedule._resume``),
so a sweep stopped at its limit goes on where it stopped instead of claiming the slot's start
again; other processes sharing the cursor walk from their own marks (their claims of what this
one took just find nothing). A ``STASH`` candidate of a lease its own sweeper still holds
unacknowledged is appended again one lease later (``defer``), so it is not consumed with its slot.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from iii_state_core import BackendError
from iii_state_core.expiry import now_ms

from . import records
from .keys import KeyCodec
from .nodes import Cluster
from .pace import breathe
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
#: A stash leased to a sweeper: this byte, the lease's end (epoch ms, ``_LEASE``), the records.
LEASED: Final = b"\xa3"
#: A stash whose event was delivered (nothing after this byte).
DELIVERED: Final = b"\xa4"
_LEASE = struct.Struct(">Q")


class Candidate(NamedTuple):
    kind: int
    #: The entry's generation; for a ``STASH``, the stash's id.
    number: int
    deadline: int
    scope: str
    key: str


def _candidate(kind: int, number: int, deadline: int, scope: bytes, key: bytes) -> bytes:
    return _CANDIDATE.pack(kind, number, deadline, len(scope), len(key)) + scope + key


#: Builds a named tuple from its fields without its Python-level ``__new__`` (per candidate).
_new: Any = tuple.__new__


def _parse(item: bytes, at: int = 0, most: int | None = None) -> tuple[list[Candidate], int]:
    """The candidates in ``item`` from byte ``at`` on (``most`` of them at most), and the offset
    just past the last one. A slot holds thousands and a sweep takes a few hundred, so a sweep
    parses what it hands to a claim, not the rest of the slot each time."""
    out: list[Candidate] = []
    end = len(item)
    size = _CANDIDATE.size
    unpack = _CANDIDATE.unpack_from
    scopes: dict[bytes, str] = {}  # a slot's candidates mostly share a few scopes
    left = -1 if most is None else most
    while left and at + size <= end:
        kind, number, deadline, scope_len, key_len = unpack(item, at)
        start = at + size
        stop = start + scope_len + key_len
        if stop > end or kind not in (ENTRY, STASH):
            break  # a torn or foreign tail: nothing after it can be trusted
        raw = item[start : start + scope_len]
        scope = scopes.get(raw)
        if scope is None:
            scope = scopes[raw] = raw.decode("utf-8")
        key = item[start + scope_len : stop].decode("utf-8")
        out.append(_new(Candidate, (kind, number, deadline, scope, key)))
        at = stop
        left -= 1
        breathe()
    return out, at


#: ``claim(candidates)``: per candidate, the entry's value if this call took it, else ``None``.
#: Called with up to ``_CHUNK`` candidates of one slot at a time, so their round trips can be
#: pipelined; raising claims nothing the next sweep cannot find again (see ``Schedule.sweep``).
Claim = Callable[[list[Candidate]], list[bytes | None]]
#: Candidates handed to one ``claim`` call at most.
_CHUNK = 250


def _prefix_digest(item: bytes, end: int) -> bytes:
    return hashlib.blake2b(memoryview(item)[:end], digest_size=16).digest()


class Schedule:
    def __init__(self, cluster: Cluster, codec: KeyCodec, grace: int, max_attempts: int) -> None:
        self.cluster = cluster
        self.codec = codec
        self.grace = grace
        self.max_attempts = max_attempts
        #: Slot -> (offset, digest of the item's bytes before it): where this process's last walk
        #: of that slot's item stopped. A slot item only grows (appends) until it is deleted, so
        #: while its first ``offset`` bytes are unchanged, every candidate in them was handed to a
        #: claim already, and the next sweep starts after them (a recreated item fails the digest).
        self._resume: dict[int, tuple[int, bytes]] = {}

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
        """Keep an expired record a write just replaced, for the sweeper to report (unless a
        sweeper stashed that expiry first: then the store finds its stash and does nothing)."""
        number = stash_number(record)
        candidate = _candidate(STASH, number, record.deadline or now, record.scope, record.key)
        self._append(now // SLOT_MS, candidate)  # first: a stash without a candidate is never found
        key = self.codec.stash_key(number)
        self.cluster.node(key).store(key, records.pack([record]), None, self.grace)

    def take_stash(self, candidate: Candidate) -> Record | None:
        """Claim a stash: the one caller whose cas-checked delete removes it gets the record."""
        key = self.codec.stash_key(candidate.number)
        node = self.cluster.node(key)
        item, cas, _ = node.gets(key)
        if item is None or cas is None or item[:1] in (LEASED, DELIVERED):
            return None
        if not node.delete_counted(key, cas):
            return None
        found = list(records.iter_records(item, key))
        return found[0] if found else None

    # -- leases (expiry events) ------------------------------------------------------------------
    def _lease_ttl(self, until: int) -> int:
        return self.grace + max(0, until - now_ms()) // 1000 + 1

    def lease_record(self, record: Record, until: int) -> int | None:
        """Stash expired ``record`` leased until ``until``, unless its expiry is stashed already.

        :returns: the stash's number, or ``None`` when another stash of it exists.
        """
        return self.lease_records([record], until)[0]

    def lease_records(
        self, leased: list[Record], until: int, packed: list[bytes | None] | None = None
    ) -> list[int | None]:
        """:meth:`lease_record` of each of ``leased`` (distinct expiries): their ``STASH``
        candidates in one append, then the stashes added with one pipelined request per server
        (the candidates first: a stash without a candidate is never found).

        ``packed``: per record, ``records.pack([record])`` when the caller has those bytes
        already (the record's own item, when it holds that record alone), else ``None``."""
        if not leased:
            return []
        pack = _CANDIDATE.pack
        head = LEASED + _LEASE.pack(until)
        stash_key = self.codec.stash_key
        if packed is None:
            packed = [None] * len(leased)
        numbers: list[int] = []
        candidates: list[bytes] = []
        items: list[tuple[bytes, bytes]] = []
        for record, body in zip(leased, packed, strict=True):
            assert record.deadline is not None
            number = stash_number(record)
            numbers.append(number)
            scope, key = record.scope, record.key
            candidates += [pack(STASH, number, record.deadline, len(scope), len(key)), scope, key]
            items.append((stash_key(number), head + (body if body is not None else records.pack([record]))))
            breathe()
        self._append(until // SLOT_MS, b"".join(candidates))
        added: dict[bytes, bool] = {}
        ttl = self._lease_ttl(until)
        for node, mine in self.cluster.by_node_of(items, lambda kv: kv[0]):
            added.update(zip((key for key, _ in mine), node.add_all(mine, ttl), strict=True))
        return [number if added[key] else None for number, (key, _) in zip(numbers, items, strict=True)]

    def stashes(self, candidates: list[Candidate]) -> dict[bytes, tuple[bytes, bytes]]:
        """The stashes ``STASH`` candidates name, as ``gets`` reads them (for :meth:`lease_stash`),
        one request per server."""
        return self.cluster.gets_many(list({self.codec.stash_key(c.number) for c in candidates}))

    def defer(self, candidates: list[Candidate], until: int) -> None:
        """Append ``candidates`` again, to the slot of ``until``: they come up once more then."""
        if candidates:
            blob = [
                _candidate(c.kind, c.number, c.deadline, c.scope.encode(), c.key.encode()) for c in candidates
            ]
            self._append(until // SLOT_MS, b"".join(blob))

    def lease_stash(
        self, candidate: Candidate, until: int, read: tuple[bytes | None, bytes | None] | None = None
    ) -> Record | None:
        """Lease the stash ``candidate`` names if nobody holds it (never leased, or its lease
        ended): cas-checked, so one caller gets it. :returns: its record, or ``None``.

        ``read``: the stash's ``(item, cas)`` as read just before (``(None, None)``: missing).
        """
        key = self.codec.stash_key(candidate.number)
        node = self.cluster.node(key)
        item, cas = node.gets(key)[:2] if read is None else read
        if item is None or cas is None or item[:1] == DELIVERED:
            return None
        body = item
        if item[:1] == LEASED:
            if _LEASE.unpack_from(item, 1)[0] > now_ms():
                return None  # held: the candidate of its lease comes up when it ends
            body = item[1 + _LEASE.size :]
        found = list(records.iter_records(body, key))
        if not found:
            return None
        names = (candidate.scope.encode(), candidate.key.encode())
        self._append(until // SLOT_MS, _candidate(STASH, candidate.number, candidate.deadline, *names))
        leased = LEASED + _LEASE.pack(until) + body
        return found[0] if node.store(key, leased, cas, self._lease_ttl(until)).ok else None

    def delivered(self, numbers: list[int]) -> None:
        """Mark leased stashes delivered: overwritten by the delivered marker (kept for the grace,
        so nobody stashes those expiries again), one pipelined request per server."""
        keys = [self.codec.stash_key(number) for number in numbers]
        for node, mine in self.cluster.by_node(keys):
            node.set_all([(key, DELIVERED) for key in mine], self.grace)

    # -- the sweep -----------------------------------------------------------------------------
    def sweep(self, claim: Claim, limit: int, until_ms: int | None = None) -> list[tuple[Candidate, bytes]]:
        """Claim up to ``limit`` expired entries from the slots due now, and none once the clock
        passed ``until_ms`` (the rest is left for the next sweep, as with ``limit``)."""
        now = now_ms()
        due = (now - LAG_MS) // SLOT_MS  # slots below this one are swept
        oldest = (now // 1000 - self.grace) * 1000 // SLOT_MS  # older slots memcached dropped
        cursor_key = self.codec.sweep_cursor_key
        cursor_node = self.cluster.node(cursor_key)
        raw, cursor_cas, _ = cursor_node.gets(cursor_key)
        cursor = int(raw) if raw is not None and raw.isdigit() else oldest
        start = max(oldest, min(cursor, due) - RECHECK_SLOTS)
        for slot in [s for s in self._resume if s < start]:
            del self._resume[slot]  # swept for good (or dropped by memcached)
        taken: list[tuple[Candidate, bytes]] = []
        complete = True
        reached = due  # the first slot not walked to its end
        for first in range(start, due, _BATCH):
            slots = range(first, min(due, first + _BATCH))
            keys = [self.codec.slot_key(s) for s in slots]
            found = self.cluster.gets_many(keys)
            for slot, key in zip(slots, keys, strict=True):
                hit = found.get(key)
                if hit is None:
                    self._resume.pop(slot, None)
                    continue
                item, cas = hit
                at = self._resumed(slot, item)
                while True:
                    room = min(limit - len(taken), _CHUNK)
                    if room <= 0 or (until_ms is not None and now_ms() > until_ms):
                        if _parse(item, at, 1)[0]:  # something left in this slot
                            complete, reached = False, slot
                        break
                    chunk, end = _parse(item, at, room)
                    if not chunk:
                        break
                    try:
                        values = claim(chunk)
                    except Exception as exc:
                        if not taken:
                            raise
                        # what was claimed before the failure is taken already: hand it back
                        # (raising would delay those events by a lease); this chunk is not marked
                        # walked, so the next sweep reads it again (its stashed claims come back
                        # through their leases' candidates)
                        log.warning(
                            "expiry sweep: a claim failed after %d taken (%s); returning those",
                            len(taken),
                            exc,
                        )
                        return taken
                    taken += [(c, v) for c, v in zip(chunk, values, strict=True) if v is not None]
                    at = end
                    self._resume[slot] = (end, _prefix_digest(item, end))
                if not complete:
                    break
                if self.cluster.node(key).delete_counted(key, cas):  # unchanged: every candidate was seen
                    self._resume.pop(slot, None)
            if not complete:
                break
        # the slots before the one this sweep stopped in were walked to their ends: a sweep that
        # stopped at its limit moves the cursor too, so the next does not read them all again
        # (the last ones stay in the recheck window, read past what this process walked)
        if reached > cursor:
            new = b"%d" % reached
            cursor_node.store(cursor_key, new, cursor_cas, 0)  # a racing sweeper may win: fine
        return taken

    def _resumed(self, slot: int, item: bytes) -> int:
        """Where to start reading ``item`` (the slot's item): past what this process walked."""
        mark = self._resume.get(slot)
        if mark is None:
            return 0
        end, digest = mark
        if len(item) >= end and _prefix_digest(item, end) == digest:
            return end
        del self._resume[slot]  # deleted and created again since: walk it all
        return 0


def stash_number(record: Record) -> int:
    """The number of the stash of one expiry: its scope, key, generation and deadline, hashed."""
    material = b"%s\x00%s\x00%d\x00%d" % (record.scope, record.key, record.generation, record.deadline or 0)
    return int.from_bytes(_sha256(material).digest()[:8], "big") >> 1


_sha256 = hashlib.sha256


def raise_busy(key: bytes) -> None:
    raise BackendError(
        f"memcached: could not append to the expiry schedule item {key.decode('ascii', 'replace')!r} "
        f"(it kept changing)"
    )

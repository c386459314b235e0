"""Entry deadlines: the ``expires`` script argument, the slot registry and the sweep plan.

A sweeper must find every deadline without scanning the keyspace. Each slot's due index
(``layout``) lists the scopes of that slot with deadlines; the registry set lists the slots
(their tags) that have a due index. A write that stores a deadline registers its slot first
(``SADD``, once a minute per process per slot: :class:`Registered`), so a slot holding
deadlines is always in the registry. The registry never shrinks (16,384 tags at most).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Generator, Sequence
from typing import Any, Final

from iii_state_core import BackendError
from iii_state_core.adapter import Expired
from iii_state_core.expiry import KEEP, ExpiresAt, now_ms

from .layout import KEPT_MARKER, LEASE_MARKER, Layout
from .listing import Read, ReadMany, Run
from .scripts import ACK, RELEASE, RETAKE, TAKE, TAKE_KEPT

#: Seconds a process trusts that a slot it registered is still in the registry.
REGISTER_EVERY: Final = 60.0
#: Without expiry events, a process that stores deadlines removes expired entries from its
#: writes: at most this many, at most once per this many seconds (nobody else would).
SWEEP_LIMIT: Final = 200
SWEEP_EVERY: Final = 1.0
#: Lease members one ACK script removes (Lua's ``unpack`` has a limit of its own).
ACK_CHUNK: Final = 500

#: One expired entry as ``take_expired`` returns it: scope, key, value, deadline (epoch ms).
Taken = Expired


def expires_arg(expires_at: ExpiresAt) -> bytes:
    """The scripts' ``expires`` argument: ``b"k"`` keep, ``b""`` none, else the deadline."""
    if expires_at is KEEP:
        return b"k"
    if expires_at is None:
        return b""
    if isinstance(expires_at, bool) or not isinstance(expires_at, int):
        raise TypeError(f"expires_at must be an int deadline, None or KEEP, got {expires_at!r}")
    return str(expires_at).encode()


def deadline_of(reply: Any) -> int:
    """A deadline as a script or ZSCORE returns it (``b"1733500000000"``)."""
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    return int(text) if text.isdigit() else int(float(text))


class Registered:
    """The slot tags this process registered lately (thread-safe; shared with the async twin)."""

    def __init__(self) -> None:
        self._when: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def due(self, tag: bytes) -> bool:
        """Whether ``tag`` must be registered (again) before a deadline is stored in its slot."""
        with self._lock:
            when = self._when.get(tag)
        return when is None or time.monotonic() - when > REGISTER_EVERY

    def done(self, tag: bytes) -> None:
        with self._lock:
            self._when[tag] = time.monotonic()

    def any(self) -> bool:
        """Whether this process stored a deadline (it then sweeps, without expiry events)."""
        return bool(self._when)


class SweepClock:
    """When a process sweeps from its writes next (expiry events off; see :data:`SWEEP_EVERY`)."""

    def __init__(self) -> None:
        self._next = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + SWEEP_EVERY
        return True


#: A claimed entry, its own member (``parse_member``) and the lease member that holds it: the id
#: of the batch the take leased it in (decision 0031), or the entry's own member when an earlier
#: version leased it alone.
Claimed = tuple[Taken, bytes, bytes]
#: An entry of a packed reply and its own member (``claimed_from``).
Parsed = tuple[Taken, bytes]
#: A lease member to remove (``None``) or a batch to keep leased with fewer entries (them,
#: packed), and a scope it holds.
LeaseChange = tuple[str, bytes, bytes | None]

BATCH_MARK: Final = b"#"


def batch_id() -> bytes:
    """A new batch's id: ``#`` (no entry member starts with one) and 64 random bits."""
    return BATCH_MARK + os.urandom(8).hex().encode()


def take_plan(
    layout: Layout, limit: int, lease_ms: int | None = None
) -> Generator[Read | ReadMany | Run, Any, list[Claimed]]:
    """Claim up to ``limit`` expired entries, each once across takers while its claim holds.

    :param lease_ms: lease them for this long (they stay in the slot's lease set until
        :func:`ack_plan`, and are claimed again once it lapses); ``None``: remove them outright.
    """
    now = now_ms()
    lease = b"" if lease_ms is None else str(now + lease_ms).encode()
    taken: list[Claimed] = []
    if limit < 1:
        return taken
    tags = sorted(bytes(t) for t in (yield Read(("SMEMBERS", layout.registry_key()))))
    if not tags:
        return taken
    # every slot's due scopes in one pipeline: a poll is a few round trips however many slots
    asks = tuple(("ZRANGEBYSCORE", layout.due_key(tag), "-inf", now, "LIMIT", 0, limit) for tag in tags)
    for tag, due in zip(tags, (yield ReadMany(asks)), strict=True):
        leases, batches = layout.lease_key(tag), layout.batch_key(tag)
        for member in due:
            if bytes(member) == LEASE_MARKER:  # leases that lapsed: their holder died or lost the reply
                if lease_ms is not None:
                    leased = (leases, layout.due_key(tag), batches)
                    reply = yield Run(RETAKE, leased, (now, limit - len(taken), lease), "write")
                    taken.extend(retaken_from(reply))
            elif bytes(member) == KEPT_MARKER:  # expired fields a write or delete met: taken first
                batch = batch_id()
                kept = (layout.kept_key(tag), layout.due_key(tag), leases, batches)
                reply = yield Run(TAKE_KEPT, kept, (limit - len(taken), lease, batch), "write")
                taken.extend(batch_from(reply, batch))
            else:
                try:
                    scope = bytes(member).decode("utf-8")
                except UnicodeDecodeError:
                    continue  # not written by this adapter
                names = layout.names(scope)
                if names.tag != tag:
                    continue  # not written by this adapter either
                keys = (names.hash, names.deadlines, names.due, leases, batches)
                batch = batch_id()
                reply = yield Run(TAKE, keys, (now, limit - len(taken), names.scope, lease, batch), "write")
                taken.extend(batch_from(reply, batch))
            if len(taken) >= limit:
                return taken
    return taken


def ack_plan(layout: Layout, changes: list[LeaseChange]) -> Generator[Run, Any, None]:
    """Remove (or replace) the lease members of acknowledged entries (:meth:`Leases.release`):
    the removals in one script per slot and at most ``ACK_CHUNK`` members each, a replacement
    (some of a batch acknowledged, decision 0031) in one script each."""
    by_tag: dict[bytes, list[bytes]] = {}
    for scope, lease, smaller in changes:
        tag = layout.names(scope).tag
        if smaller is None:
            by_tag.setdefault(tag, []).append(lease)
        else:
            yield Run(RELEASE, (layout.lease_key(tag), layout.batch_key(tag)), (lease, smaller), "write")
    for tag, members in by_tag.items():
        keys = (layout.lease_key(tag), layout.due_key(tag), layout.batch_key(tag))
        for at in range(0, len(members), ACK_CHUNK):
            yield Run(ACK, keys, (packed(members[at : at + ACK_CHUNK]),), "write")


def packed(members: list[bytes]) -> bytes:
    """Members as the ACK script takes them and the take scripts answer them: each
    ``<length>:<member>``, one after another."""
    return b"".join([b"%d:%s" % (len(member), member) for member in members])


def parse_member(member: bytes) -> Taken | None:
    """``(scope, key, value, deadline)`` of a lease member; ``None`` if it is not one of ours."""
    try:
        at, parts = 0, []
        for _ in range(2):
            colon = member.index(b":", at)
            size = int(member[at:colon])
            parts.append(member[colon + 1 : colon + 1 + size].decode("utf-8"))
            at = colon + 1 + size
        colon = member.index(b":", at)
        deadline = deadline_of(member[at:colon])
    except (ValueError, UnicodeDecodeError):
        return None  # only this adapter's scripts write members, with names the state API gave
    return parts[0], parts[1], member[colon + 1 :], deadline


def claimed_from(reply: Any) -> list[Parsed]:
    """The entries of a take script's packed reply (members packed as :func:`packed` packs them,
    each parsed as :func:`parse_member` parses it) in one pass, in half their time (the sweeper parses up to
    10,000 a second under the GIL the application wants): a reply mostly holds one scope, so its
    part of a member is parsed once and matched after.

    :raises BackendError: when the reply is not packed members (a server that ran another
        script); a member that is not one of ours is skipped.
    """
    data = bytes(reply)
    out: list[Parsed] = []
    append, index = out.append, data.index
    at, end = 0, len(data)
    head, scope = b"", ""  # the last scope's part of a member ("<length>:<scope>"), and the scope
    try:
        while at < end:
            colon = index(b":", at)
            start = colon + 1
            stop = start + int(data[at:colon])
            if stop > end or stop < start:
                raise ValueError("a member runs past the reply")
            at = stop
            member = data[start:stop]
            try:
                if head and member.startswith(head):  # the length prefix makes the match exact
                    cut = len(head)
                else:
                    colon = member.index(b":")
                    cut = colon + 1 + int(member[:colon])
                    scope = member[colon + 1 : cut].decode("utf-8")
                    head = member[:cut]
                colon = member.index(b":", cut)
                after = colon + 1 + int(member[cut:colon])
                key = member[colon + 1 : after].decode("utf-8")
                colon = member.index(b":", after)
                digits = member[after:colon]
                deadline = int(digits) if digits.isdigit() else deadline_of(digits)
            except (ValueError, UnicodeDecodeError):
                head = b""  # not one of ours (see parse_member): skipped
                continue
            append(((scope, key, member[colon + 1 :], deadline), member))
    except ValueError as exc:
        raise BackendError(
            f"redis: a take script answered {len(data)} bytes that are not packed members ({exc})"
        ) from None
    return out


def frames(reply: Any) -> list[bytes]:
    """The members of a packed reply (:func:`packed`), whatever they hold.

    :raises BackendError: when the reply is not packed members."""
    data = bytes(reply)
    out: list[bytes] = []
    at, end = 0, len(data)
    try:
        while at < end:
            colon = data.index(b":", at)
            stop = colon + 1 + int(data[at:colon])
            if stop > end or stop <= colon:
                raise ValueError("a member runs past the reply")
            out.append(data[colon + 1 : stop])
            at = stop
    except ValueError as exc:
        raise BackendError(
            f"redis: a take script answered {len(data)} bytes that are not packed members ({exc})"
        ) from None
    return out


def batch_from(reply: Any, batch: bytes) -> list[Claimed]:
    """The entries of a TAKE or TAKE_KEPT reply, each held by the lease of ``batch``."""
    return [(entry, member, batch) for entry, member in claimed_from(reply)]


def retaken_from(reply: Any) -> list[Claimed]:
    """The entries of a RETAKE reply: its leases, each a batch (``<id>:<its entries packed>``) or,
    leased by an earlier version, one entry's own member."""
    out: list[Claimed] = []
    for item in frames(reply):
        if item.startswith(BATCH_MARK):
            colon = item.find(b":")
            if colon < 0:
                raise BackendError(f"redis: a retaken batch without its entries ({len(item)} bytes)")
            batch = item[:colon]
            out.extend((entry, member, batch) for entry, member in claimed_from(item[colon + 1 :]))
        elif (entry := parse_member(item)) is not None:
            out.append((entry, item, item))
    return out


class Leases:
    """The entries this adapter claimed and has not acknowledged yet, with their members and
    lease members (thread-safe): ``ack_expired`` gets the entries back, the ACK script needs the
    lease members, and a batch acknowledged in part keeps the rest (their members, packed)."""

    def __init__(self) -> None:
        self._held: dict[Taken, tuple[bytes, bytes]] = {}
        #: each lease member held: its entries still held, in the order they were claimed
        self._leases: dict[bytes, dict[Taken, bytes]] = {}
        self._lock = threading.Lock()

    def hold(self, claimed: list[Claimed]) -> list[Taken]:
        with self._lock:
            held, leases = self._held, self._leases
            for entry, member, lease in claimed:
                held[entry] = member, lease
                batch = leases.get(lease)
                if batch is None:
                    batch = leases[lease] = {}
                batch[entry] = member
        return [claim[0] for claim in claimed]

    def release(self, taken: Sequence[Taken]) -> list[LeaseChange]:
        """What acknowledging ``taken`` changes in the lease sets: each lease member whose
        entries are all in ``taken`` is removed; a batch holding others too keeps only those.
        Nothing is forgotten until :meth:`drop`."""
        acked: dict[bytes, int] = {}
        done = dict.fromkeys(taken)  # in order; an entry named twice is acknowledged once
        with self._lock:
            held, leases = self._held, self._leases
            for entry in done:
                claim = held.get(entry)
                if claim is not None:
                    acked[claim[1]] = acked.get(claim[1], 0) + 1
            changes: list[LeaseChange] = []
            for lease, count in acked.items():
                batch = leases[lease]
                scope = next(iter(batch))[0]
                if count == len(batch):
                    changes.append((scope, lease, None))
                else:
                    rest = [member for entry, member in batch.items() if entry not in done]
                    changes.append((scope, lease, packed(rest)))
        return changes

    def drop(self, taken: Sequence[Taken], changes: list[LeaseChange]) -> None:
        """Forget ``taken`` once acknowledged (``changes``: what :meth:`release` answered)."""
        with self._lock:
            held, leases = self._held, self._leases
            for entry in taken:
                claim = held.pop(entry, None)
                if claim is not None:
                    leases[claim[1]].pop(entry, None)
            for _scope, lease, rest in changes:
                if rest is None:
                    leases.pop(lease, None)

"""Entry deadlines: the ``expires`` script argument, the slot registry and the sweep plan.

A sweeper must find every deadline without scanning the keyspace. Each slot's due index
(``layout``) lists the scopes of that slot with deadlines; the registry set lists the slots
(their tags) that have a due index. A write that stores a deadline registers its slot first
(``SADD``, once a minute per process per slot: :class:`Registered`), so a slot holding
deadlines is always in the registry. The registry never shrinks (16,384 tags at most).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import Any, Final

from iii_state_core.adapter import Expired
from iii_state_core.expiry import KEEP, ExpiresAt, now_ms

from .layout import KEPT_MARKER, Layout
from .listing import Read, ReadMany, Run
from .scripts import TAKE, TAKE_KEPT

#: Seconds a process trusts that a slot it registered is still in the registry.
REGISTER_EVERY: Final = 60.0
#: Without expiry events, a process that stores deadlines removes expired entries from its
#: writes: at most this many, at most once per this many seconds (nobody else would).
SWEEP_LIMIT: Final = 200
SWEEP_EVERY: Final = 1.0

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


def take_plan(layout: Layout, limit: int) -> Generator[Read | ReadMany | Run, Any, list[Taken]]:
    """Take (delete and return) up to ``limit`` expired entries, each exactly once across takers."""
    now = now_ms()
    taken: list[Taken] = []
    if limit < 1:
        return taken
    tags = sorted(bytes(t) for t in (yield Read(("SMEMBERS", layout.registry_key()))))
    if not tags:
        return taken
    # every slot's due scopes in one pipeline: a poll is a few round trips however many slots
    asks = tuple(("ZRANGEBYSCORE", layout.due_key(tag), "-inf", now, "LIMIT", 0, limit) for tag in tags)
    for tag, due in zip(tags, (yield ReadMany(asks)), strict=True):
        for member in due:
            if bytes(member) == KEPT_MARKER:  # expired fields a write or delete met: taken first
                kept = (layout.kept_key(tag), layout.due_key(tag))
                taken.extend(_quadruples((yield Run(TAKE_KEPT, kept, (limit - len(taken),), "write"))))
                if len(taken) >= limit:
                    return taken
                continue
            try:
                scope = bytes(member).decode("utf-8")
            except UnicodeDecodeError:
                continue  # not written by this adapter
            names = layout.names(scope)
            if names.tag != tag:
                continue  # not written by this adapter either
            keys = (names.hash, names.deadlines, names.due)
            reply = yield Run(TAKE, keys, (now, limit - len(taken), names.scope), "write")
            for i in range(0, len(reply), 3):
                try:
                    key = bytes(reply[i]).decode("utf-8")
                except UnicodeDecodeError:
                    continue  # a field no state call can name, given a deadline by something else
                taken.append((scope, key, bytes(reply[i + 1]), deadline_of(reply[i + 2])))
            if len(taken) >= limit:
                return taken
    return taken


def _quadruples(reply: Any) -> list[Taken]:
    out: list[Taken] = []
    for i in range(0, len(reply), 4):
        try:
            scope, key = bytes(reply[i]).decode("utf-8"), bytes(reply[i + 1]).decode("utf-8")
        except UnicodeDecodeError:
            continue  # only this adapter's scripts push here, with names the state API gave
        out.append((scope, key, bytes(reply[i + 2]), deadline_of(reply[i + 3])))
    return out

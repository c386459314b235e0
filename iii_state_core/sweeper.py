"""Expiry events (contract § Expiry): a sweeper per open store takes expired entries and emits
one ``state:expired`` event for each, through the store's own event path.

``take_expired`` claims atomically, so each expiry is delivered by exactly one sweeper however
many processes or worker replicas share the store, and an entry that expired while nothing ran
is still in the store, waiting for the next sweeper. After delivering a batch the sweeper calls
``ack_expired``: an adapter whose claims are leases removes the entries then, so a sweeper killed
before it (or a claim whose reply was lost) leaves them to be claimed again once the lease lapses.

So delivery is at least once: a sweeper killed between its handlers and the acknowledgement
delivers that chunk again from another sweeper. Every event of one expiry carries the same
``expiry_id`` (scope, key and deadline, hashed), for receivers to drop a redelivery; a sweeper
drops one itself when it is its own (the acknowledgement failed and it claims the entry again).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import operator
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, TypeVar, cast

from .adapter import Adapter, AsyncAdapter, Expired
from .driver import redact
from .errors import StoredValueError
from .events import EventBus
from .results import StateEvent
from .values import JSON, decode_all, decode_stored

log = logging.getLogger("iii_state.expiry")

#: The most entries one ``take_expired`` call claims; a full batch is followed at once by another.
BATCH: Final = 500
#: The shortest poll interval, whatever an adapter declares.
MIN_INTERVAL_S: Final = 0.05
#: Back-off after a failed ``take_expired``: doubles from the poll interval up to this. Kept
#: short: once the store answers again, what expired meanwhile is delivered within it, and one
#: failed poll per 5 s costs a down server little (a 30 s cap once kept a fault campaign's drain,
#: opened while DynamoDB restarted, asleep through its whole 30 s window).
MAX_BACKOFF_S: Final = 5.0
#: Entries delivered between two ``ack_expired`` calls: a sweeper killed after its handlers and
#: before the acknowledgement delivers at most this many twice (decision 0016). One batch: each
#: acknowledgement is a write with its round trip, 64 of them cost the Redis sweeper a third of
#: its CPU per event (decision 0028).
ACK_CHUNK: Final = 500
#: Tries of ``ack_expired`` before the batch is left to its leases (retried at once: the lease
#: lapses otherwise, and the batch is delivered again).
ACK_TRIES: Final = 3
#: How long closing a store waits for its sweeper to deliver what it already took.
STOP_WAIT_S: Final = 10.0
#: Expiries whose acknowledgement failed that a sweeper remembers (to drop them when it claims
#: them again): the oldest are forgotten past this.
REMEMBERED: Final = 100_000

#: True in a sweeper process (``expiry_sweeper: process``): nothing there waits for the GIL, so
#: an adapter's sweeping need not hand it over (memcached's ``pace``).
alone = False


def poll_interval(delay_ms: int) -> float:
    """Seconds between two polls for an adapter guaranteeing ``delay_ms``: half of it."""
    return max(MIN_INTERVAL_S, delay_ms / 2000)


_blake2b = hashlib.blake2b


def expiry_id(scope: str, key: str, deadline: int) -> str:
    """The id of one expiry: the same whichever sweeper claims it and however often, another for
    any other expiry (an entry's deadline is in the future when it is written, so one key never
    expires twice at one deadline). 32 hex digits of a 128-bit BLAKE2b over the lengths and the
    three (BLAKE2b: about half of SHA-256's time on inputs this short, once per event)."""
    text = f"{len(scope)}:{scope}{len(key)}:{key}{deadline}"
    return _blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def expired_event(entry: Expired) -> StateEvent:
    """The ``state:expired`` event of one taken entry: ``old_value`` the value it held."""
    scope, key, _raw, deadline = entry
    return StateEvent("state:expired", scope, key, _old_value(entry), None, expiry_id(scope, key, deadline))


def _old_value(entry: Expired) -> JSON:
    try:
        return decode_stored(entry[2])
    except StoredValueError as exc:
        log.warning(
            "expired entry on scope=%r key=%r held bytes that are not JSON (%s); old_value is null",
            entry[0], entry[1], exc,
        )  # fmt: skip
        return None


class _Unfrozen:
    """A ``StateEvent`` being built by :func:`expired_events`: the same slots in the same order,
    without the frozen ``__setattr__``, so each is set by a plain attribute store (which the
    interpreter specialises for slots); then the object becomes what it is, a ``StateEvent``,
    by ``__class__`` assignment (allowed between classes of one layout). A frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__``, and setting them through their
    slot descriptors still took 2.5 times as long as this (six calls of a method wrapper)."""

    __slots__ = StateEvent.__slots__
    event_type: str
    scope: str
    key: str
    old_value: JSON
    new_value: JSON
    expiry_id: str | None


def _as_event(building: _Unfrozen) -> StateEvent:
    building.__class__ = StateEvent  # type: ignore[assignment]
    return cast("StateEvent", building)


# a StateEvent whose layout no longer matches fails here, on import, not on the first expiry
_as_event(_Unfrozen())


def _id_tails(entries: list[Expired]) -> list[bytes]:
    """The part of each entry's ``expiry_id`` text after the scope, UTF-8: encoded in one call,
    split on NUL (per entry when some key holds a NUL itself)."""
    tails = [f"{len(key)}:{key}{deadline}" for _scope, key, _raw, deadline in entries]
    encoded = "\0".join(tails).encode("utf-8", "surrogatepass").split(b"\0")
    if len(encoded) == len(tails):
        return encoded
    return [tail.encode("utf-8", "surrogatepass") for tail in tails]


#: One expiry's event, decoded (:func:`expiry_parts`): scope, key, the value it held, its id.
ExpiryParts = tuple[str, str, JSON, str]


def expiry_parts(entries: list[Expired]) -> list[ExpiryParts]:
    """What :func:`expired_events` builds each event of, in bulk: the values decoded in one
    :func:`decode_all`, each scope's part of the ids hashed once per batch and the rest of their
    texts encoded in one call. (A sweeper process sends these: decoding and hashing then cost
    the application's process nothing.)"""
    try:
        values = decode_all([entry[2] for entry in entries])
    except StoredValueError:  # some entry held bytes that are not JSON: decode one by one
        values = [_old_value(entry) for entry in entries]
    hashers: dict[str, Any] = {}
    parts: list[ExpiryParts] = []
    append = parts.append
    for (scope, key, _raw, _deadline), old, tail in zip(entries, values, _id_tails(entries), strict=True):
        hasher = hashers.get(scope)
        if hasher is None:  # expiry_id's text, its scope part hashed once
            head = f"{len(scope)}:{scope}".encode("utf-8", "surrogatepass")
            hasher = hashers[scope] = _blake2b(head, digest_size=16)
        hasher = hasher.copy()
        hasher.update(tail)
        append((scope, key, old, hasher.hexdigest()))
    return parts


def events_of(parts: Iterable[ExpiryParts]) -> list[StateEvent]:
    """The ``state:expired`` events of :func:`expiry_parts`, each built as an :class:`_Unfrozen`
    one (the sweeper builds up to 10,000 a second, holding the GIL the application's threads want)."""
    events: list[StateEvent] = []
    append = events.append
    for scope, key, old, expiry in parts:
        event = _Unfrozen()
        event.event_type = "state:expired"
        event.scope = scope
        event.key = key
        event.old_value = old
        event.new_value = None
        event.expiry_id = expiry
        event.__class__ = StateEvent  # type: ignore[assignment]  # see _Unfrozen
        append(cast("StateEvent", event))
    return events


def expired_events(entries: list[Expired]) -> list[StateEvent]:
    """:func:`expired_event` of each entry, the same events built in bulk."""
    return events_of(expiry_parts(entries))


class Backoff:
    """Poll interval, doubled after each failure of ``take_expired`` (logged once per streak)."""

    def __init__(self, interval: float, describe: str, secrets: list[str]) -> None:
        self.interval = interval
        self.wait = interval
        self._describe = describe
        self._secrets = secrets
        self._failing = False

    def failed(self, exc: Exception) -> None:
        self.wait = min(MAX_BACKOFF_S, max(self.wait * 2, self.interval))
        detail = redact(str(exc) or type(exc).__name__, self._secrets)
        level = logging.DEBUG if self._failing else logging.WARNING
        log.log(level, "expiry sweeper: taking expired entries from %s failed (%s: %s); retrying in %.2g s",
                self._describe, type(exc).__name__, detail, self.wait)  # fmt: skip
        self._failing = True

    def succeeded(self) -> None:
        if self._failing:
            log.warning("expiry sweeper: %s answers again", self._describe)
        self._failing = False
        self.wait = self.interval


def wanted_events(taken: list[Expired], events: EventBus) -> list[StateEvent]:
    """The events of ``taken`` that reach a subscription or the plugin hook, in order.

    An entry nothing in this process listens to is not decoded: its event would go nowhere (the
    entry is taken either way, as it always was when nothing listened).
    """
    return expired_events(wanted(taken, events))


def wanted_parts(parts: list[ExpiryParts], events: EventBus) -> list[StateEvent]:
    """:func:`wanted_events` of expiries a sweeper process decoded (:func:`expiry_parts`)."""
    return events_of(wanted(parts, events))


def wanted(items: list[_Item], events: EventBus) -> list[_Item]:
    """The items (an entry or its parts: scope and key first) whose events reach a subscription
    or the plugin hook."""
    scopes = events.wanted_scopes()
    if scopes is not None:  # one look-up per scope of the batch, the usual case
        if set(map(_scope_of, items)) <= scopes:
            return items
        return [item for item in items if item[0] in scopes]
    wants = events.wanted()
    if wants is None:
        return items
    return [item for item in items if wants(item[0], item[1])]


_scope_of = operator.itemgetter(0)
_Item = TypeVar("_Item", Expired, ExpiryParts)


class Unacknowledged:
    """Expiries this sweeper delivered whose acknowledgement failed: their leases lapse and the
    entries are claimed again, maybe by this sweeper, which then acknowledges them without
    delivering them twice (what another sweeper claims again it delivers again)."""

    def __init__(self) -> None:
        #: (scope, key, deadline): one expiry, without the value it held
        self._delivered: OrderedDict[tuple[str, str, int], None] = OrderedDict()

    def fresh(self, chunk: list[Expired]) -> list[Expired]:
        """The entries of ``chunk`` whose events this sweeper has not delivered."""
        if not self._delivered:
            return chunk
        return [entry for entry in chunk if (entry[0], entry[1], entry[3]) not in self._delivered]

    def failed(self, chunk: Sequence[Expired]) -> None:
        for scope, key, _value, deadline in chunk:
            self._delivered[scope, key, deadline] = None
        while len(self._delivered) > REMEMBERED:
            self._delivered.popitem(last=False)

    def acknowledged(self, chunk: Sequence[Expired]) -> None:
        if self._delivered:
            for scope, key, _value, deadline in chunk:
                self._delivered.pop((scope, key, deadline), None)


def _ack_failed(exc: Exception, attempt: int, count: int) -> None:
    """Log a failed ``ack_expired``; raise it after the last try (the sweeper backs off then)."""
    if attempt >= ACK_TRIES:
        log.warning(
            "expiry sweeper: acknowledging %d delivered expiries failed %d times (%s); their "
            "leases lapse and they will be delivered again", count, attempt, type(exc).__name__,
        )  # fmt: skip
        raise exc


def _chunks(taken: list[Expired]) -> list[list[Expired]]:
    return [taken[at : at + ACK_CHUNK] for at in range(0, len(taken), ACK_CHUNK)]


def _acked(adapter: Adapter, taken: list[Expired], unacknowledged: Unacknowledged) -> None:
    for attempt in range(1, ACK_TRIES + 1):
        try:
            adapter.ack_expired(taken)
        except Exception as exc:
            if attempt >= ACK_TRIES:
                unacknowledged.failed(taken)
            _ack_failed(exc, attempt, len(taken))
        else:
            unacknowledged.acknowledged(taken)
            return


def sweep(
    adapter: Adapter,
    deliver: Callable[[list[Expired]], object],
    unacknowledged: Unacknowledged,
    stopping: Callable[[], bool],
) -> int:
    """One pass of a sync sweeper: take and deliver until none are left (or ``stopping()``).

    ``deliver`` gets the entries of each chunk whose events this sweeper has not delivered yet;
    when it returns they are acknowledged. :returns: how many entries were taken.
    """
    delivered = 0
    while True:
        taken = adapter.take_expired(BATCH)
        # already claimed: deliver all of them, even when stopping
        for chunk in _chunks(taken):
            # nothing between the handlers and the acknowledgement: a kill there doubles
            deliver(unacknowledged.fresh(chunk))
            _acked(adapter, chunk, unacknowledged)
        delivered += len(taken)
        if len(taken) < BATCH or stopping():
            return delivered


class ThreadSweeper:
    """The sync store's sweeper: a daemon thread polling ``take_expired``."""

    def __init__(self, adapter: Adapter, events: EventBus, interval: float) -> None:
        self._adapter = adapter
        self._events = events
        self._backoff = Backoff(interval, adapter.describe(), adapter.secrets())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="iii-state-expiry", daemon=True)
        self._unacknowledged = Unacknowledged()

    def start(self) -> None:
        self._thread.start()

    def sweep(self) -> int:
        """One pass: take and deliver until none are left. :returns: how many were delivered."""
        return sweep(self._adapter, self._deliver, self._unacknowledged, self._stop.is_set)

    def _deliver(self, fresh: list[Expired]) -> None:
        self._events.emit_many(wanted_events(fresh, self._events))

    def _run(self) -> None:
        # wait first: whoever opened the store subscribes before the first sweep delivers
        while not self._stop.wait(self._backoff.wait):
            try:
                self.sweep()
            except Exception as exc:
                self._backoff.failed(exc)
            else:
                self._backoff.succeeded()

    def stop(self) -> None:
        """Stop polling and wait for the batch being delivered (bounded by STOP_WAIT_S)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(STOP_WAIT_S)
            if self._thread.is_alive():
                log.warning("expiry sweeper still delivering after %g s; leaving it", STOP_WAIT_S)


class TaskSweeper:
    """The async store's sweeper: a task on the store's event loop polling ``take_expired``."""

    def __init__(
        self,
        adapter: AsyncAdapter,
        events: EventBus,
        interval: float,
        describe: str,
        secrets: list[str],
    ) -> None:
        self._adapter = adapter
        self._events = events
        self._backoff = Backoff(interval, describe, secrets)
        self._stop = asyncio.Event()
        #: The sweeping task, once started (the async store checks it on every call).
        self.task: asyncio.Task[None] | None = None
        self._unacknowledged = Unacknowledged()

    @property
    def started(self) -> bool:
        """Running on the current loop (a task left on a loop that ended does not count)."""
        task = self.task
        if task is None or task.done():
            return False
        try:
            return task.get_loop() is asyncio.get_running_loop()
        except RuntimeError:  # no loop running here
            return True

    def start(self) -> None:
        """Start on the running loop (call from inside it). The async store may serve one loop
        after another (``asyncio.run`` twice): a task left on an ended loop is replaced."""
        if not self.started:
            self._stop = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self._run(), name="iii-state-expiry")

    async def sweep(self) -> int:
        delivered = 0
        while True:
            taken = await self._adapter.take_expired(BATCH)
            for chunk in _chunks(taken):
                for event in wanted_events(self._unacknowledged.fresh(chunk), self._events):
                    await self._events.emit_async(event)
                for attempt in range(1, ACK_TRIES + 1):
                    try:
                        await self._adapter.ack_expired(chunk)
                    except Exception as exc:
                        if attempt >= ACK_TRIES:
                            self._unacknowledged.failed(chunk)
                        _ack_failed(exc, attempt, len(chunk))
                    else:
                        self._unacknowledged.acknowledged(chunk)
                        break
            delivered += len(taken)
            if len(taken) < BATCH or self._stop.is_set():
                return delivered

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stop.wait(), self._backoff.wait)
                return
            except asyncio.TimeoutError:
                pass
            try:
                await self.sweep()
            except Exception as exc:
                self._backoff.failed(exc)
            else:
                self._backoff.succeeded()

    async def stop(self) -> None:
        self._stop.set()
        task = self.task
        if task is None or task is asyncio.current_task() or task.done():
            return
        if task.get_loop() is not asyncio.get_running_loop():
            task.cancel()  # its loop is not this one (and no longer runs it): nothing to wait for
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_WAIT_S)
        except asyncio.TimeoutError:
            log.warning("expiry sweeper still delivering after %g s; cancelled", STOP_WAIT_S)
            task.cancel()

"""In-process reactions (contract § Events): subscriptions with scope/key filters and a condition."""

from __future__ import annotations

import contextvars
import inspect
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .results import StateEvent

log = logging.getLogger("iii_state.events")

Handler = Callable[[StateEvent], Any]
Condition = Callable[[StateEvent], Any]


@dataclass(frozen=True, eq=False)
class Subscription:
    handler: Handler
    scope: str | None = None
    key: str | None = None
    condition: Condition | None = None

    def matches(self, event: StateEvent) -> bool:
        return self.matches_key(event.scope, event.key)

    def matches_key(self, scope: str, key: str) -> bool:
        return (self.scope is None or self.scope == scope) and (self.key is None or self.key == key)


class EventBus:
    """Fans each write's event out to subscriptions and to the plugins' ``iii_state_event`` hook.

    A condition that returns exactly ``False`` skips its handler; any other result runs it.
    Handlers run after the write and cannot undo it; a failing one is logged and the next runs.
    """

    def __init__(self, enabled: bool = True, hook: Callable[[StateEvent], Any] | None = None):
        self.enabled = enabled
        self._hook = hook
        self._subscriptions: tuple[Subscription, ...] = ()
        self._lock = threading.Lock()

    def subscribe(self, subscription: Subscription) -> Callable[[], None]:
        """Add a subscription; returns a function that removes it again."""
        with self._lock:
            self._subscriptions = (*self._subscriptions, subscription)

        def unsubscribe() -> None:
            with self._lock:
                self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)

        return unsubscribe

    @property
    def active(self) -> bool:
        return self.enabled and (bool(self._subscriptions) or self._hook is not None)

    def listening(self) -> bool:
        """:attr:`active` as a method (one call less): the store's plans ask it before building
        an event nobody would receive (see ``Limits.listening``)."""
        return self.enabled and (bool(self._subscriptions) or self._hook is not None)

    def emit(self, event: StateEvent) -> None:
        """Deliver ``event``; a write made by a handler is delivered after that handler returns.

        Queued, not nested: a handler that writes the key it watches makes a loop of writes, not
        a recursion, and the loop stops after MAX_REACTION_DEPTH generations (logged).
        """
        if not self.enabled:
            return
        delivery: _Delivery | None = getattr(_thread_delivery, "current", None)
        if delivery is not None and delivery.draining:
            delivery.enqueue(self, event)
            return
        delivery = _thread_delivery.current = _Delivery.of(self, event)
        try:
            while delivery.queue:
                bus, queued = delivery.next()
                bus._deliver(queued)
        finally:
            _thread_delivery.current = None

    def wanted(self) -> Callable[[str, str], bool] | None:
        """Whether an event on (scope, key) would reach anything (the plugin hook or a
        subscription), so a caller may skip building the others; ``None`` when every event would.

        A snapshot: for one batch of events, not to keep.
        """
        subscriptions = self._subscriptions
        if not self.enabled:
            return lambda _scope, _key: False
        if self._hook is not None or any(s.scope is None and s.key is None for s in subscriptions):
            return None
        if all(s.key is None for s in subscriptions):  # scope filters only: one set look-up
            scopes = frozenset(s.scope for s in subscriptions)
            return lambda scope, _key: scope in scopes
        return lambda scope, key: any(s.matches_key(scope, key) for s in subscriptions)

    def wanted_scopes(self) -> frozenset[str] | None:
        """The scopes events are wanted on when every subscription filters by scope alone (and
        there is no plugin hook): an event on any other scope reaches nothing, one on these
        reaches a subscription whatever its key. ``None`` when some other filter applies (then
        ask :meth:`wanted`). Lets the sweeper sort a batch by its few scopes, not entry by entry.
        """
        if not self.enabled:
            return frozenset()
        subscriptions = self._subscriptions
        if self._hook is not None or any(s.scope is None or s.key is not None for s in subscriptions):
            return None
        return frozenset(s.scope for s in subscriptions if s.scope is not None)

    def emit_many(self, events: Iterable[StateEvent]) -> None:
        """:meth:`emit` each of ``events`` in turn, each one's reactions delivered before the next
        event (as separate ``emit`` calls would), with one thread-state look-up for all."""
        if not self.enabled:
            return
        current: _Delivery | None = getattr(_thread_delivery, "current", None)
        if current is not None and current.draining:
            for event in events:
                current.enqueue(self, event)
            return
        delivery: _Delivery | None = None
        deliver = self._deliver
        try:
            for event in events:
                if delivery is None:
                    delivery = _thread_delivery.current = _Delivery.of(self, event)
                    delivery.next()
                else:  # a new generation-0 write, delivered without a trip through the queue
                    delivery.restart()
                deliver(event)
                while delivery.queue:  # the writes its handlers made
                    bus, queued = delivery.next()
                    bus._deliver(queued)
        finally:
            _thread_delivery.current = None

    def _deliver(self, event: StateEvent) -> None:
        if self._hook is not None:
            _guarded("iii_state_event hook", self._hook, event)
        scope, key = event.scope, event.key
        # Subscription.matches_key, inlined (this runs once per event and subscription); the
        # tuple is replaced, never changed, by subscribe: a handler subscribing another one
        # does not reach this event
        for sub in self._subscriptions:
            if (sub.scope is not None and sub.scope != scope) or (sub.key is not None and sub.key != key):
                continue
            if sub.condition is not None:
                ok, verdict = _guarded("condition", sub.condition, event)
                if not ok or verdict is False:
                    continue
            try:  # _guarded, inlined: this runs once per event and handler
                sub.handler(event)
            except Exception:
                _report("handler", sub.handler, event)

    async def emit_async(self, event: StateEvent) -> None:
        """Like :meth:`emit`, awaiting handlers and conditions that are coroutines.

        Returns at once when nothing listens (the async store calls it without asking
        :attr:`active` first for a single event: one call less per write where something does).
        """
        if not self.enabled or not (self._subscriptions or self._hook is not None):
            return
        delivery = _task_delivery.get()
        if delivery is not None and delivery.draining:
            delivery.enqueue(self, event)
            return
        # The write's own event is delivered directly; the queue holds only the writes its
        # handlers make (usually none): no queue round trip per write.
        delivery = _Delivery()
        token = _task_delivery.set(delivery)
        try:
            await self._deliver_async(event)
            while delivery.queue:
                bus, queued = delivery.next()
                await bus._deliver_async(queued)
        finally:
            delivery.draining = False
            _task_delivery.reset(token)

    async def _deliver_async(self, event: StateEvent) -> None:
        # as _deliver, with _guarded_async inlined for handlers: this runs once per write, and
        # iterating the tuple is a snapshot (subscribe replaces it, never changes it)
        if self._hook is not None:
            _guarded("iii_state_event hook", self._hook, event)
        scope, key = event.scope, event.key
        for sub in self._subscriptions:
            if (sub.scope is not None and sub.scope != scope) or (sub.key is not None and sub.key != key):
                continue
            if sub.condition is not None:
                ok, verdict = await _guarded_async("condition", sub.condition, event)
                if not ok or verdict is False:
                    continue
            handler = sub.handler
            try:
                result = handler(event)
                if result is not None and inspect.isawaitable(result):  # a sync handler: no call
                    await result
            except Exception:
                _report("handler", handler, event)


#: How many generations of writes made by handlers one write may set off before delivery stops.
MAX_REACTION_DEPTH = 100


class _Delivery:
    """The events one thread (or asyncio task) is delivering, oldest first, with generations.

    Generation 0 is the caller's write; a write a handler makes while an event of generation g
    is delivered is generation g + 1.
    """

    # Class-level defaults, so the async store's one delivery per write is made without an
    # ``__init__`` call; the queue exists once a handler writes (most never do).
    queue: deque[tuple[EventBus, StateEvent, int]] | None = None
    generation = 0
    draining = True
    _reported = False

    @classmethod
    def of(cls, bus: EventBus, event: StateEvent) -> _Delivery:
        """A delivery with ``event`` queued as generation 0."""
        delivery = cls()
        delivery.queue = deque([(bus, event, 0)])
        return delivery

    def restart(self) -> None:
        """Deliver the next event as a new generation-0 write (the queue is empty)."""
        self.generation = 0
        self._reported = False

    def next(self) -> tuple[EventBus, StateEvent]:
        assert self.queue is not None  # only called while the queue holds something
        bus, event, self.generation = self.queue.popleft()
        return bus, event

    def enqueue(self, bus: EventBus, event: StateEvent) -> None:
        generation = self.generation + 1
        if generation <= MAX_REACTION_DEPTH:
            if self.queue is None:
                self.queue = deque()
            self.queue.append((bus, event, generation))
            return
        if not self._reported:
            self._reported = True
            log.error(
                "state reactions stopped: a chain of %d writes made by handlers (a handler probably "
                "writes what it watches) reached %s on scope=%r key=%r; the writes stand, their "
                "events are not delivered",
                MAX_REACTION_DEPTH, event.event_type, event.scope, event.key,
            )  # fmt: skip


_thread_delivery = threading.local()
_task_delivery: contextvars.ContextVar[_Delivery | None] = contextvars.ContextVar(
    "iii_state_delivery", default=None
)


def _report(what: str, fn: Callable[..., Any], event: StateEvent) -> None:
    log.exception(
        "state %s %r failed for %s on scope=%r key=%r; the write stands",
        what,
        fn,
        event.event_type,
        event.scope,
        event.key,
    )


def _guarded(what: str, fn: Callable[[StateEvent], Any], event: StateEvent) -> tuple[bool, Any]:
    try:
        return True, fn(event)
    except Exception:
        _report(what, fn, event)
        return False, None


async def _guarded_async(what: str, fn: Callable[[StateEvent], Any], event: StateEvent) -> tuple[bool, Any]:
    try:
        result = fn(event)
        if inspect.isawaitable(result):
            result = await result
        return True, result
    except Exception:
        _report(what, fn, event)
        return False, None

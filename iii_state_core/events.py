"""In-process reactions (contract § Events): subscriptions with scope/key filters and a condition."""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
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
        return (self.scope is None or self.scope == event.scope) and (
            self.key is None or self.key == event.key
        )


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

    def _deliveries(self, event: StateEvent) -> list[Subscription]:
        """The subscriptions this event goes to; the plugin hook runs first, here."""
        if self._hook is not None:
            _guarded("iii_state_event hook", self._hook, event)
        return [sub for sub in self._subscriptions if sub.matches(event)]

    def emit(self, event: StateEvent) -> None:
        if not self.enabled:
            return
        for sub in self._deliveries(event):
            if sub.condition is not None:
                ok, verdict = _guarded("condition", sub.condition, event)
                if not ok or verdict is False:
                    continue
            _guarded("handler", sub.handler, event)

    async def emit_async(self, event: StateEvent) -> None:
        """Like :meth:`emit`, awaiting handlers and conditions that are coroutines."""
        if not self.enabled:
            return
        for sub in self._deliveries(event):
            if sub.condition is not None:
                ok, verdict = await _guarded_async("condition", sub.condition, event)
                if not ok or verdict is False:
                    continue
            await _guarded_async("handler", sub.handler, event)


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

"""The ``state`` trigger type (contract § Events reactions): the table of bindings the engine sends, and
the fan-out that calls each matching binding's condition and function after a write."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from iii.triggers import TriggerConfig, TriggerHandler  # type: ignore[import-untyped]

from ..results import StateEvent
from ..values import json_type

log = logging.getLogger("iii_state.worker.reactions")

_CONFIG_FIELDS = ("scope", "key", "condition_function_id")
#: Called (through the engine) after every committed write, for iii 0.25+ observers.
ON_CHANGED_ID = "state::on-changed"

#: ``call(function_id, payload, namespace, metadata)``: an awaited call through the engine.
Caller = Callable[[str, Any, str, "dict[str, Any] | None"], Awaitable[Any]]


@dataclass(frozen=True)
class Binding:
    """One ``state`` trigger: run ``function_id`` after writes matching ``scope``/``key``."""

    id: str
    function_id: str
    scope: str | None
    key: str | None
    condition_function_id: str | None
    metadata: dict[str, Any] | None
    #: Where the target (and its condition) resolves; the engine leaves it out for ``default``.
    namespace: str

    def matches(self, event: StateEvent) -> bool:
        return (self.scope is None or self.scope == event.scope) and (
            self.key is None or self.key == event.key
        )

    def describe(self) -> str:
        where = f"scope={self.scope!r}" if self.scope is not None else "any scope"
        where += f", key={self.key!r}" if self.key is not None else ", any key"
        if self.condition_function_id:
            where += f", if {self.condition_function_id}"
        return f"{self.id} -> {self.function_id} ({where})"


def parse_binding(config: Any) -> Binding:
    """Read a ``registertrigger`` the SDK hands over.

    Unknown config fields are ignored, as the engine's built-in worker does.

    :raises ValueError: ``Failed to parse trigger config: …`` when the config is not an object or
        a field is not a string; the SDK turns it into ``trigger_registration_failed``.
    """
    body = config.config
    if not isinstance(body, dict):
        raise ValueError(f"Failed to parse trigger config: expected an object, got {json_type(body)}")
    values: dict[str, str | None] = {}
    for name in _CONFIG_FIELDS:
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(
                f"Failed to parse trigger config: field `{name}` must be a string, got {json_type(value)}"
            )
        values[name] = value
    return Binding(
        id=config.id,
        function_id=config.function_id,
        scope=values["scope"],
        key=values["key"],
        condition_function_id=values["condition_function_id"],
        metadata=config.metadata,
        namespace=config.namespace or "default",
    )


class TriggerTable(TriggerHandler[Any]):  # type: ignore[misc]  # the SDK ships no type information
    """The live bindings. The SDK calls the two coroutines on its own loop; the worker reads
    :meth:`matching` from its loop, hence the lock.

    The engine re-sends every binding after a reconnect, so :meth:`clear` on a lost connection
    and the replay refills the table with exactly what the engine still holds.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bindings: dict[str, Binding] = {}
        #: The bindings' values as one tuple, replaced (under the lock) on every change and never
        #: changed: :meth:`matching`, run after every write, reads it without taking the lock.
        self._snapshot: tuple[Binding, ...] = ()

    async def register_trigger(self, config: TriggerConfig[Any]) -> None:
        try:
            binding = parse_binding(config)
        except ValueError as exc:
            log.warning("refused state trigger %s for %s: %s", config.id, config.function_id, exc)
            raise
        with self._lock:
            replaced = binding.id in self._bindings
            self._bindings[binding.id] = binding
            self._snapshot = tuple(self._bindings.values())
        log.info("state trigger %s: %s", "updated" if replaced else "registered", binding.describe())

    async def unregister_trigger(self, config: TriggerConfig[Any]) -> None:
        # The SDK passes only the id along on unregister.
        with self._lock:
            binding = self._bindings.pop(config.id, None)
            self._snapshot = tuple(self._bindings.values())
        if binding is not None:
            log.info("state trigger removed: %s", binding.describe())

    def clear(self) -> None:
        with self._lock:
            self._bindings.clear()
            self._snapshot = ()

    def matching(self, event: StateEvent) -> list[Binding]:
        bindings = self._snapshot
        if not bindings:  # the usual worker: no `state` bindings at all
            return []
        return [b for b in bindings if b.matches(event)]

    def __len__(self) -> int:
        return len(self._snapshot)


class Reactions:
    """Fans each event out to the matching bindings, one background task per write.

    The task calls, for each matching binding in turn, the condition (if any; only a result of
    exactly ``false`` skips) and then the function, with the contract § Events event as payload. Nothing
    here can delay or undo the write: the store's event handler only schedules the task.

    :param table: the bindings.
    :param call: how to call a function through the engine.
    :param notify: sends the change document to ``state::on-changed`` (``None``: nobody to tell).
    :param observed: asked at each write whether ``state::on-changed`` may have an observer;
        ``False`` skips the notification of that write (see ``observers.maybe_observed``).
    """

    def __init__(
        self,
        table: TriggerTable,
        call: Caller,
        notify: Callable[[dict[str, Any]], Awaitable[Any]] | None = None,
        observed: Callable[[], bool] = lambda: True,
    ) -> None:
        self._table = table
        self._call = call
        self._notify = notify
        self._observed = observed
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """:returns: how many writes still have reactions running."""
        return len(self._tasks)

    def on_event(self, event: StateEvent) -> None:
        """The store's ``on_change`` handler; runs on the worker's loop, returns at once."""
        bindings = self._table.matching(event)
        notify = self._notify if self._notify is not None and self._observed() else None
        if not bindings and notify is None:
            return  # nothing reacts and nobody observes: no task, no payload
        task = asyncio.get_running_loop().create_task(self._fan_out(event, bindings, notify))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the running reactions, then cancel the rest.

        :returns: how many were cancelled.
        """
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        left = [t for t in self._tasks if not t.done()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.gather(*left, return_exceptions=True)
        return len(left)

    async def _fan_out(
        self,
        event: StateEvent,
        bindings: list[Binding],
        notify: Callable[[dict[str, Any]], Awaitable[Any]] | None,
    ) -> None:
        payload = event.to_wire()
        if notify is not None:
            try:
                await notify(payload)
            except Exception as exc:
                log.warning("%s for %s on scope=%r key=%r failed (%s)", ON_CHANGED_ID, event.event_type,
                            event.scope, event.key, _reason(exc))  # fmt: skip
        for binding in bindings:
            if binding.condition_function_id is not None:
                try:
                    verdict = await self._call(
                        binding.condition_function_id, payload, binding.namespace, None
                    )
                except Exception as exc:
                    log.warning(
                        "state trigger %s: condition %s failed (%s); %s skipped for %s on scope=%r key=%r",
                        binding.id, binding.condition_function_id, _reason(exc), binding.function_id,
                        event.event_type, event.scope, event.key,
                    )  # fmt: skip
                    continue
                if verdict is False:
                    log.debug("state trigger %s: condition returned false, skipped", binding.id)
                    continue
            try:
                await self._call(binding.function_id, payload, binding.namespace, binding.metadata)
            except Exception as exc:
                log.warning(
                    "state trigger %s: %s failed for %s on scope=%r key=%r (%s); the write stands",
                    binding.id, binding.function_id, event.event_type, event.scope, event.key, _reason(exc),
                )  # fmt: skip


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

"""The public facades: :class:`StateStore` (sync) and :class:`AsyncStateStore` (asyncio).

Both validate through the same plans (``operations``), so they give identical results.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .adapter import Adapter, AsyncAdapter
from .batch import by_key, many_ops
from .driver import ThreadedAsyncAdapter, run_async, run_sync
from .errors import StateError, StoreClosedError
from .events import Condition, EventBus, Handler, Subscription
from .functions import StateFunctions
from .namespaces import ReservedScopes, load_ledger
from .operations import Limits, Plan
from .results import SetResult
from .sweeper import TaskSweeper, ThreadSweeper, poll_interval
from .sweeper_loop import LoopProcessSweeper
from .sweeper_process import ProcessSweeper, SweeperSpec
from .table import AsyncFront, StateFunction, SyncFront, serve
from .values import JSON
from .wire import decode_call

if TYPE_CHECKING:
    from .config import StateConfig
    from .plugins import Registry


class _Base:
    #: Whether handlers and conditions may be coroutines (only the async store awaits them).
    _awaits_handlers = False

    def __init__(
        self,
        adapter: Adapter,
        limits: Limits,
        events: EventBus,
        settings: StateConfig | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.adapter = adapter
        # bound to this store's own bus, whatever store the limits came from
        self.limits = dataclasses.replace(limits, listening=events.listening)
        self.events = events
        #: How this store was opened, so another process can open the same one.
        self.settings = settings
        self.registry = registry
        self._closed = False
        self._close_lock = threading.Lock()
        #: Scopes the wire refuses (``RESERVED_SCOPE``): bookkeeping and claimed private scopes.
        self.reserved = ReservedScopes()
        self._opened()

    def _opened(self) -> None:
        """Subclass hook: finish setting up once the adapter is in place."""

    def _sweep_interval(self) -> float | None:
        """Seconds between expiry sweeps, or ``None`` when this store emits no expiry events."""
        if self.settings is None or not self.settings.expiry_events:
            return None
        delay = self.capabilities.expiry_event_delay_ms
        return None if delay is None else poll_interval(delay)

    @property
    def capabilities(self) -> Any:
        return type(self.adapter).capabilities

    def on_change(
        self,
        handler: Handler,
        *,
        scope: str | None = None,
        key: str | None = None,
        condition: Condition | None = None,
    ) -> Callable[[], None]:
        """Call ``handler(event)`` after each successful write matching ``scope``/``key``.

        :param condition: called first; only a result of exactly ``False`` skips the handler.
        :returns: a function that removes the subscription.
        :raises TypeError: for ``async def`` handlers on a sync store (use :func:`open_async_store`).
        """
        for what, fn in (("handler", handler), ("condition", condition)):
            if fn is not None and not callable(fn):
                raise TypeError(f"on_change {what} must be callable, got {type(fn).__name__}")
        for what, name in (("scope", scope), ("key", key)):
            if name is not None and not isinstance(name, str):
                raise TypeError(f"on_change {what} must be a string or None, got {type(name).__name__}")
        if not self._awaits_handlers and any(
            inspect.iscoroutinefunction(fn) for fn in (handler, condition) if fn is not None
        ):
            raise TypeError(
                "an async handler or condition needs an async store: open it with open_async_store()"
            )
        return self.events.subscribe(Subscription(handler, scope, key, condition))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.adapter.describe()}>"


def _closed_error(store: _Base) -> StoreClosedError:
    return StoreClosedError(
        f"this store ({store.adapter.describe()}) is closed; nothing was sent. Open a new one with "
        f"open_store() / open_async_store()"
    )


class StateStore(_Base, StateFunctions, SyncFront):
    """Scoped JSON state over one adapter. Thread-safe; use as a context manager or ``close()``.

    One method per state function (``get``, ``set``, ``update`` …), made from the function table.
    With ``expiry_events: true`` a daemon thread delivers ``state:expired`` events until ``close()``
    (with ``expiry_sweeper: process`` a child process claims them, and the thread delivers).
    """

    _sweeper: ThreadSweeper | ProcessSweeper | None = None

    def _opened(self) -> None:
        interval = self._sweep_interval()
        if interval is None:
            return
        if self.settings is not None and self.settings.expiry_sweeper == "process":
            sweeper = ProcessSweeper(
                SweeperSpec(self.settings, self.registry, self.events, interval, self.adapter.describe())
            )
            try:
                sweeper.start()
            except BaseException:
                self.adapter.close()
                raise
            self._sweeper = sweeper
        else:
            self._sweeper = ThreadSweeper(self.adapter, self.events, interval)
            self._sweeper.start()

    def _run(self, function: str, plan: Plan) -> Any:
        if self._closed:
            plan.close()
            raise _closed_error(self)
        result, emitted = run_sync(plan, self.adapter, function)
        if emitted is not None and self.events.active:  # nothing listening: build no delivery
            for event in emitted if isinstance(emitted, list) else (emitted,):
                self.events.emit(event)
        return result

    def trigger(self, request: dict[str, Any]) -> JSON:
        """Run ``{"function_id": "state::…", "payload": {...}}`` and return its JSON result
        (contract § Functions).

        Reserved scopes are refused here (``RESERVED_SCOPE``) and left out of ``list_groups``;
        the typed methods reach every scope (export, import and admin tools need that).

        :raises StateError: whose ``.code`` is the wire code.
        """
        reserved = self.reserved
        if reserved.stale():
            self.refresh_reserved()
        declared, plan = decode_call(self.limits, request, reserved)
        name = declared.id
        result = declared.to_wire(self._run(name, plan))
        return _public(reserved, result) if name == "list_groups" else result

    def get_many(self, scope: str, keys: Iterable[str]) -> dict[str, JSON]:
        """``{key: value}`` (``None`` when missing) in one ``state::batch``.

        :raises StateError: the first operation's error (the batch is not atomic: the others ran).
        """
        ops = many_ops("get", scope, keys)
        return by_key(ops, self.batch(ops))

    def set_many(self, scope: str, values: Mapping[str, JSON]) -> dict[str, SetResult]:
        """Store each ``key: value`` in one ``state::batch``; ``{key: SetResult}``."""
        ops = many_ops("set", scope, (), values)
        return by_key(ops, self.batch(ops))

    def delete_many(self, scope: str, keys: Iterable[str]) -> dict[str, JSON]:
        """Delete each key in one ``state::batch``; ``{key: value removed or None}``."""
        ops = many_ops("delete", scope, keys)
        return by_key(ops, self.batch(ops))

    def refresh_reserved(self) -> None:
        """Re-read the claims ledger (claims made by other processes or replicas)."""
        try:
            ledger, _ = run_sync(_ledger_plan(), self.adapter, "list")
        except StateError as exc:  # the call itself reports the store's trouble
            ledger = self.reserved.unreadable(exc)
        self.reserved.replace(ledger)

    def close(self) -> None:
        with self._close_lock:
            if not self._closed:
                if self._sweeper is not None:  # first, so its handlers may still use the store
                    self._sweeper.stop()
                self._closed = True
                self.adapter.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStateStore(_Base, StateFunctions, AsyncFront):
    """The same surface as :class:`StateStore`, awaited. Adapter calls never block the loop."""

    _awaits_handlers = True
    _sweeper: TaskSweeper | LoopProcessSweeper | None = None
    _sweep_held = False

    def _opened(self) -> None:
        self.async_adapter: AsyncAdapter = self.adapter.async_twin() or ThreadedAsyncAdapter(self.adapter)
        self._describe = self.adapter.describe()
        self._secrets = self.adapter.secrets()
        interval = self._sweep_interval()
        if interval is None:
            return
        if self.settings is not None and self.settings.expiry_sweeper == "process":
            sweeper = LoopProcessSweeper(
                SweeperSpec(self.settings, self.registry, self.events, interval, self._describe)
            )
            try:
                sweeper.open()
            except BaseException:
                self.adapter.close()
                raise
            self._sweeper = sweeper
        else:
            adapter = self.async_adapter
            self._sweeper = TaskSweeper(adapter, self.events, interval, self._describe, self._secrets)
        self._start_sweeper()

    def hold_expiry_events(self) -> None:
        """Start no expiry sweeper until :meth:`start_expiry_events` (the worker waits for its
        engine connection, so expiries from while it was down reach the triggers replayed then)."""
        self._sweep_held = True

    def start_expiry_events(self) -> None:
        """Start the expiry sweeper now (on the running loop), if this store has expiry events."""
        self._sweep_held = False
        self._start_sweeper()

    def _start_sweeper(self) -> None:
        """Start the expiry sweeper on the running loop: at open when a loop runs there, else at
        the first subscription or call made on one (the worker opens its store in a thread)."""
        sweeper = self._sweeper
        if sweeper is not None and not sweeper.started and not self._closed and not self._sweep_held:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return
            sweeper.start()

    def on_change(
        self,
        handler: Handler,
        *,
        scope: str | None = None,
        key: str | None = None,
        condition: Condition | None = None,
    ) -> Callable[[], None]:
        unsubscribe = super().on_change(handler, scope=scope, key=key, condition=condition)
        self._start_sweeper()
        return unsubscribe

    async def _run(self, function: str, plan: Plan) -> Any:
        if self._closed:
            plan.close()
            raise _closed_error(self)
        if self._sweeper is not None and not self._sweeper.started and not self._sweep_held:
            self._start_sweeper()
        result, emitted = await run_async(plan, self.async_adapter, function, self._describe, self._secrets)
        if emitted is not None:
            if not isinstance(emitted, list):  # one event: emit_async itself returns if none listens
                await self.events.emit_async(emitted)
            elif self.events.active:  # nothing listening: no call per event
                for event in emitted:
                    await self.events.emit_async(event)
        return result

    async def trigger(self, request: dict[str, Any]) -> JSON:
        reserved = self.reserved
        if reserved.stale():
            await self.refresh_reserved()
        declared, plan = decode_call(self.limits, request, reserved)
        name = declared.id
        result = declared.to_wire(await self._run(name, plan))
        return _public(reserved, result) if name == "list_groups" else result

    async def get_many(self, scope: str, keys: Iterable[str]) -> dict[str, JSON]:
        """See :meth:`StateStore.get_many`."""
        ops = many_ops("get", scope, keys)
        return by_key(ops, await self.batch(ops))

    async def set_many(self, scope: str, values: Mapping[str, JSON]) -> dict[str, SetResult]:
        """See :meth:`StateStore.set_many`."""
        ops = many_ops("set", scope, (), values)
        return by_key(ops, await self.batch(ops))

    async def delete_many(self, scope: str, keys: Iterable[str]) -> dict[str, JSON]:
        """See :meth:`StateStore.delete_many`."""
        ops = many_ops("delete", scope, keys)
        return by_key(ops, await self.batch(ops))

    async def refresh_reserved(self) -> None:
        """Re-read the claims ledger (claims made by other processes or replicas)."""
        try:
            ledger, _ = await run_async(
                _ledger_plan(), self.async_adapter, "list", self._describe, self._secrets
            )
        except StateError as exc:  # the call itself reports the store's trouble
            ledger = self.reserved.unreadable(exc)
        self.reserved.replace(ledger)

    async def close(self) -> None:
        if self._sweeper is not None:  # first, so its handlers may still use the store
            await self._sweeper.stop()
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        await self.async_adapter.close()
        if not isinstance(self.async_adapter, ThreadedAsyncAdapter):
            self.adapter.close()

    async def __aenter__(self) -> AsyncStateStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _ledger_plan() -> Plan:
    ledger = yield from load_ledger()
    return ledger, None


def _public(reserved: ReservedScopes, result: Any) -> Any:
    """``list_groups``'s wire result with the reserved scopes left out."""
    return {"groups": [g for g in result["groups"] if not reserved.contains(g)]}


def _sync_method(function: StateFunction[Any, Any]) -> Callable[..., Any]:
    plan, name = function.plan, function.id

    def method(self: StateStore, *args: Any, **kwargs: Any) -> Any:
        return self._run(name, plan(self.limits, *args, **kwargs))

    return method


def _async_method(function: StateFunction[Any, Any]) -> Callable[..., Any]:
    plan, name = function.plan, function.id

    async def method(self: AsyncStateStore, *args: Any, **kwargs: Any) -> Any:
        return await self._run(name, plan(self.limits, *args, **kwargs))

    return method


serve(StateStore, _sync_method)
serve(AsyncStateStore, _async_method)

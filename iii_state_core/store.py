"""The public facades: :class:`StateStore` (sync) and :class:`AsyncStateStore` (asyncio).

Both validate through the same plans (``operations``), so they give identical results.
"""

from __future__ import annotations

import builtins
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from . import operations as plans
from .adapter import Adapter, AsyncAdapter
from .config import StateConfig
from .driver import ThreadedAsyncAdapter, run_async, run_sync
from .events import Condition, EventBus, Handler, Subscription
from .operations import Limits, Plan
from .plugins import Registry
from .results import CompareAndSetResult, EntriesPage, SetResult, StateEvent, UpdateResult
from .update_ops import parse_ops
from .values import JSON
from .wire import decode_request, result_to_wire

#: Pass as ``expected_value`` to :meth:`StateStore.compare_and_set` for "only if missing".
MISSING = plans.MISSING


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
        self.limits = limits
        self.events = events
        #: How this store was opened, so another process can open the same one.
        self.settings = settings
        self.registry = registry
        self._closed = False
        self._close_lock = threading.Lock()
        self._opened()

    def _opened(self) -> None:
        """Subclass hook: finish setting up once the adapter is in place."""

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
        if not self._awaits_handlers and any(
            inspect.iscoroutinefunction(fn) for fn in (handler, condition) if fn is not None
        ):
            raise TypeError(
                "an async handler or condition needs an async store: open it with open_async_store()"
            )
        return self.events.subscribe(Subscription(handler, scope, key, condition))

    def _plan_update(self, scope: str, key: str, ops: list[dict[str, Any]]) -> Plan:
        return plans.update(self.limits, scope, key, parse_ops(ops, max_depth=self.limits.max_depth))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.adapter.describe()}>"


class StateStore(_Base):
    """Scoped JSON state over one adapter. Thread-safe; use as a context manager or ``close()``."""

    def _run(self, function: str, plan: Plan) -> Any:
        result, event = run_sync(plan, self.adapter, function)
        if event is not None and self.events.enabled:
            self.events.emit(event)
        return result

    def trigger(self, request: dict[str, Any]) -> JSON:
        """Run ``{"function_id": "state::…", "payload": {...}}`` and return its JSON result
        (contract § Functions).

        :raises StateError: whose ``.code`` is the wire code.
        """
        function, plan = decode_request(self.limits, request)
        return result_to_wire(function, self._run(function, plan))

    def get(self, scope: str, key: str) -> JSON:
        """The value, or ``None`` when the key is missing (or holds ``null``)."""
        return self._run("get", plans.get_value(self.limits, scope, key))

    def set(self, scope: str, key: str, value: JSON) -> SetResult:
        return self._run("set", plans.set_value(self.limits, scope, key, value))  # type: ignore[no-any-return]

    def delete(self, scope: str, key: str) -> JSON:
        """Remove the key; returns the value removed, or ``None``."""
        return self._run("delete", plans.delete_value(self.limits, scope, key))

    def update(self, scope: str, key: str, ops: list[dict[str, Any]]) -> UpdateResult:
        """Apply wire-shaped ops (``{"type": "increment", "path": "n", "by": 1}``) atomically."""
        return self._run("update", self._plan_update(scope, key, ops))  # type: ignore[no-any-return]

    def compare_and_set(
        self, scope: str, key: str, expected_value: JSON = MISSING, new_value: JSON = None
    ) -> CompareAndSetResult:
        """Store ``new_value`` only if the entry equals ``expected_value`` (omit it: only if missing)."""
        plan = plans.compare_and_set(self.limits, scope, key, expected_value, new_value)
        return self._run("compare_and_set", plan)  # type: ignore[no-any-return]

    def list(self, scope: str) -> builtins.list[JSON]:
        return self._run("list", plans.list_values(self.limits, scope))  # type: ignore[no-any-return]

    def list_keys(self, scope: str) -> builtins.list[str]:
        return self._run("list_keys", plans.list_keys(self.limits, scope))  # type: ignore[no-any-return]

    def list_groups(self) -> builtins.list[str]:
        return self._run("list_groups", plans.list_groups(self.limits))  # type: ignore[no-any-return]

    def list_entries(
        self, scope: str, cursor: str | None = None, limit: int = plans.DEFAULT_LIST_LIMIT
    ) -> EntriesPage:
        plan = plans.list_entries(self.limits, scope, cursor, limit)
        return self._run("list_entries", plan)  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self.adapter.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStateStore(_Base):
    """The same surface as :class:`StateStore`, awaited. Adapter calls never block the loop."""

    _awaits_handlers = True

    def _opened(self) -> None:
        self.async_adapter: AsyncAdapter = self.adapter.async_twin() or ThreadedAsyncAdapter(self.adapter)
        self._describe = self.adapter.describe()
        self._secrets = self.adapter.secrets()

    async def _run(self, function: str, plan: Plan) -> Any:
        result, event = await run_async(plan, self.async_adapter, function, self._describe, self._secrets)
        if event is not None and self.events.enabled:
            await self.events.emit_async(event)
        return result

    async def trigger(self, request: dict[str, Any]) -> JSON:
        function, plan = decode_request(self.limits, request)
        return result_to_wire(function, await self._run(function, plan))

    async def get(self, scope: str, key: str) -> JSON:
        return await self._run("get", plans.get_value(self.limits, scope, key))

    async def set(self, scope: str, key: str, value: JSON) -> SetResult:
        return await self._run("set", plans.set_value(self.limits, scope, key, value))  # type: ignore[no-any-return]

    async def delete(self, scope: str, key: str) -> JSON:
        return await self._run("delete", plans.delete_value(self.limits, scope, key))

    async def update(self, scope: str, key: str, ops: list[dict[str, Any]]) -> UpdateResult:
        return await self._run("update", self._plan_update(scope, key, ops))  # type: ignore[no-any-return]

    async def compare_and_set(
        self, scope: str, key: str, expected_value: JSON = MISSING, new_value: JSON = None
    ) -> CompareAndSetResult:
        plan = plans.compare_and_set(self.limits, scope, key, expected_value, new_value)
        return await self._run("compare_and_set", plan)  # type: ignore[no-any-return]

    async def list(self, scope: str) -> builtins.list[JSON]:
        return await self._run("list", plans.list_values(self.limits, scope))  # type: ignore[no-any-return]

    async def list_keys(self, scope: str) -> builtins.list[str]:
        return await self._run("list_keys", plans.list_keys(self.limits, scope))  # type: ignore[no-any-return]

    async def list_groups(self) -> builtins.list[str]:
        return await self._run("list_groups", plans.list_groups(self.limits))  # type: ignore[no-any-return]

    async def list_entries(
        self, scope: str, cursor: str | None = None, limit: int = plans.DEFAULT_LIST_LIMIT
    ) -> EntriesPage:
        plan = plans.list_entries(self.limits, scope, cursor, limit)
        return await self._run("list_entries", plan)  # type: ignore[no-any-return]

    async def close(self) -> None:
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


EventHook = Callable[[StateEvent], Awaitable[None] | None]

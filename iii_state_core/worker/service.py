"""``StateWorker``: serves the nine ``state::*`` functions and the ``state`` trigger type to an
iii engine through the ``iii-sdk`` client, over any installed adapter.

Two event loops are involved. The SDK runs its own loop on a thread of its own and calls our
handlers there; the worker keeps the store, the in-flight count and the reactions on *its* loop
(the one :meth:`StateWorker.start` is awaited on). Each SDK handler only forwards the call to
the worker's loop, so an adapter call never runs on, and never stalls, the SDK's loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from iii import InitOptions  # type: ignore[import-untyped]
from iii.iii import III  # type: ignore[import-untyped]
from iii_helpers.observability import ReconnectionConfig

from .. import ConfigSource, __version__
from ..config import DEFAULT_FILE_STORE, StateConfig, default_config
from ..errors import StateError
from ..namespaces import ACCESSORS, accessor_ids
from ..opening import open_async_store_with, read_settings
from ..plugins import Registry, default_registry
from ..store import AsyncStateStore
from . import configuration
from .configuration import ON_CONFIG_CHANGE_ID, ConfigValueError, EntrySettings
from .engine_link import SDK_LOGGER, EngineLink
from .functions import WORKER_FUNCTION_IDS, FunctionCallError, call_error, specs
from .observers import maybe_observed
from .private import ACCESSOR_METADATA, LOOKUP_TIMEOUT_MS, claim_namespace, serve_accessor
from .reactions import ON_CHANGED_ID, Reactions, TriggerTable
from .settings import WorkerSettings, check_engine_url
from .trigger_type import TRIGGER_TYPE

log = logging.getLogger("iii_state.worker")

CLAIM_ID = WORKER_FUNCTION_IDS[0]
#: The engine's built-in state worker: iii's standalone worker refuses to run beside it.
BUILTIN_STATE = "iii-state"
#: Seconds after the first engine connection before ``state:expired`` events start: the engine
#: replays the ``state`` bindings once the trigger type registers.
EXPIRY_EVENTS_AFTER_S = 1.0


async def _observed(data: Any) -> None:
    """``state::on-changed`` itself does nothing: observers see its input through the engine."""
    return None


def _close_when_open(opening: asyncio.Future[AsyncStateStore]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        asyncio.get_running_loop().create_task(opening.result().close())


class StateWorker:
    """The iii worker for ``state::*``.

    Use it from a coroutine on the loop that should own the store::

        worker = StateWorker("iii-config.yaml", WorkerSettings(engine_url="ws://127.0.0.1:49134"))
        await worker.start()
        ...
        await worker.stop()          # drains, disconnects, closes the adapter

    or, blocking, :func:`iii_state_core.worker.run_worker` with signal handling.

    :param config: where the adapter comes from, as for :func:`iii_state_core.open_store`
        (an ``iii-config.yaml`` path, a state block mapping, or ``None`` for the defaults).
    :param settings: engine address, identity and time budgets.
    :param store: serve this already-open store instead (``config`` must then be ``None``);
        the caller keeps ownership and closes it.
    :param registry: the plugin registry to find the adapter in (tests register extra plugins).
    """

    def __init__(
        self,
        config: ConfigSource = None,
        settings: WorkerSettings | None = None,
        *,
        store: AsyncStateStore | None = None,
        registry: Registry | None = None,
    ) -> None:
        if store is not None and config is not None:
            raise ValueError("give either `config` or an open `store`, not both")
        self.settings = settings or WorkerSettings()
        self.url = check_engine_url(self.settings.resolved_url())
        self._config = config
        self._registry = registry
        #: The config file's settings (owned store only), read by :meth:`start`.
        self._file_settings: StateConfig | None = None
        #: The adapter entry the store was opened with (``None``: the file's adapter).
        self._boot_adapter: dict[str, Any] | None = None
        self._boot_task: asyncio.Task[None] | None = None
        self._owns_store = store is None
        self.store: AsyncStateStore | None = store
        self.triggers = TriggerTable()
        self.reactions = Reactions(
            self.triggers, self._call_engine, self._notify_changed, self.on_changed_observed
        )
        #: ``state::on-changed``'s registration (its observer set, on an engine that sends it).
        self._on_changed_ref: Any = None
        self.link = EngineLink(self.url, self.settings.reconnect_max_ms, self.triggers.clear, self._given_up)
        self.iii: Any = None  # iii.iii.III once started; the SDK ships no types
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refs: list[Any] = []
        self._accessors: set[str] = set()
        self._guarded = False
        self._config_lock = asyncio.Lock()
        #: The settings last applied from the configuration worker (``None``: none applied).
        self.entry: EntrySettings | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopped = asyncio.Event()
        self._stopping = False
        self._stop_task: asyncio.Task[None] | None = None
        #: ``1`` once the SDK gave up on the engine for good; what the CLI exits with.
        self.exit_code = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the config file (unless a store was given), connect, and boot in the background.

        Returns at once: the connection comes up in the background and is retried forever
        (watch the log, or :meth:`wait_connected`). Once connected, the worker checks that no
        built-in state worker runs, reads its configuration entry, opens the adapter the entry
        names (else the file's), and registers its functions. A store given to the constructor
        is served as it is, its functions registered at once.

        :raises StateError: when the config file is unusable or names an adapter not installed.
        """
        if self._loop is not None:
            raise RuntimeError("this StateWorker was already started")
        self._loop = asyncio.get_running_loop()
        if not self.settings.trace_payloads:
            # Values are user data: keep them out of the engine's traces unless asked.
            os.environ.setdefault("III_DISABLE_TRACE_PAYLOADS", "1")
        if self.store is None:
            self._file_settings = await asyncio.to_thread(self._read_file_settings)
        try:
            logging.getLogger(SDK_LOGGER).addFilter(self.link.filter)
            self._log_identity(self._file_settings)
            if self.store is not None:
                self._adopt(self.store)
            self.iii = III(self.url, self._init_options())
            self._unsubscribe.append(self.iii.add_connection_state_listener(self.link.on_state))
            self._unsubscribe.append(self.iii.add_connection_state_listener(self._on_connection))
            with warnings.catch_warnings():
                # Deprecated from iii-sdk 0.25 in favour of observe descriptors, which engines
                # before 0.25 do not speak; it is the only way to offer the `state` trigger type.
                warnings.simplefilter("ignore", DeprecationWarning)
                self.iii.register_trigger_type(dict(TRIGGER_TYPE), self.triggers)
            if self.store is not None:
                await self._register_serving(self.store)
        except BaseException:
            await self._release()
            raise

    def _read_file_settings(self) -> StateConfig:
        """The config file's settings; its adapter must be installed (checked before connecting)."""
        settings = read_settings(self._config)
        (self._registry or default_registry()).adapter(settings.adapter)
        return settings

    def _adopt(self, store: AsyncStateStore) -> None:
        """Start serving ``store``'s events: reactions, and expiries held until connected."""
        store.hold_expiry_events()  # until connected: see _on_connection
        self._unsubscribe.append(store.on_change(self.reactions.on_event))
        self._log_startup(store)

    async def _register_serving(self, store: AsyncStateStore) -> None:
        """Register, in the reference's order: the accessors of restored claims, the public
        functions, ``state::on-changed``, ``state::on-config-change`` and its binding."""
        # Claims first, as iii's worker does: accessors of claimed namespaces exist before
        # the public functions, and the reserved set is known before the first call.
        await store.refresh_reserved()
        for prefix in sorted(store.reserved.ledger.namespaces):
            self._register_accessors(prefix)
        for skipped in store.reserved.ledger.skipped:
            log.warning("claims ledger row %r is unreadable or conflicting; skipped", skipped)
        self._refs.append(
            self.iii.register_function(
                CLAIM_ID,
                self._forward(CLAIM_ID, self._claim),
                description="Reserve scopes for the calling worker's namespace; "
                "returns {claimed, scopes, functions}",
                request_format={"type": "object", "properties": {"functions_prefix": {"type": "string"},
                                "scopes": {"type": "array", "items": {"type": "string"}}},
                                "required": ["functions_prefix", "scopes"]},
            )
        )  # fmt: skip
        for name, spec in specs().items():
            self._refs.append(
                self.iii.register_function(
                    spec.function_id,
                    self._sdk_handler(name),
                    description=spec.description,
                    request_format=spec.request_format,
                )
            )
        self._on_changed_ref = self.iii.register_function(
            ON_CHANGED_ID,
            _observed,
            description="Called after every committed write with the change document; "
            "observe it (iii 0.25+) to react to state changes",
            metadata={"internal": True},
        )
        self._refs.append(self._on_changed_ref)
        self._refs.append(
            self.iii.register_function(
                ON_CONFIG_CHANGE_ID,
                self._forward(ON_CONFIG_CHANGE_ID, self._on_config_change),
                description="Internal: reload the state configuration entry after it changed",
                metadata={"internal": True},
            )
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # as for the trigger type above
            self._refs.append(
                self.iii.register_trigger(
                    {
                        "type": "configuration",
                        "function_id": ON_CONFIG_CHANGE_ID,
                        "config": {
                            "configuration_id": configuration.config_id(),
                            "event_types": ["configuration:updated"],
                        },
                    }
                )
            )

    async def wait_connected(self, timeout: float | None = None) -> bool:
        """:returns: ``True`` once the engine connection is up, ``False`` after ``timeout`` seconds."""
        return await asyncio.to_thread(self.link.wait_connected, timeout)

    async def wait_stopped(self) -> None:
        """Return once :meth:`stop` has finished (from any caller)."""
        await self._stopped.wait()

    async def stop(self) -> None:
        """Stop cleanly: take no new calls, finish the ones in flight, let pending reactions
        finish (each bounded by ``settings.drain_timeout``), disconnect, close the adapter.

        Safe to call more than once and from a signal handler's task.
        """
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        try:
            grace = self.settings.drain_timeout
            # Unregistering first makes the engine stop routing calls here; a call already on
            # its way is still served (it counts as in flight) or answered function_not_found.
            for ref in self._refs:
                ref.unregister()
            if self._in_flight:
                log.info("stopping: waiting for %d in-flight call(s) (up to %g s)", self._in_flight, grace)
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except asyncio.TimeoutError:
                log.warning(
                    "stopping: %d call(s) still running after %g s; abandoning them", self._in_flight, grace
                )
            if self.reactions.pending:
                log.info("stopping: waiting for reactions of %d write(s)", self.reactions.pending)
            cancelled = await self.reactions.drain(grace)
            if cancelled:
                log.warning("stopping: cancelled the reactions of %d write(s) after %g s", cancelled, grace)
        finally:
            await self._release()
            self._stopped.set()
            log.info("iii-state worker stopped")

    async def _release(self) -> None:
        self.link.stopping = True
        boot, self._boot_task = self._boot_task, None
        if boot is not None and not boot.done() and boot is not asyncio.current_task():
            boot.cancel()
            try:
                await boot
            except BaseException:  # cancelled, or failed and already logged
                pass
        if self.iii is not None:
            iii, self.iii = self.iii, None
            await asyncio.to_thread(iii.shutdown)
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        logging.getLogger(SDK_LOGGER).removeFilter(self.link.filter)
        if self.store is not None and self._owns_store:
            store, self.store = self.store, None
            try:
                await store.close()
            except Exception as exc:  # closing must not hide why we stop; the core redacted it
                log.warning("closing the adapter failed: %s", exc)

    # -- serving -----------------------------------------------------------------------------

    def _forward(self, label: str, serve: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        """An SDK handler that runs ``serve(data)`` on the worker's loop, errors as wire text."""
        worker_loop = self._loop
        assert worker_loop is not None

        async def run(data: Any) -> Any:
            try:
                return await serve(data)
            except Exception as exc:
                error = call_error("claim-namespace", exc)
                if not isinstance(exc, StateError):
                    log.error("%s hit an internal error", label, exc_info=exc)
                else:
                    log.debug("%s refused: %s", label, error)
                raise error from None

        async def handler(data: Any) -> Any:
            future = asyncio.run_coroutine_threadsafe(run(data), worker_loop)
            return await asyncio.wrap_future(future)

        return handler

    async def _claim(self, data: Any) -> Any:
        store = self.store
        if store is None:
            raise FunctionCallError("function_not_found", f"{CLAIM_ID} is shutting down")
        result, register = await claim_namespace(store, data, self._call_engine_plain)
        prefix = data["functions_prefix"]
        if register and prefix not in self._accessors:
            self._register_accessors(prefix)
        return result

    def _on_connection(self, state: str) -> None:
        """On the SDK's thread: after the first connection, check who else serves state."""
        loop = self._loop
        if state == "connected" and not self._guarded and loop is not None:
            self._guarded = True
            loop.call_soon_threadsafe(self._start_boot)
            loop.call_soon_threadsafe(loop.call_later, EXPIRY_EVENTS_AFTER_S, self._start_expiry_events)

    def _start_boot(self) -> None:
        if not self._stopping:
            self._boot_task = asyncio.get_running_loop().create_task(self._boot())

    def _start_expiry_events(self) -> None:
        """Start delivering ``state:expired`` (with ``expiry_events: true``): once connected and
        the engine had a moment to replay the ``state`` bindings, so expiries that happened while
        no worker ran reach them."""
        if self.store is not None and not self._stopping:
            self.store.start_expiry_events()

    async def _boot(self) -> None:
        if not await self._boot_guard():
            return
        if self.store is not None:  # a store given by the caller: served as it is
            await self._configure_at_boot()
            return
        settings = self._file_settings
        assert settings is not None
        entry = await self._read_entry_at_boot(configuration.seed_of(settings))
        if entry is False:
            return
        wanted = configuration.boot_settings(settings, entry)
        opening = asyncio.ensure_future(
            asyncio.to_thread(open_async_store_with, wanted, registry=self._registry)
        )
        try:
            store = await asyncio.shield(opening)
        except asyncio.CancelledError:  # stopped meanwhile: close the store once it is open
            opening.add_done_callback(_close_when_open)
            raise
        except StateError as exc:
            log.error("cannot open the %s adapter (%s): %s; stopping", wanted.adapter, wanted.source, exc)
            self._given_up()
            return
        if self._stopping:
            await store.close()
            return
        self.store = store
        self._boot_adapter = entry.adapter if entry is not None else None
        self._adopt(store)
        await self._register_serving(store)
        if entry is not None:
            self.entry = entry
            self._log_applied(configuration.config_id(), entry)
        asyncio.get_running_loop().call_later(EXPIRY_EVENTS_AFTER_S, self._start_expiry_events)

    async def _boot_guard(self) -> bool:
        """Refuse to run beside the engine's built-in ``iii-state`` worker (as iii's own ``state``
        worker does): two owners of ``state::*`` would split the calls between two stores.

        :returns: ``False`` when the worker stops because of it.
        """
        try:
            listed = await self._call_engine_plain("engine::workers::list", {}, LOOKUP_TIMEOUT_MS)
        except Exception as exc:
            log.warning("failed to query engine::workers::list: %s; cannot check for the built-in", exc)
            return True
        own = getattr(self.iii, "_worker_id", None)
        entries = listed.get("workers") if isinstance(listed, dict) else listed
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or (own is not None and entry.get("id") == own):
                continue
            if BUILTIN_STATE in (entry.get("id"), entry.get("name")):
                log.error(
                    "cannot start the state worker: the built-in iii-state worker is active (remove "
                    "`iii-state` from the engine's config.yaml, see docs/worker.md); stopping"
                )
                self._given_up()
                return False
        return True

    # -- the configuration worker's entry ------------------------------------------------------

    async def _call_configuration(self, function_id: str, payload: Any, timeout_ms: int) -> Any:
        iii = self.iii
        if iii is None:
            raise RuntimeError("the worker is disconnected from the engine")
        return await iii.trigger_async(
            {"function_id": function_id, "payload": payload, "timeout_ms": timeout_ms, "namespace": "default"}
        )

    async def _read_entry_at_boot(self, seed: dict[str, Any]) -> EntrySettings | Literal[False] | None:
        """Ensure the entry (seeded with ``seed``) and read it.

        :returns: the entry; ``None`` when there is none to apply (no configuration worker; or,
            serving a store given by the caller, an entry that cannot be read); ``False`` when the
            worker stops: the stored value is malformed, or the entry of a worker that opens its
            own store cannot be read.
        """
        entry_id = configuration.config_id()
        names = (self._registry or default_registry()).adapters
        async with self._config_lock:
            try:
                await configuration.ensure_entry(self._call_configuration, seed, names)
                return await configuration.fetch_entry(self._call_configuration)
            except ConfigValueError as exc:
                log.error("configuration entry %r: %s; stopping", entry_id, exc)
                self._given_up()
                return False
            except Exception as exc:
                if getattr(exc, "code", None) == "function_not_found":
                    log.info("no configuration worker in the engine; the config file's settings stay")
                    return None
                if self._owns_store:
                    # The entry may name another adapter: guessing could serve another store
                    # than this worker's replicas do, so stop as for a malformed entry.
                    log.error("configuration entry %r could not be read (%s); stopping", entry_id, exc)
                    self._given_up()
                    return False
                log.warning("configuration entry %r could not be read (%s); unchanged", entry_id, exc)
                return None

    async def _configure_at_boot(self) -> None:
        """With a store given by the caller: read the entry and apply its live settings."""
        store = self.store
        if store is None:
            return
        seed = configuration.seed_of(store.settings) if store.settings is not None else {}
        entry = await self._read_entry_at_boot(seed)
        if entry:
            self._boot_adapter = entry.adapter  # the given store stands for it
            self._apply(configuration.config_id(), entry)

    async def _on_config_change(self, _data: Any) -> dict[str, bool]:
        """``state::on-config-change``: ignore the payload, read the entry again, apply it."""
        entry_id = configuration.config_id()
        async with self._config_lock:
            try:
                entry = await configuration.fetch_entry(self._call_configuration)
            except Exception as exc:
                log.error(
                    "configuration change of %r: fetch failed (%s); keeping previous settings", entry_id, exc
                )
                return {"ok": True}
            self._apply(entry_id, entry)
        return {"ok": True}

    def _apply(self, entry_id: str, entry: EntrySettings) -> None:
        """Live tier now; an adapter change only at the next boot (logged)."""
        store = self.store
        if store is None:
            return
        store.events.enabled = entry.triggers_enabled
        store.limits = dataclasses.replace(store.limits, max_value_bytes=entry.max_value_bytes)
        self.entry = entry
        if entry.adapter != self._boot_adapter:
            if not self._owns_store:
                log.warning(
                    "configuration entry %r changed the adapter; this worker serves the store it was given",
                    entry_id,
                )
            else:
                log.warning(
                    "configuration entry %r changed the adapter (now %r); it applies at the next restart "
                    "(the adapter is restart-tier); serving %s until then",
                    entry_id, (entry.adapter or {}).get("name", "as in the config file"), store.adapter.name,
                )  # fmt: skip
            self._boot_adapter = entry.adapter
        self._log_applied(entry_id, entry)

    def _log_applied(self, entry_id: str, entry: EntrySettings) -> None:
        log.info(
            "configuration entry %r applied: reactions %s, max_value_bytes %s", entry_id,
            "on" if entry.triggers_enabled else "off", entry.max_value_bytes or "unlimited",
        )  # fmt: skip

    def on_changed_observed(self) -> bool:
        """Whether ``state::on-changed`` may have an observer (no: the engine said it has none)."""
        iii, ref = self.iii, self._on_changed_ref
        return iii is None or ref is None or maybe_observed(iii, ref)

    async def _notify_changed(self, change: dict[str, Any]) -> None:
        """Call ``state::on-changed`` through the engine (never in-process: observers watch the
        engine's dispatch), without waiting for an answer."""
        iii = self.iii
        if iii is None:
            return
        await iii.trigger_async(
            {
                "function_id": ON_CHANGED_ID,
                "payload": change,
                "action": {"type": "void"},
                "dispatch": "remote",
            }
        )

    async def _call_engine_plain(self, function_id: str, payload: Any, timeout_ms: int) -> Any:
        iii = self.iii
        if iii is None:
            raise RuntimeError("the worker is disconnected from the engine")
        return await iii.trigger_async(
            {"function_id": function_id, "payload": payload, "timeout_ms": timeout_ms}
        )

    def _register_accessors(self, prefix: str) -> None:
        self._accessors.add(prefix)
        for name, function_id in zip(ACCESSORS, accessor_ids(prefix), strict=True):

            async def serve(data: Any, name: str = name) -> Any:
                store = self.store
                if store is None:
                    raise FunctionCallError("function_not_found", f"{prefix}::state::{name} is shutting down")
                return await serve_accessor(store, prefix, name, data)

            self._refs.append(
                self.iii.register_function(
                    function_id,
                    self._forward(function_id, serve),
                    description=f"Private state of namespace {prefix}: {name}",
                    metadata=dict(ACCESSOR_METADATA),
                )
            )
        log.info("namespace %s: serving %s", prefix, ", ".join(accessor_ids(prefix)))

    def _sdk_handler(self, name: str) -> Callable[[Any], Awaitable[Any]]:
        """The coroutine the SDK runs, on *its* loop, for ``state::<name>``."""
        worker_loop = self._loop
        assert worker_loop is not None

        async def handler(data: Any) -> Any:
            future = asyncio.run_coroutine_threadsafe(self._serve(name, data), worker_loop)
            return await asyncio.wrap_future(future)

        handler.__name__ = handler.__qualname__ = f"state_{name}"
        return handler

    async def _serve(self, name: str, data: Any) -> Any:
        """Run one call on the worker's loop; the result is exactly contract § Functions's."""
        store = self.store
        if store is None:  # only after stop() released it; the engine stopped routing by then
            raise FunctionCallError("function_not_found", f"state::{name} is shutting down")
        self._in_flight += 1
        self._idle.clear()
        log.debug("state::%s: call started (%d in flight)", name, self._in_flight)
        try:
            return await store.trigger({"function_id": f"state::{name}", "payload": data})
        except Exception as exc:
            error = call_error(name, exc)
            if not isinstance(exc, StateError):
                log.error("state::%s hit an internal error", name, exc_info=exc)
            elif error.client_fault:
                log.debug("state::%s refused: %s", name, error)
            else:
                log.warning("state::%s failed: %s", name, error)
            # `from None`: the traceback the SDK sends to the caller stops here.
            raise error from None
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _call_engine(self, function_id: str, payload: Any, namespace: str, metadata: Any) -> Any:
        """Call a function through the engine (conditions and reactions)."""
        iii = self.iii
        if iii is None:
            raise RuntimeError("the worker is disconnected from the engine for good")
        request: dict[str, Any] = {
            "function_id": function_id,
            "payload": payload,
            "namespace": namespace,
            "timeout_ms": int(self.settings.reaction_timeout * 1000),
        }
        if metadata is not None:
            request["metadata"] = metadata
        return await iii.trigger_async(request)

    # -- helpers -----------------------------------------------------------------------------

    def _init_options(self) -> Any:
        s = self.settings
        adapter = self.store.adapter.name if self.store is not None else "its configured adapter"
        return InitOptions(
            worker_name=s.worker_name,
            worker_description=f"iii-state {__version__}: scoped key-value state (state::*) on {adapter}",
            namespace=s.namespace or None,
            invocation_timeout_ms=int(s.reaction_timeout * 1000),
            reconnection_config=ReconnectionConfig(
                initial_delay_ms=s.reconnect_initial_ms, max_delay_ms=s.reconnect_max_ms
            ),
            otel={"enabled": False} if s.telemetry is False else None,
        )

    def _given_up(self) -> None:
        """The engine will not take this worker (fatal rejection, or another worker owns some
        ``state::*`` function): stop with exit code 1. Called on the SDK's thread."""
        self.exit_code = 1
        loop = self._loop
        if loop is not None and not self._stopping:
            loop.call_soon_threadsafe(self._stop_soon)

    def _stop_soon(self) -> None:
        if self._stop_task is None and not self._stopping:
            self._stop_task = asyncio.get_running_loop().create_task(self.stop())

    def _log_default_store(self) -> None:
        # A config file without the state block never gets here: opening the store refuses it
        # (the easy mistake of pointing the worker at the engine's own config.yaml).
        log.info("no iii-config.yaml found; serving the embedded file store in %s", DEFAULT_FILE_STORE)

    def _log_identity(self, settings: StateConfig | None) -> None:
        """What this process is and where it connects (before the store is open)."""
        s = self.settings
        if settings is not None:
            log.info(
                "iii-state worker %s: config %s (adapter %s, unless the configuration entry names "
                "another; opened once connected)", __version__, settings.source, settings.adapter,
            )  # fmt: skip
            if settings.source == default_config().source:
                self._log_default_store()
        log.info(
            "engine %s; worker name %s; namespace %s", self.link.safe_url,
            os.environ.get("III_WORKER_NAME") or s.worker_name or "<host:pid>",
            s.namespace or os.environ.get("III_NAMESPACE") or "default",
        )  # fmt: skip

    def _log_startup(self, store: AsyncStateStore) -> None:
        """The store being served (once open)."""
        settings = store.settings
        log.info(
            "iii-state worker %s: adapter %s (config: %s)", __version__, store.adapter.describe(),
            settings.source if settings is not None else "an open store",
        )  # fmt: skip
        log.info(
            "serving %s and the `state` trigger type", ", ".join(s.function_id for s in specs().values())
        )
        limit = store.limits.max_value_bytes
        log.info(
            "reactions %s; max_value_bytes %s",
            "on" if store.events.enabled else "off (triggers_enabled: false)",
            limit if limit is not None else "unlimited",
        )

"""iii-state core: one scoped key-value state API (``state::*``) over pluggable stores.

This module only re-exports, and lazily: ``from iii_state_core import Adapter`` (what a plugin
needs) loads the adapter interface, not the store front end, the config reader or the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports

__version__ = "0.1.0"

#: Public name -> the module (under this package) that defines it.
_EXPORTS = {
    "Adapter": "adapter", "AsyncAdapter": "adapter", "Capabilities": "adapter",
    "AdapterNotFoundError": "errors", "BackendError": "errors", "ConfigError": "errors",
    "ConflictError": "errors", "DeserializationError": "errors", "InvalidCursorError": "errors",
    "InvalidValueError": "errors", "KeyTooLargeError": "errors", "StateError": "errors",
    "StoreClosedError": "errors", "StoredValueError": "errors", "UnknownOutcomeError": "errors",
    "ValueTooLargeError": "errors", "WriteAppliedError": "errors",
    "StateConfig": "config", "hookimpl": "hookspecs", "Options": "options", "Registry": "plugins",
    "CompareAndSetResult": "results", "EntriesPage": "results", "SetResult": "results",
    "StateEvent": "results", "UpdateResult": "results", "OpError": "update_ops",
    "AsyncStateStore": "store", "StateStore": "store",
    "ConfigSource": "opening", "open_async_store": "opening", "open_store": "opening",
}  # fmt: skip

if TYPE_CHECKING:
    from .adapter import Adapter, AsyncAdapter, Capabilities
    from .config import StateConfig
    from .errors import (
        AdapterNotFoundError,
        BackendError,
        ConfigError,
        ConflictError,
        DeserializationError,
        InvalidCursorError,
        InvalidValueError,
        KeyTooLargeError,
        StateError,
        StoreClosedError,
        StoredValueError,
        UnknownOutcomeError,
        ValueTooLargeError,
        WriteAppliedError,
    )
    from .hookspecs import hookimpl
    from .opening import ConfigSource, open_async_store, open_store
    from .options import Options
    from .plugins import Registry
    from .results import CompareAndSetResult, EntriesPage, SetResult, StateEvent, UpdateResult
    from .store import AsyncStateStore, StateStore
    from .update_ops import OpError


__getattr__ = lazy_exports(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "Adapter", "AdapterNotFoundError", "AsyncAdapter", "AsyncStateStore",
    "BackendError", "Capabilities", "CompareAndSetResult", "ConfigError", "ConfigSource",
    "ConflictError", "DeserializationError", "EntriesPage", "InvalidCursorError", "InvalidValueError",
    "KeyTooLargeError", "OpError", "Options", "Registry", "SetResult", "StateConfig",
    "StateError", "StateEvent", "StateStore", "StoreClosedError", "StoredValueError", "UnknownOutcomeError",
    "UpdateResult", "ValueTooLargeError", "WriteAppliedError", "hookimpl",
    "open_async_store", "open_store",
]  # fmt: skip

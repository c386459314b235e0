"""The plugin hooks. Hooks register things; they never perform state operations themselves."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .adapter import Adapter
    from .results import StateEvent

PROJECT = "iii_state"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def iii_state_register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    """Register adapter classes: call ``register(MyAdapter)`` once per class.

    :param register: takes an :class:`~iii_state_core.adapter.Adapter` subclass with ``name``
        and ``capabilities`` set. A name registered twice is an error naming both plugins.

    .. versionadded:: 0.1
    """


@hookspec
def iii_state_event(event: StateEvent) -> None:
    """Observe every write's event (contract § Events) of every store opened in this process.

    Called after the write, never able to undo it; an exception is logged and ignored.
    Not called when the store's ``triggers_enabled`` is false.

    .. versionadded:: 0.1
    """

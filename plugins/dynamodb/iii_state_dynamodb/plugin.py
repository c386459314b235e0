"""Registers the ``dynamodb`` adapter. No I/O at import: pluggy imports every installed plugin."""

from __future__ import annotations

from collections.abc import Callable

from iii_state_core import Adapter, hookimpl

from .adapter import DynamoDBAdapter


@hookimpl
def iii_state_register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(DynamoDBAdapter)

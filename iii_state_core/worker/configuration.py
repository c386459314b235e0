"""The worker's entry in iii's configuration worker, as iii's ``state`` worker keeps it.

At boot the worker ensures its entry (id ``$III_CONFIG_NAME`` or ``state``) with the settings it
started from as the initial value (installed only when nothing is stored), reads the entry back
and applies it; ``state::on-config-change``, bound to ``configuration:updated`` of that entry,
reads it again and applies it. ``triggers_enabled`` and ``max_value_bytes`` apply at once; the
adapter is restart-tier (a change is logged); ``save_interval_ms`` has nothing to drive here.

Value rules are the reference worker's: unknown keys are an error; ``max_value_bytes: 0`` and a
``save_interval_ms`` outside 100-3,600,000 count as unset; ``null`` or a missing entry means the
defaults; a malformed stored value fails the boot and, on a change, keeps the previous settings.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..config import StateConfig
from ..values import json_type

log = logging.getLogger("iii_state.worker")

DEFAULT_CONFIG_ID: Final = "state"
ON_CONFIG_CHANGE_ID: Final = "state::on-config-change"
#: Calls to the configuration worker: attempts, pause per attempt, and the time budget of each.
ATTEMPTS: Final = 3
BACKOFF_S: Final = 0.25
TIMEOUT_MS: Final = 10_000
#: Errors that are an answer, not a failure: retrying them cannot help.
FINAL_CODES: Final = ("function_not_found", "NOT_FOUND")
SAVE_INTERVAL_RANGE: Final = (100, 3_600_000)
_KEYS: Final = ("adapter", "triggers_enabled", "max_value_bytes", "save_interval_ms")

#: ``call(function_id, payload, timeout_ms)`` through the engine, in namespace ``default``.
EngineCall = Callable[[str, Any, int], Awaitable[Any]]


class ConfigValueError(ValueError):
    """A stored configuration value that is not a state configuration."""


def config_id() -> str:
    """The entry this worker owns: ``$III_CONFIG_NAME`` (trimmed, non-empty), else ``state``."""
    return (os.environ.get("III_CONFIG_NAME") or "").strip() or DEFAULT_CONFIG_ID


@dataclass(frozen=True)
class EntrySettings:
    """One configuration value, normalized."""

    adapter: dict[str, Any] | None = None
    triggers_enabled: bool = True
    max_value_bytes: int | None = None
    save_interval_ms: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"triggers_enabled": self.triggers_enabled}
        if self.adapter is not None:
            value["adapter"] = self.adapter
        if self.max_value_bytes is not None:
            value["max_value_bytes"] = self.max_value_bytes
        if self.save_interval_ms is not None:
            value["save_interval_ms"] = self.save_interval_ms
        return value


def _count(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise ConfigValueError(
            f"invalid state configuration: `{name}` must be a non-negative integer, got {json_type(value)}"
        )
    return value


def parse_entry(value: Any) -> EntrySettings:
    """The settings of a stored value (``None``: the defaults).

    :raises ConfigValueError: for anything but a state configuration object.
    """
    if value is None:
        return EntrySettings()
    if not isinstance(value, Mapping):
        raise ConfigValueError(f"invalid state configuration: expected an object, got {json_type(value)}")
    unknown = [k for k in value if k not in _KEYS]
    if unknown:
        raise ConfigValueError(
            f"invalid state configuration: unknown field `{unknown[0]}`, expected one of {', '.join(_KEYS)}"
        )
    triggers = value.get("triggers_enabled")
    if triggers is not None and not isinstance(triggers, bool):
        raise ConfigValueError(
            f"invalid state configuration: `triggers_enabled` must be a boolean, got {json_type(triggers)}"
        )
    adapter = value.get("adapter")
    if adapter is not None:
        if not isinstance(adapter, Mapping) or not isinstance(adapter.get("name"), str):
            raise ConfigValueError(
                "invalid state configuration: `adapter` must be an object with a string `name`"
            )
        extra = [k for k in adapter if k not in ("name", "config")]
        if extra:
            raise ConfigValueError(f"invalid state configuration: unknown field `adapter.{extra[0]}`")
        adapter = dict(adapter)
    max_bytes = _count(value.get("max_value_bytes"), "max_value_bytes")
    interval = _count(value.get("save_interval_ms"), "save_interval_ms")
    low, high = SAVE_INTERVAL_RANGE
    return EntrySettings(
        adapter=adapter,
        triggers_enabled=True if triggers is None else triggers,
        max_value_bytes=max_bytes or None,  # 0 counts as unset
        save_interval_ms=interval if interval is not None and low <= interval <= high else None,
    )


def seed_of(settings: StateConfig | None, adapter_name: str, secrets: list[str]) -> dict[str, Any]:
    """The initial value: the settings this worker started from, normalized.

    The adapter's config goes in only when it holds none of the adapter's secrets (a Redis URL
    with a password stays out of the configuration store; the name alone is then recorded).
    """
    adapter: dict[str, Any] = {"name": adapter_name}
    if (
        settings is not None
        and settings.adapter_config
        and not _holds_secret(settings.adapter_config, secrets)
    ):
        adapter["config"] = dict(settings.adapter_config)
    low, high = SAVE_INTERVAL_RANGE
    interval = settings.state_options.get("save_interval_ms") if settings is not None else None
    return EntrySettings(
        adapter=adapter,
        triggers_enabled=settings.triggers_enabled if settings is not None else True,
        max_value_bytes=settings.max_value_bytes if settings is not None else None,
        save_interval_ms=interval if isinstance(interval, int) and low <= interval <= high else None,
    ).to_json()


def _holds_secret(value: Any, secrets: list[str]) -> bool:
    if isinstance(value, str):
        return any(s and s in value for s in secrets)
    if isinstance(value, Mapping):
        return any(_holds_secret(v, secrets) for v in value.values())
    if isinstance(value, list):
        return any(_holds_secret(v, secrets) for v in value)
    return False


def _code(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else None


async def call_configuration(call: EngineCall, function_id: str, payload: Any) -> Any:
    """One configuration call: up to 3 attempts, 250 ms times the attempt apart; an answer that is an
    error code in :data:`FINAL_CODES` is raised at once."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await call(function_id, payload, TIMEOUT_MS)
        except Exception as exc:
            if _code(exc) in FINAL_CODES or attempt == ATTEMPTS:
                raise
            await asyncio.sleep(BACKOFF_S * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


async def ensure_entry(call: EngineCall, seed: dict[str, Any]) -> None:
    """``configuration::ensure``: register the entry, install ``seed`` only if nothing is stored."""
    await call_configuration(
        call,
        "configuration::ensure",
        {
            "id": config_id(),
            "name": "State",
            "description": "State store settings: storage adapter, trigger fan-out gate, max value size, "
            "file-store flush cadence.",
            "schema": SCHEMA,
            "metadata": {"ui_form": DEFAULT_CONFIG_ID},
            "initial_value": seed,
        },
    )


async def fetch_entry(call: EngineCall) -> EntrySettings:
    """``configuration::get``: the stored settings (missing, ``null`` or ``NOT_FOUND``: defaults).

    :raises ConfigValueError: when the stored value is malformed.
    :raises Exception: the call's own failure (the caller keeps what it had).
    """
    try:
        answer = await call_configuration(call, "configuration::get", {"id": config_id()})
    except Exception as exc:
        if _code(exc) == "NOT_FOUND":
            return EntrySettings()
        raise
    return parse_entry(answer.get("value") if isinstance(answer, Mapping) else None)


_COUNT_OR_NULL: Final = {"type": ["integer", "null"], "minimum": 0}
#: The entry's JSON schema (the configuration console renders it as a form).
SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "adapter": {
            "type": "object",
            "description": "Storage adapter and its config (restart-tier).",
            "properties": {"name": {"type": "string"}, "config": {"type": "object"}},
            "required": ["name"],
            "additionalProperties": False,
        },
        "triggers_enabled": {"type": ["boolean", "null"], "description": "Run reactions after writes. Live."},
        "max_value_bytes": {
            **_COUNT_OR_NULL,
            "description": "Largest value a write may store; 0 or null: no limit. Live.",
        },
        "save_interval_ms": {**_COUNT_OR_NULL, "description": "Accepted for iii's kv; no effect here."},
    },
}

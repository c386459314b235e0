"""The worker's entry in iii's configuration worker, as iii's ``state`` worker keeps it.

At boot, before it opens a store, the worker ensures its entry (id ``$III_CONFIG_NAME`` or
``state``) with the settings of its config file as the initial value (installed only when nothing
is stored), reads the entry back and opens the adapter the entry names (:func:`boot_settings`);
``state::on-config-change``, bound to ``configuration:updated`` of that entry, reads it again and
applies it. ``triggers_enabled`` and ``max_value_bytes`` apply at once; the adapter is
restart-tier (a change is logged and read at the next boot); ``save_interval_ms`` has nothing to
drive here (every write is committed before it is answered).

Value rules are the reference worker's: unknown keys are an error; ``max_value_bytes: 0`` and a
``save_interval_ms`` outside 100-3,600,000 count as unset; ``null`` or a missing entry means the
defaults; a malformed stored value fails the boot and, on a change, keeps the previous settings.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..config import StateConfig
from ..opening import config_secrets
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
        if adapter.get("config") is not None and not isinstance(adapter["config"], Mapping):
            raise ConfigValueError(
                f"invalid state configuration: `adapter.config` must be an object, "
                f"got {json_type(adapter['config'])}"
            )
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


def seed_of(settings: StateConfig) -> dict[str, Any]:
    """The initial value: the settings of the config file, normalized.

    The adapter's config goes in only when it holds nothing that looks secret (a password in a
    URL, an option named like a password, token or key): a Redis URL with a password stays out
    of the configuration store, and the name alone is recorded. :func:`boot_settings` then takes
    the config from the file again.
    """
    adapter: dict[str, Any] = {"name": settings.adapter}
    if settings.adapter_config and not _holds_secret(
        settings.adapter_config, config_secrets(settings.adapter_config)
    ):
        adapter["config"] = dict(settings.adapter_config)
    low, high = SAVE_INTERVAL_RANGE
    interval = settings.state_options.get("save_interval_ms")
    return EntrySettings(
        adapter=adapter,
        triggers_enabled=settings.triggers_enabled,
        max_value_bytes=settings.max_value_bytes,
        save_interval_ms=interval if isinstance(interval, int) and low <= interval <= high else None,
    ).to_json()


def boot_settings(file: StateConfig, entry: EntrySettings | None) -> StateConfig:
    """The settings a booting worker opens its store with: the config file's, with the entry's
    adapter, limits and flush cadence over them (the entry wins, as for ``triggers_enabled``).

    The entry's adapter, with its ``config``, replaces the file's. An entry that names the
    file's adapter and gives no ``config`` keeps the file's config: that is how a secret stays
    in the file only (the seed records the adapter's name alone when its config holds a secret).
    Relative paths stay relative to the config file's directory.
    """
    if entry is None:
        return file
    name, config = file.adapter, dict(file.adapter_config)
    if entry.adapter is not None:
        given = entry.adapter.get("config")
        if given is not None or entry.adapter["name"] != file.adapter:
            # null options count as unset, as in the reference's serde ``Option`` fields
            name, config = entry.adapter["name"], {k: v for k, v in (given or {}).items() if v is not None}
    options = dict(file.state_options)
    if entry.save_interval_ms is not None:
        options["save_interval_ms"] = entry.save_interval_ms
    return dataclasses.replace(
        file,
        adapter=name,
        adapter_config=config,
        triggers_enabled=entry.triggers_enabled,
        max_value_bytes=entry.max_value_bytes,
        state_options=options,
        source=f"{file.source} with configuration entry {config_id()!r}",
    )


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


async def ensure_entry(call: EngineCall, seed: dict[str, Any], adapters: Iterable[str]) -> None:
    """``configuration::ensure``: register the entry, install ``seed`` only if nothing is stored."""
    await call_configuration(
        call,
        "configuration::ensure",
        {
            "id": config_id(),
            "name": "State",
            "description": "State store settings: storage adapter, trigger fan-out gate, max value size, "
            "file-store flush cadence.",
            "schema": schema(adapters),
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


_INTERVAL: Final = {"type": ["integer", "null"], "format": "uint64", "minimum": 100.0, "maximum": 3_600_000.0}
#: The reference's ``kv`` and ``redis`` config schemas (its closed ``oneOf`` branches), with
#: our ``kv`` options added (optional, so a value iii's console writes still validates).
_REFERENCE_DEFINITIONS: Final[dict[str, Any]] = {
    "KvAdapterConfig": {
        "description": "Configuration for the built-in `kv` storage adapter.",
        "type": "object",
        "properties": {
            "store_method": {
                "description": "`in_memory` keeps data for the process lifetime; `file_based` persists "
                "it under `file_path`.",
                "anyOf": [{"$ref": "#/definitions/KvStoreMethod"}, {"type": "null"}],
            },
            "file_path": {"description": "Directory for file-based storage.", "type": ["string", "null"]},
            "save_interval_ms": {
                **_INTERVAL,
                "description": "Accepted for iii's kv; every write here is committed before it is "
                "answered, so there is no flush cadence.",
            },
            "fsync": {"description": "iii-state: fsync every commit.", "type": ["boolean", "null"]},
            "busy_timeout_ms": {
                "description": "iii-state: how long a write waits for another process's lock.",
                "type": ["integer", "null"],
                "minimum": 0.0,
            },
        },
        "additionalProperties": False,
    },
    "KvStoreMethod": {"type": "string", "enum": ["in_memory", "file_based"]},
    "RedisAdapterConfig": {
        "description": "Configuration for the `redis` storage adapter (Redis, Valkey, Cluster). iii-state "
        "takes more options than `redis_url` (see the redis plugin's README); the adapter checks them.",
        "type": "object",
        "properties": {
            "redis_url": {
                "description": "Redis connection URL. Defaults to `redis://localhost:6379`.",
                "type": ["string", "null"],
            }
        },
    },
}
_REFERENCE_ADAPTERS: Final = {"kv": "KvAdapterConfig", "redis": "RedisAdapterConfig"}


def _branch(name: str, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": name,
        "type": "object",
        "properties": {"name": {"type": "string", "enum": [name]}, "config": config},
        "required": ["name"],
        "additionalProperties": False,
    }


def schema(adapters: Iterable[str]) -> dict[str, Any]:
    """The entry's JSON schema (the configuration console renders it as a form): the reference's
    ``StateConfig`` schema, whose adapter is a closed ``oneOf`` keyed on ``name``, with one more
    branch per other installed adapter (its config an object its adapter checks when it opens)."""
    ours = sorted(set(adapters) - set(_REFERENCE_ADAPTERS))
    branches = [_branch(n, {"$ref": f"#/definitions/{d}"}) for n, d in _REFERENCE_ADAPTERS.items()]
    branches += [_branch(n, {"type": "object"}) for n in ours]
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "StateConfig",
        "type": "object",
        "properties": {
            "adapter": {
                "description": "Storage adapter selection and its adapter-specific config, keyed on `name`. "
                "Restart-tier: a change is logged and takes effect at the next worker start.",
                "oneOf": branches,
            },
            "triggers_enabled": {
                "description": "Run state reactions after writes. Applied live. Defaults to `true`.",
                "type": ["boolean", "null"],
            },
            "max_value_bytes": {
                "description": "Largest value a write may store, in bytes of compact JSON "
                "(VALUE_TOO_LARGE). Applied live. Unset means no limit.",
                "type": ["integer", "null"],
                "format": "uint",
                "minimum": 1.0,
            },
            "save_interval_ms": {
                **_INTERVAL,
                "description": "iii's kv flush cadence; accepted, drives nothing here (every write is "
                "committed before it is answered).",
            },
        },
        "additionalProperties": False,
        "definitions": _REFERENCE_DEFINITIONS,
    }

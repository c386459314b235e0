"""Open a store: read the config, find the adapter's plugin, build the adapter and a front end."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from .adapter import Adapter, AsyncAdapter
from .config import StateConfig, resolve
from .driver import mentions_secret, redact
from .errors import BackendError, ConfigError, StateError
from .events import EventBus
from .operations import Limits
from .plugins import Registry, default_registry
from .store import AsyncStateStore, StateStore

ConfigSource = str | os.PathLike[str] | Mapping[str, Any] | None


def _settings(
    config: ConfigSource, adapter: str | None, adapter_config: Mapping[str, Any] | None
) -> StateConfig:
    if adapter is not None:
        if config is not None:
            raise ConfigError("give either `config` or `adapter`/`adapter_config`, not both")
        if not isinstance(adapter, str):
            raise ConfigError(f"`adapter` must be an adapter name (a string), got {type(adapter).__name__}")
        if adapter_config is not None and not isinstance(adapter_config, Mapping):
            raise ConfigError(
                f"`adapter_config` must be a mapping of the adapter's options, "
                f"got {type(adapter_config).__name__}"
            )
        return StateConfig(adapter, dict(adapter_config or {}), source=f"adapter={adapter}")
    if adapter_config is not None:
        raise ConfigError("`adapter_config` needs `adapter` to say which adapter it configures")
    if config is not None and not isinstance(config, (str, os.PathLike, Mapping)):
        raise ConfigError(
            f"`config` must be the path of an iii-config.yaml or a mapping, got {type(config).__name__}"
        )
    return resolve(config)


def config_secrets(config: Mapping[str, Any]) -> list[str]:
    """Strings of an adapter config that may be secret: passwords in URLs, secret-named keys."""
    found: list[str] = []
    for name, value in config.items():
        if not isinstance(value, str):
            continue
        if any(word in name.lower() for word in ("password", "secret", "token", "key")):
            found.append(value)
        password = urlsplit(value).password if "://" in value else None
        if password:
            found += [password, unquote(password)]
    return found


def adapter_config_for(cls: type[Adapter], settings: StateConfig) -> dict[str, Any]:
    """The config ``cls`` is opened with: the adapter config, plus the state-block settings the
    adapter declares (``state_options``), with relative path options made relative to the
    config file."""
    config = dict(settings.adapter_config)
    for name, value in settings.state_options.items():
        if name in cls.state_options:
            config.setdefault(name, value)  # the adapter's own config wins
    if settings.base_dir is not None:
        for name in cls.path_options:
            value = config.get(name)
            if isinstance(value, str) and value and not os.path.isabs(os.path.expanduser(value)):
                config[name] = os.path.normpath(os.path.join(settings.base_dir, value))
    return config


def _open_adapter(cls: type[Adapter], settings: StateConfig, *, must_exist: bool = False) -> Adapter:
    """Build the adapter; a failure becomes a one-line state error with secrets removed."""
    config = adapter_config_for(cls, settings)
    if must_exist:
        missing = cls.missing_store(config)
        if missing is not None:
            raise ConfigError(
                f"the store named by {settings.source} does not exist ({missing}); nothing was read. "
                f"Relative paths in a config file are relative to that file's directory"
            )
    try:
        return cls.open(config)
    except StateError:
        raise
    except Exception as exc:
        secrets = config_secrets(settings.adapter_config)
        detail = redact(f"{type(exc).__name__}: {exc}", secrets)
        error = BackendError(f"cannot open the {settings.adapter} adapter: {detail}", code="OPEN_ERROR")
        raise error from (None if mentions_secret(exc, secrets) else exc)


def _check_expiry_events(cls: type[Adapter], settings: StateConfig) -> None:
    """:raises ConfigError: when the adapter cannot deliver ``state:expired`` events."""
    capabilities = cls.capabilities
    if capabilities.ttl == "none" or capabilities.expiry_event_delay_ms is None:
        why = "has no entry expiry (capability ttl is none)" if capabilities.ttl == "none" else (
            "cannot take expired entries atomically (no take_expired, capability "
            "expiry_event_delay_ms is unset)"
        )
        raise ConfigError(
            f"state config ({settings.source}): expiry_events is true but the {settings.adapter} adapter "
            f"{why}; remove expiry_events or use an adapter that supports it (iii-state plugins lists them)"
        )


def _check_sweeper_process(settings: StateConfig) -> None:
    """:raises ConfigError: when ``expiry_sweeper: process`` is asked where a child cannot be
    given pipes (not POSIX)."""
    if settings.expiry_sweeper == "process" and os.name != "posix":
        raise ConfigError(
            f"state config ({settings.source}): 'expiry_sweeper: process' needs a POSIX system (its "
            f"child process talks over inherited pipes); drop expiry_sweeper"
        )


def _check_shared(instance: Adapter, settings: StateConfig) -> None:
    """:raises ConfigError: when ``expiry_sweeper: process`` is asked of a store no other process
    can open (the kv adapter's class is known only once it is open: file or memory)."""
    if settings.expiry_sweeper == "process" and not type(instance).capabilities.shared:
        instance.close()
        raise ConfigError(
            f"state config ({settings.source}): 'expiry_sweeper: process' needs a store another process "
            f"can open, and this {settings.adapter} store lives in this process only (capability shared "
            f"is false); drop expiry_sweeper or use a shared store"
        )


def read_settings(config: ConfigSource) -> StateConfig:
    """The settings ``config`` names (as :func:`open_store` reads them), without opening anything.

    :raises ConfigError: when the config is unusable.
    """
    return _settings(config, None, None)


def _open(
    config: ConfigSource,
    adapter: str | None,
    adapter_config: Mapping[str, Any] | None,
    registry: Registry | None,
    must_exist: bool = False,
) -> tuple[Adapter, Limits, EventBus, StateConfig, Registry]:
    return _open_settings(_settings(config, adapter, adapter_config), registry, must_exist)


def _open_settings(
    settings: StateConfig, registry: Registry | None, must_exist: bool = False
) -> tuple[Adapter, Limits, EventBus, StateConfig, Registry]:
    registry = registry or default_registry()
    info = registry.adapter(settings.adapter)
    _check_sweeper_process(settings)
    # the store keeps the resolved paths, so whoever reopens it from its settings (another
    # process of the suite, a second store object) opens this store, wherever it runs from
    settings = dataclasses.replace(settings, adapter_config=adapter_config_for(info.cls, settings))
    if settings.expiry_events:
        _check_expiry_events(info.cls, settings)
    instance = _open_adapter(info.cls, settings, must_exist=must_exist)
    _check_shared(instance, settings)
    bytes_tokens = type(instance).read_versioned in (Adapter.read_versioned, AsyncAdapter.read_versioned)
    limits = Limits(
        capabilities=type(instance).capabilities,
        adapter_name=settings.adapter,
        max_value_bytes=settings.max_value_bytes,
        max_depth=settings.max_value_depth,
        value_tokens=type(instance).value_tokens or bytes_tokens,
        bytes_tokens=bytes_tokens,
        one_step_transact=type(instance).write_many_when is not Adapter.write_many_when,
        joined_reads=type(instance).read_joined is not Adapter.read_joined,
    )
    events = EventBus(settings.triggers_enabled, registry.event_hook())
    return instance, limits, events, settings, registry


def open_store(
    config: ConfigSource = None,
    *,
    adapter: str | None = None,
    adapter_config: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
    must_exist: bool = False,
) -> StateStore:
    """Open a store.

    :param config: path of an ``iii-config.yaml``, or the state block as a mapping. With nothing
        given: ``$III_CONFIG``, then ``./iii-config.yaml``, then the embedded file store in
        ``./data/state_store``.
    :param adapter: pick an adapter by name instead (``kv``, ``redis``, …).
    :param adapter_config: that adapter's config mapping.
    :param must_exist: refuse (``ConfigError``) a store that opening would create, e.g. a file
        store whose file is missing — for reading data out of it.
    :raises ConfigError: when the config is unusable (the message says what to change). A config
        file must hold the state block; relative paths in it are relative to its directory.
    """
    return StateStore(*_open(config, adapter, adapter_config, registry, must_exist))


def open_async_store(
    config: ConfigSource = None,
    *,
    adapter: str | None = None,
    adapter_config: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
    must_exist: bool = False,
) -> AsyncStateStore:
    """Like :func:`open_store`, for asyncio code: every method is awaited."""
    return AsyncStateStore(*_open(config, adapter, adapter_config, registry, must_exist))


def open_async_store_with(settings: StateConfig, *, registry: Registry | None = None) -> AsyncStateStore:
    """Open an asyncio store from settings already read (:func:`read_settings`, possibly changed:
    the worker applies its configuration entry's adapter this way)."""
    return AsyncStateStore(*_open_settings(settings, registry))

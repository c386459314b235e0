"""Typed reading of a config mapping, so every adapter rejects unknown and mistyped keys alike."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")
_MISSING: Any = object()
#: Default upper bounds: what a C ``int`` holds, and a million (seconds: about 11.5 days).
MAX_INT_OPTION = 2**31 - 1
MAX_FLOAT_OPTION = 1_000_000.0


def _plain(number: float) -> builtins.str:
    return builtins.str(int(number)) if float(number).is_integer() else repr(number)


def _shown(value: float) -> builtins.str:
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}…({len(text)} digits)"


class Options:
    """Read options out of a config mapping; :meth:`finish` rejects the keys nobody read.

    >>> opts = Options("adapter 'redis'", {"redis_url": "redis://h"})
    >>> opts.str("redis_url", "redis://localhost:6379")
    'redis://h'
    >>> opts.finish()
    """

    def __init__(self, owner: builtins.str, config: Mapping[builtins.str, Any] | None) -> None:
        if config is not None and not isinstance(config, Mapping):
            raise ConfigError(f"{owner} config must be a mapping, got {type(config).__name__}")
        self._owner = owner
        self._data = dict(config or {})
        self._known: list[builtins.str] = []

    def _take(self, name: builtins.str, default: Any) -> Any:
        self._known.append(name)
        value = self._data.pop(name, _MISSING)
        return default if value is _MISSING else value

    def _fail(self, name: builtins.str, expected: builtins.str, value: Any) -> ConfigError:
        shown = type(value).__name__
        return ConfigError(f"{self._owner} config: '{name}' must be {expected}, got {shown}")

    def str(
        self, name: builtins.str, default: builtins.str, *, choices: tuple[builtins.str, ...] = ()
    ) -> builtins.str:
        value = self._take(name, default)
        if not isinstance(value, builtins.str):
            raise self._fail(name, "a string", value)
        if choices and value not in choices:
            raise ConfigError(
                f"{self._owner} config: '{name}' is {value!r}; choose one of {', '.join(choices)}"
            )
        return value

    def optional_str(self, name: builtins.str) -> builtins.str | None:
        value = self._take(name, None)
        if value is not None and not isinstance(value, builtins.str):
            raise self._fail(name, "a string", value)
        return value

    def int(
        self,
        name: builtins.str,
        default: int | None,
        *,
        minimum: int | None = None,
        maximum: int = MAX_INT_OPTION,
    ) -> Any:
        """An integer from ``minimum`` to ``maximum`` (default: what a C ``int`` holds)."""
        value = self._take(name, default)
        if value is None:  # `name: null` (or `name:`) means "not set": the default
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(name, "an integer", value)
        if minimum is not None and value < minimum:
            raise ConfigError(f"{self._owner} config: '{name}' must be at least {minimum}, got {value}")
        if value > maximum:
            shown = _shown(value)
            raise ConfigError(f"{self._owner} config: '{name}' must be at most {maximum}, got {shown}")
        return value

    def float(
        self,
        name: builtins.str,
        default: float | None,
        *,
        minimum: float = 0.0,
        maximum: float = MAX_FLOAT_OPTION,
    ) -> Any:
        """A finite number from ``minimum`` to ``maximum`` (default: a million, as seconds 11 days).

        NaN, infinities and huge numbers are refused here, at load, rather than by every call
        later (a socket timeout of ``.inf`` or ``1e300`` overflows inside the client library).
        """
        value = self._take(name, default)
        if value is None:  # `name: null` (or `name:`) means "not set": the default
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._fail(name, "a number", value)
        if not (minimum <= value <= maximum):  # NaN fails every comparison
            raise ConfigError(
                f"{self._owner} config: '{name}' must be at least {_plain(minimum)} and at most "
                f"{_plain(maximum)}, got {_shown(value)}"
            )
        return float(value)

    def bool(self, name: builtins.str, default: bool | None) -> Any:
        value = self._take(name, default)
        if value is None:  # `name: null` means "not set": the default
            return default
        if value is not None and not isinstance(value, bool):
            raise self._fail(name, "true or false", value)
        return value

    def str_list(self, name: builtins.str, default: list[builtins.str]) -> list[builtins.str]:
        """A list of strings; a single string is accepted as a one-item list."""
        value = self._take(name, default)
        if isinstance(value, builtins.str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, builtins.str) for v in value):
            raise self._fail(name, "a string or a list of strings", value)
        return list(value)

    def raw(self, name: builtins.str, default: T) -> Any:
        """An option of any shape (the caller checks it)."""
        return self._take(name, default)

    def finish(self) -> None:
        """:raises ConfigError: naming every key that no reader asked for."""
        if self._data:
            unknown = ", ".join(repr(k) for k in sorted(map(builtins.str, self._data)))
            known = ", ".join(self._known) or "none"
            raise ConfigError(f"{self._owner} config has unknown key(s) {unknown}; known keys: {known}")

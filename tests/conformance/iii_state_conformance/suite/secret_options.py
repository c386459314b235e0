"""Config options that obviously hold a secret must be declared by ``secrets()`` and never shown.

The core scrubs exactly the strings ``secrets()`` returns from every error it wraps, so an
option the adapter forgets to return leaks in the first connection error. The suite does not
trust the adapter's own list: it looks at the config for secret-named options and for URLs
carrying a password.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from iii_state_core import StateStore

_SECRET_WORDS = {
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "credentials",
    "auth",
}
_KEY_OWNERS = {"api", "private", "secret", "access", "auth", "signing", "encryption", "master", "session"}


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def looks_secret(name: str) -> bool:
    """``password``, ``auth_token``, ``aws_secret_access_key``, ``apiKey`` … but not ``key_prefix``."""
    words = _words(name)
    if not words or words[-1] == "id":  # access_key_id names a key, it is not one
        return False
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(w == "key" and i > 0 and words[i - 1] in _KEY_OWNERS for i, w in enumerate(words))


def config_secrets(config: Any, name: str = "") -> Iterator[tuple[str, str]]:
    """``(option path, secret string)`` for every obvious secret in a (nested) config."""
    if isinstance(config, dict):
        for key, value in config.items():
            yield from config_secrets(value, f"{name}.{key}" if name else str(key))
    elif isinstance(config, list):
        for i, value in enumerate(config):
            yield from config_secrets(value, f"{name}[{i}]")
    elif isinstance(config, str):
        if looks_secret(name.rsplit(".", 1)[-1].split("[")[0]) and len(config) >= 4:
            yield name, config
        if "://" in config:
            try:
                password = urlsplit(config).password
            except ValueError:
                password = None
            if password:
                yield f"{name} (the URL's password)", password
                if unquote(password) != password:
                    yield f"{name} (the URL's password, unquoted)", unquote(password)


class SecretTests:
    def test_config_options_that_hold_a_secret_are_declared_and_never_shown(self, store: StateStore) -> None:
        settings = store.settings
        found = list(config_secrets(dict(settings.adapter_config))) if settings is not None else []
        if not found:
            pytest.skip(
                "the store's config holds no option that looks secret (password, token, URL password)"
            )
        declared = store.adapter.secrets()
        undeclared = [where for where, value in found if value not in declared]
        assert not undeclared, (
            f"secrets() does not return the value of {', '.join(undeclared)}: the core scrubs only what "
            "secrets() returns, so an error message would show it"
        )
        shown = f"{store.adapter.describe()} {store!r} {store.adapter!r}"
        visible = [where for where, value in found if value in shown]
        assert not visible, f"describe() or a repr shows the value of {', '.join(visible)}"

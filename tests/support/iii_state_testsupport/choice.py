"""Where each shared test server comes from, chosen in a fixed order and recorded for the report.

For every backend the fixtures try, in this order:

1. an address you give in the environment (``III_STATE_TEST_REDIS_URL``, …): used as it is;
2. a container, when a Docker engine answers (testcontainers starts it; images from
   ``scripts/build-test-images`` or named by ``$III_STATE_REDIS_IMAGE`` …);
3. the local binary (``redis-server``, ``memcached``, dynalite, moto).

``III_STATE_TEST_SERVERS`` narrows the order: ``container`` (only 1 and 2: a container that
cannot start is a failure), ``binary`` (only 1 and 3), ``auto`` (the default, all three).
When nothing serves a backend the message names all three ways to get one; the test is skipped,
or under ``CI=true`` fails. What served each backend is recorded for the session's report
(:func:`served`; a pytest session nested in another, as pytester runs them, has its own list).
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import pytest

from .containers import ContainerInfo, run_container, unavailable_reason
from .environment import INSTALL_HINTS, ServerUnavailable, ci_mode

__all__ = [
    "MODE_ENV",
    "NO_CONTAINERS_ENV",
    "SESSIONS",
    "Served",
    "given",
    "header_line",
    "no_server_message",
    "serve",
    "served",
    "server_mode",
    "server_unavailable",
]

MODE_ENV = "III_STATE_TEST_SERVERS"
#: older spelling of ``III_STATE_TEST_SERVERS=binary``
NO_CONTAINERS_ENV = "III_STATE_TEST_NO_CONTAINERS"
_MODES = ("auto", "container", "binary")

T = TypeVar("T")


@dataclass(frozen=True)
class Served:
    """One shared server a fixture handed out: which backend, from where, and the facts."""

    backend: str
    source: str  # "environment", "container" or "local binary"
    detail: str


#: one list per pytest session, innermost last (the plugin pushes and pops them)
SESSIONS: list[list[Served]] = [[]]


def served() -> list[Served]:
    """What served each backend in the current pytest session, in the order they started."""
    return SESSIONS[-1]


def server_mode() -> str:
    """``auto``, ``container`` or ``binary`` (from ``$III_STATE_TEST_SERVERS``)."""
    value = os.environ.get(MODE_ENV, "").strip().lower() or "auto"
    if value not in _MODES:
        raise pytest.UsageError(f"{MODE_ENV}={value!r}: use one of {', '.join(_MODES)}")
    if value == "auto" and os.environ.get(NO_CONTAINERS_ENV, "").strip() not in {"", "0"}:
        return "binary"
    return value


def server_unavailable(reason: str | BaseException) -> NoReturn:
    """Skip the test, or under ``CI=true`` fail it, with ``reason``."""
    message = str(reason)
    if ci_mode():
        pytest.fail(f"{message}  [CI=true: a missing test server is a failure]", pytrace=False)
    pytest.skip(message)


def _without_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def no_server_message(backend: str, env_var: str, binary: str, tried: dict[str, str]) -> str:
    """The one message that names every way to get a server, and why each did not work here."""
    container = tried.get("container", "")
    local = tried.get("binary", "")
    return (
        f"no {backend} server for the tests. Three ways to get one: "
        f"(1) set {env_var} to a server you run; "
        f"(2) start a Docker engine, pip install testcontainers, and build the images with "
        f"bash scripts/build-test-images{f' — here: {container}' if container else ''}; "
        f"(3) install the binary: {INSTALL_HINTS.get(binary, binary)}{f' — here: {local}' if local else ''}."
    )


def given(backend: str, env_var: str, value: str) -> None:
    """Record that ``env_var`` named the server for ``backend`` (the fixture uses it as it is)."""
    served().append(Served(backend, "environment", f"${env_var} = {_without_password(value)}"))


def serve(
    backend: str,
    *,
    env_var: str,
    container_kind: str | None,
    binary: str,
    stack: contextlib.ExitStack,
    from_container: Callable[[ContainerInfo], T],
    from_binary: Callable[[], tuple[T, str]],
) -> T:
    """Start the server for ``backend``: a container, else the local binary (see the module doc),
    and record which one served. ``from_binary()`` starts the local server inside ``stack`` and
    returns ``(value, detail)``; ``from_container(info)`` turns a started container into the value.
    """
    mode = server_mode()
    tried: dict[str, str] = {}
    if container_kind is None:
        tried["container"] = f"no container image serves {backend}"
    elif mode == "binary":
        tried["container"] = f"{MODE_ENV}=binary"
    else:
        why_not = unavailable_reason(container_kind)
        if why_not is None:
            info = stack.enter_context(run_container(container_kind))
            detail = (
                f"{info.image} at {info.address}, answering {info.started_in_s:.1f} s after start "
                f"(container {info.container_id[:12]})"
            )
            served().append(Served(backend, "container", detail))
            return from_container(info)
        tried["container"] = why_not
    if mode == "container":
        reason = f"{MODE_ENV}=container, but no container can serve {backend}: {tried['container']}"
        pytest.fail(reason, pytrace=False)
    try:
        value, detail = from_binary()
    except ServerUnavailable as exc:
        tried["binary"] = str(exc)
        server_unavailable(no_server_message(backend, env_var, binary, tried))
    served().append(Served(backend, "local binary", f"{detail} (no container: {tried['container']})"))
    return value


def header_line() -> str:
    """The report header's line: the order and the mode (the engine is asked only when needed)."""
    return f"iii-state test servers: environment → container → local binary ({MODE_ENV}={server_mode()})"

"""How the worker connects and behaves: engine address, identity, time budgets; URL redaction."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..driver import redact

#: Where the SDK looks when neither ``--engine`` nor ``III_URL`` is given.
DEFAULT_ENGINE_URL = "ws://127.0.0.1:49134"
#: The engine-side identity of the worker: iii's own state worker's name, so apps and claims see the
#: same worker (``III_WORKER_NAME`` overrides it, as the SDK decides).
DEFAULT_WORKER_NAME = "state"


@dataclass(frozen=True)
class WorkerSettings:
    """Settings of one :class:`~iii_state_core.worker.StateWorker`.

    :param engine_url: the engine's WebSocket address (``ws://`` or ``wss://``). ``None``: ``$III_URL``,
        else :data:`DEFAULT_ENGINE_URL`. Never put credentials in it: the SDK logs it and writes it
        to ``$HOME/.iii/run``; use ``III_TOKEN`` instead.
    :param worker_name: the name the engine lists; ``$III_WORKER_NAME`` wins over it (SDK rule).
    :param namespace: the engine namespace to register in; ``None``: ``$III_NAMESPACE``, else the
        engine's ``default`` (where every unnamespaced ``trigger('state::…')`` resolves).
    :param drain_timeout: seconds :meth:`StateWorker.stop` waits for in-flight calls, and again for
        pending reactions, before it gives up on them.
    :param reaction_timeout: seconds one condition or reaction call may take before it is logged as
        failed.
    :param telemetry: ``False`` turns the SDK's OpenTelemetry export off; ``None`` keeps the SDK's
        default (on, unless ``OTEL_ENABLED=false``).
    :param trace_payloads: ``False`` (default) sets ``III_DISABLE_TRACE_PAYLOADS=1`` unless the
        environment already sets it, so stored values are not copied into the engine's traces.
    :param reconnect_initial_ms: first delay before reconnecting; doubles per failed attempt.
    :param reconnect_max_ms: the longest delay between two connection attempts.
    """

    engine_url: str | None = None
    worker_name: str | None = DEFAULT_WORKER_NAME
    namespace: str | None = None
    drain_timeout: float = 30.0
    reaction_timeout: float = 30.0
    telemetry: bool | None = None
    trace_payloads: bool = False
    reconnect_initial_ms: int = 1000
    reconnect_max_ms: int = 30_000

    def resolved_url(self) -> str:
        """:returns: the address the worker dials (argument, then ``$III_URL``, then the default)."""
        return self.engine_url or os.environ.get("III_URL") or DEFAULT_ENGINE_URL


def check_engine_url(url: str) -> str:
    """:returns: ``url`` when it is a ``ws://`` or ``wss://`` address with a host (and a valid port).

    :raises ValueError: naming what is wrong, with the URL's credentials hidden.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port outside 0-65535 or not a number
    except ValueError:
        raise ValueError(
            f"the engine address {redact_url(url)!r} is not a valid URL (check the port and any "
            f"brackets; example: {DEFAULT_ENGINE_URL})"
        ) from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(
            f"the engine address {redact_url(url)!r} is not a ws:// or wss:// URL with a host "
            f"(example: {DEFAULT_ENGINE_URL})"
        )
    return url


def redact_url(url: str) -> str:
    """The URL with its password, user name and query values replaced by ``***``.

    A malformed URL (``wss//bob:s3cr3t@host``, a bad port) is redacted too: everything between
    its scheme-like start and its last ``@`` is user information, whatever the mistake.

    :returns: a string safe to log.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return _redact_malformed(url)
    if not parts.scheme or not parts.hostname:
        return _redact_malformed(url)
    netloc = parts.netloc
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        netloc = f"***@{host}" + (f":{port}" if port is not None else "")
    query = parts.query
    if query:
        query = urlencode([(k, "***") for k, _ in parse_qsl(query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


_SCHEME_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*(?::?//|:/)")


def _redact_malformed(url: str) -> str:
    text = url.split("#", 1)[0]
    at = text.rfind("@")
    if at >= 0:
        start = _SCHEME_START.match(text)
        begin = start.end() if start and start.end() <= at else 0
        text = f"{text[:begin]}***{text[at:]}"
    head, mark, query = text.partition("?")
    if mark:
        text = head + mark + re.sub(r"=[^&;]*", "=***", query)
    return text


def scrub(text: str, url: str) -> str:
    """``text`` with every occurrence of ``url`` (and of its secret parts) replaced by the redacted form."""
    safe = redact_url(url)
    if safe == url:
        return text
    text = text.replace(url, safe)
    try:
        parts = urlsplit(url)
    except ValueError:
        return text
    secrets = [parts.password, parts.username, *(v for _, v in parse_qsl(parts.query))]
    return redact(text, [s for s in secrets if s])

"""The worker's view of its engine connection: clear log lines for connect, loss, retry and
give-up, and a filter that keeps the SDK's own log lines free of URL credentials and noise.

The SDK reconnects and re-registers by itself; this module only watches and reports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .functions import FunctionCallError
from .settings import redact_url, scrub

log = logging.getLogger("iii_state.worker")

#: The SDK's logger (``iii/iii.py``).
SDK_LOGGER = "iii.iii"
_CONNECT_FAILED = "Connection failed: "
_DEPRECATED = "register_trigger_type is deprecated"
_HANDLER_ERROR = "Error in handler state::"
_REJECTED = "Function registration rejected"


class EngineLink:
    """Follows the SDK's connection states and logs what an operator needs to know.

    :param url: the address dialled (logged only in redacted form).
    :param max_delay_ms: the reconnect backoff's cap, quoted in the retry message.
    :param on_lost: called (on the SDK's thread) when an established connection is lost.
    :param on_failed: called (on the SDK's thread) when the SDK gives up for good, or when the
        engine refuses one of our functions because another worker already serves it.
    """

    def __init__(
        self,
        url: str,
        max_delay_ms: int,
        on_lost: Callable[[], None],
        on_failed: Callable[[], None],
    ) -> None:
        self.url = url
        self.safe_url = redact_url(url)
        self._max_delay_s = max_delay_ms / 1000
        self._on_lost = on_lost
        self._on_failed = on_failed
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._ever_connected = False
        self._failures = 0
        self._outage_reported = False
        self._down_since: float | None = None
        self._refused: set[str] = set()
        #: Set while the worker shuts down: state changes are expected then, not news.
        self.stopping = False
        #: Connections established so far (the first one included).
        self.connections = 0
        self.filter = _SdkLogFilter(self)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until the engine connection is up. :returns: whether it is."""
        return self._connected.wait(timeout)

    # -- SDK callbacks (SDK thread) --------------------------------------------------------------

    def on_state(self, state: str) -> None:
        """The SDK's connection-state listener."""
        if self.stopping:
            if state != "connected":
                self._connected.clear()
            return
        if state == "connected":
            self._on_connected()
        elif state == "disconnected":
            self._on_disconnected()
        elif state == "reconnecting":
            with self._lock:
                report = not self._outage_reported
                self._outage_reported = True
            if report:  # the SDK's failure line did not reach us (worded differently?)
                log.warning("cannot reach the iii engine at %s; retrying with backoff", self.safe_url)
        elif state == "failed":
            self._connected.clear()
            log.error(
                "gave up on the iii engine at %s: the SDK stopped retrying (see the line above); stopping",
                self.safe_url,
            )
            self._on_failed()

    def on_connect_failed(self, reason: str) -> None:
        """One failed connection attempt, as the SDK reported it."""
        if self.stopping:
            return
        with self._lock:
            self._failures += 1
            self._outage_reported = True
            attempt = self._failures
            if self._down_since is None:
                self._down_since = time.monotonic()
        log.warning(
            "cannot reach the iii engine at %s (%s); retrying (attempt %d, backoff up to %g s)",
            self.safe_url, scrub(reason, self.url), attempt, self._max_delay_s,
        )  # fmt: skip

    def on_function_refused(self, function_id: str, namespace: str, owner: str) -> None:
        """The engine refused one registration: another live worker owns that function."""
        if self.stopping:
            return
        with self._lock:
            first = not self._refused
            self._refused.add(function_id)
        if not first:
            log.error("the engine refused %s too (owned by worker %s)", function_id, owner or "?")
            return
        log.error(
            "the engine refused %s: worker %s already serves it in namespace %r. Is the engine's "
            "built-in state worker still on? Remove `iii-state`/`state` from the engine's config.yaml "
            "(see docs/worker.md). Stopping rather than serving only part of state::*",
            function_id, owner or "?", namespace or "default",
        )  # fmt: skip
        self._on_failed()

    def _on_connected(self) -> None:
        with self._lock:
            down_for = None if self._down_since is None else time.monotonic() - self._down_since
            first = not self._ever_connected
            self._ever_connected = True
            self._failures = 0
            self._outage_reported = False
            self._down_since = None
            self.connections += 1
        self._connected.set()
        if first:
            log.info("connected to the iii engine at %s", self.safe_url)
        else:
            log.info(
                "reconnected to the iii engine at %s%s; the SDK registers the state functions and "
                "trigger type again and the engine re-sends the state triggers",
                self.safe_url, "" if down_for is None else f" after {down_for:.1f} s",
            )  # fmt: skip

    def _on_disconnected(self) -> None:
        was_up = self._connected.is_set()
        self._connected.clear()
        if not was_up:
            return
        with self._lock:
            self._outage_reported = True
            self._down_since = time.monotonic()
        log.warning(
            "lost the connection to the iii engine at %s; reconnecting (state triggers wait for "
            "the engine to re-send them)",
            self.safe_url,
        )
        self._on_lost()


class _SdkLogFilter(logging.Filter):
    """Attached to the SDK's logger while the worker runs.

    - hides the URL's credentials in every SDK line (it logs ``Connected to <url>``);
    - turns each ``Connection failed: …`` warning into the worker's own retry line;
    - turns a refused ``state::*`` registration into the worker's error line and a stop;
    - drops the SDK's traceback for a ``state::*`` failure the worker already logged at the
      right level (a bad payload is the caller's mistake, not an ERROR with a traceback);
    - drops the once-per-process deprecation warning for ``register_trigger_type``: the worker
      must use it with this SDK line, and ``docs/worker.md`` says so.
    """

    def __init__(self, link: EngineLink) -> None:
        super().__init__()
        self._link = link

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the SDK's business; let it through
            return True
        if message.startswith(_CONNECT_FAILED):
            self._link.on_connect_failed(message[len(_CONNECT_FAILED) :])
            return False
        if message.startswith(_DEPRECATED):
            return False
        if message.startswith(_REJECTED) and isinstance(record.args, tuple) and len(record.args) == 4:
            _code, namespace, function_id, owner = (str(a) for a in record.args)
            if function_id.startswith("state::"):
                self._link.on_function_refused(function_id, namespace, owner)
                return False
        if message.startswith(_HANDLER_ERROR) and _is_reported(record):
            return False
        clean = scrub(message, self._link.url)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def _is_reported(record: logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    while error is not None:
        if isinstance(error, FunctionCallError):
            return True
        error = error.__cause__
    return False

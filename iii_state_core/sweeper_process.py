"""The expiry sweeper in a process of its own (``expiry_sweeper: process``, decision 0030).

A sweeper thread shares the application's GIL: at 10,000 expiries a second its claiming (the
adapter's requests and their parsing) takes the interpreter from the application's own threads
for 10-70 µs per event. Here a child process opens the same store and claims; the application's
process only builds the events of each batch the child sends (values already decoded and ids
hashed there: 2-3 µs an event) and delivers them — on one thread that waits on the pipe without
the GIL (the async store: on its event loop, :mod:`.sweeper_loop`) — and answers "delivered",
after which the child acknowledges the batch to the store, exactly as the sweeper thread does.

So the guarantees are the thread's (module :mod:`.sweeper`): claims are atomic, each batch is
acknowledged after its handlers ran, a child killed between the two leaves the batch to its
leases (delivered again, with the same ``expiry_id``). The child ends when the application's
process does (its pipe closes) and is started again when it dies. Its log records are sent over
the pipe and logged here, under the application's logging configuration.

Wire: frames of a 4-byte length and a ``marshal``-ed tuple, on two pipes (one each way).
"""

from __future__ import annotations

import importlib
import logging
import marshal
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from . import sweeper as _sweeper
from .adapter import Adapter, Expired
from .driver import redact
from .errors import BackendError, StateError
from .events import EventBus
from .results import StateEvent
from .sweeper import STOP_WAIT_S, Backoff, Unacknowledged, expiry_parts, sweep, wanted_events, wanted_parts

if TYPE_CHECKING:
    from .config import StateConfig
    from .plugins import Registry

log = logging.getLogger("iii_state.expiry")

_FRAME: Final = struct.Struct("<I")
#: How long opening a store waits for its sweeper process to open the store too.
START_WAIT_S: Final = 60.0
#: Longest wait before starting a sweeper process again after one ended (doubling from 0.5 s).
MAX_RESTART_S: Final = 30.0


class _ParentGone(Exception):
    """The application's process closed its pipe: the child ends, leaving its claim to leases."""


def _write(fd: int, message: tuple[Any, ...]) -> None:
    _write_body(fd, marshal.dumps(message))


def _write_body(fd: int, data: bytes) -> None:
    view = memoryview(_FRAME.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, size: int) -> bytes | None:
    parts: list[bytes] = []
    while size:
        part = os.read(fd, size)
        if not part:
            return None
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _read(fd: int) -> tuple[Any, ...] | None:
    """The next message, or ``None`` when the other end closed its pipe."""
    head = _read_exact(fd, _FRAME.size)
    if head is None:
        return None
    body = _read_exact(fd, _FRAME.unpack(head)[0])
    if body is None:
        return None
    message = marshal.loads(body)
    assert isinstance(message, tuple)
    return message


def _readable(fd: int, timeout: float) -> bool:
    """Whether ``fd`` has something to read (or its other end closed) within ``timeout`` seconds
    (``poll``: ``select`` refuses descriptors past 1,023, and a busy server holds that many)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _plain(entries: list[Expired]) -> list[Expired]:
    """Entries as marshal takes them (an adapter may hand out a bytes-like value or a subclass)."""
    return [(str(scope), str(key), bytes(raw), int(deadline)) for scope, key, raw, deadline in entries]


def _batch(fresh: list[Expired]) -> bytes:
    """The child's message for a claimed batch, marshalled: its expiries decoded here (values
    parsed, ids hashed: ``"decoded"``), so the application's process only builds the events; the
    entries as they are (``"raw"``) when marshal cannot carry a value (nested past its limit)."""
    plain = _plain(fresh)
    try:
        return marshal.dumps(("decoded", expiry_parts(plain)))
    except ValueError:
        return marshal.dumps(("raw", plain))


class Undelivered(Exception):
    """A batch whose handlers could not run (the store is closing): the child does not
    acknowledge it, and it is left to its leases."""


def _events(message: tuple[Any, ...], bus: EventBus) -> list[StateEvent]:
    """The events of a batch the child sent that reach something here."""
    if message[0] == "decoded":
        return wanted_parts(message[1], bus)
    return wanted_events(message[1], bus)


@dataclass(frozen=True)
class SweeperSpec:
    """What a store's sweeper process is started from: how the store was opened (the child opens
    it again), the bus its events go to, the poll interval, and the store's name for logs."""

    settings: StateConfig
    registry: Registry | None
    events: EventBus
    interval: float
    describe: str


class ProcessSweeper:
    """The sweeper with ``expiry_sweeper: process``: a child process claims and acknowledges; a
    thread of this process builds each batch's events in between and delivers them.

    :param deliver: runs a batch's events' handlers and returns once they ran; by default
        ``events.emit_many`` on this thread (the sync store); the async store's runs them on its
        event loop (:mod:`.sweeper_loop`).
    :param held: the child opens the store but claims nothing until :meth:`release` (the
        worker waits for its engine connection before expiry events flow).
    """

    def __init__(
        self,
        spec: SweeperSpec,
        *,
        deliver: Callable[[list[StateEvent]], None] | None = None,
        held: bool = False,
    ) -> None:
        settings, registry, events = spec.settings, spec.registry, spec.events
        self._settings = settings
        # the child builds the same registry: installed plugins, and the extra plugin modules
        self._modules = [] if registry is None else list(registry.extra_plugin_modules)
        self._entry_points = True if registry is None else registry.load_entry_points
        self._bus = events
        self._deliver = events.emit_many if deliver is None else deliver
        self._interval = spec.interval
        self._describe = spec.describe
        self._held = held
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # one writer at a time on the child's pipe
        self._process: subprocess.Popen[bytes] | None = None
        self._control = -1  # our end of the pipe to the child
        self._data = -1  # our end of the pipe from the child
        self._thread = threading.Thread(target=self._serve, name="iii-state-expiry", daemon=True)

    @property
    def pid(self) -> int | None:
        """The sweeper process's pid (``None`` between one ending and the next starting)."""
        process = self._process
        return None if process is None or process.poll() is not None else process.pid

    def start(self) -> None:
        """Start the child and wait until it has opened the store.

        :raises StateError: what opening the store in the child raised (secrets removed).
        """
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        settings = pickle.dumps(self._settings)
        level = logging.getLogger("iii_state").getEffectiveLevel()
        control_child, control = os.pipe()
        data, data_child = os.pipe()
        # the child imports what this process imports, wherever it was run from
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(path or os.getcwd() for path in sys.path))
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(control_child), str(data_child)],
                stdin=subprocess.DEVNULL, pass_fds=(control_child, data_child), env=env,
            )  # fmt: skip
        except BaseException:
            for fd in (control, data):
                os.close(fd)
            raise
        finally:
            os.close(control_child)
            os.close(data_child)
        try:
            # under the lock: release() sends "go" once the child has its "open", never before
            with self._lock:
                self._process, self._control, self._data = process, control, data
                modules, held = self._modules, self._held
                _write(control, ("open", settings, modules, self._entry_points, self._interval, level, held))
            answer = self._first_answer()
        except BaseException:
            self._end_child()
            raise
        if answer[0] == "error":
            self._end_child()
            why = f"the expiry sweeper process could not open the store: {answer[2]}"
            raise BackendError(why, code=answer[1])

    def _first_answer(self) -> tuple[Any, ...]:
        while True:
            if not _readable(self._data, START_WAIT_S):
                return ("error", "OPEN_ERROR", f"no answer within {START_WAIT_S:g} s")
            message = _read(self._data)
            if message is None:
                code = self._process.wait() if self._process is not None else None
                return ("error", "OPEN_ERROR", f"it exited with code {code} (its log says why)")
            if message[0] == "log":
                _relay_log(message)
            else:
                return message

    def _serve(self) -> None:
        wait = 0.5
        while True:
            self._relay()
            code = self._end_child()
            if self._stopping.is_set():
                return
            log.warning("expiry sweeper process for %s exited (code %s); starting another in %.2g s",
                        self._describe, code, wait)  # fmt: skip
            if self._stopping.wait(wait):
                return
            try:
                self._spawn()
            except Exception as exc:
                log.warning("expiry sweeper process for %s did not start: %s", self._describe, exc)
                wait = min(MAX_RESTART_S, wait * 2)
                continue
            wait = 0.5

    def release(self) -> None:
        """Let a held child start claiming (a child started after this claims at once)."""
        with self._lock:
            if not self._held:
                return
            self._held = False
            try:
                if self._control >= 0:
                    _write(self._control, ("go",))
            except OSError:  # the child ended: the next one is started unheld
                pass

    def _relay(self) -> None:
        """Deliver the child's batches and pass on its log records until it ends."""
        deliver, bus = self._deliver, self._bus
        while True:
            try:
                message = _read(self._data)
            except (OSError, ValueError, EOFError):
                return
            if message is None:
                return
            kind = message[0]
            if kind in ("decoded", "raw"):
                try:
                    deliver(_events(message, bus))
                except Undelivered:  # the store is closing: the batch is left to its leases
                    return
                except Exception as exc:  # the handlers are guarded: the delivery itself broke
                    log.warning("expiry sweeper: delivering a batch failed (%s: %s); it is left to "
                                "its leases", type(exc).__name__, exc)  # fmt: skip
                    return
                try:
                    with self._lock:
                        _write(self._control, ("delivered",))
                except OSError:  # the child ended: its batch is left to its leases
                    return
            elif kind == "log":
                _relay_log(message)

    def _end_child(self) -> int | None:
        process = self._process
        with self._lock:  # stop() may be writing to it: a closed number could be reused meanwhile
            for fd in (self._control, self._data):
                if fd >= 0:
                    os.close(fd)
            self._control = self._data = -1
        if process is None:
            return None
        try:
            return process.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def stop(self) -> None:
        """Ask the child to end after the batch being delivered; wait for it (STOP_WAIT_S)."""
        self._stopping.set()
        try:
            with self._lock:
                if self._control >= 0:
                    _write(self._control, ("stop",))
        except OSError:
            pass
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(STOP_WAIT_S)
            if self._thread.is_alive():
                log.warning("expiry sweeper process still delivering after %g s; ending it", STOP_WAIT_S)
                process = self._process
                if process is not None:
                    process.kill()
        elif not self._thread.is_alive():
            self._end_child()


def _relay_log(message: tuple[Any, ...]) -> None:
    _kind, name, level, text = message
    logging.getLogger(name).log(level, "%s", text)


class _Forward(logging.Handler):
    """The child's log records, sent to the application's process to be logged there."""

    def __init__(self, channel: _Channel) -> None:
        super().__init__()
        self._channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._channel.send(("log", record.name, record.levelno, record.getMessage()))
        except Exception:  # the application's process is gone: nobody to tell
            pass


class _Channel:
    """The child's end of its pipe to the application's process (pool threads log too)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        self.send_body(marshal.dumps(message))

    def send_body(self, data: bytes) -> None:
        """A message already marshalled."""
        with self._lock:
            _write_body(self._fd, data)


def _child(control: int, channel: _Channel) -> int:
    from .opening import _open_settings, config_secrets
    from .plugins import Registry

    first = _read(control)
    if first is None:
        return 0
    _kind, settings_pickle, modules, entry_points, interval, level, held = first
    logging.basicConfig(level=level, handlers=[_Forward(channel)], force=True)
    settings: StateConfig = pickle.loads(settings_pickle)
    try:
        registry = Registry([importlib.import_module(name) for name in modules], entry_points)
        adapter: Adapter = _open_settings(settings, registry)[0]
    except StateError as exc:  # told to the application's process, which raises it
        channel.send(("error", exc.code, str(exc)))
        return 1
    except Exception as exc:
        detail = redact(f"{type(exc).__name__}: {exc}", config_secrets(settings.adapter_config))
        channel.send(("error", "OPEN_ERROR", detail))
        return 1
    _sweeper.alone = True
    channel.send(("ready", os.getpid()))
    try:
        if not held or _released(control):
            _sweep_until_stopped(adapter, control, channel, interval)
    finally:
        adapter.close()
    return 0


def _released(control: int) -> bool:
    """Wait for "go" (True) or for "stop" or the application's process ending (False)."""
    while True:
        message = _read(control)
        if message is None or message[0] == "stop":
            return False
        if message[0] == "go":
            return True


def _sweep_until_stopped(adapter: Adapter, control: int, channel: _Channel, interval: float) -> None:
    stopping = False

    def deliver(fresh: list[Expired]) -> None:
        nonlocal stopping
        if not fresh:
            return
        channel.send_body(_batch(fresh))
        while True:  # until the application's process has run the handlers
            message = _read(control)
            if message is None:
                raise _ParentGone
            if message[0] == "delivered":
                return
            stopping = stopping or message[0] == "stop"

    backoff = Backoff(interval, adapter.describe(), adapter.secrets())
    unacknowledged = Unacknowledged()
    while not stopping:
        if _readable(control, backoff.wait):
            message = _read(control)
            if message is None or message[0] == "stop":
                return
        try:
            sweep(adapter, deliver, unacknowledged, lambda: stopping)
        except _ParentGone:
            return
        except Exception as exc:
            backoff.failed(exc)
        else:
            backoff.succeeded()


def main(argv: list[str]) -> int:
    """``python -m iii_state_core.sweeper_process CONTROL_FD DATA_FD`` (started by the store)."""
    if len(argv) != 3:
        print("started by a store opened with 'expiry_sweeper: process', not by hand", file=sys.stderr)
        return 2
    return _child(int(argv[1]), _Channel(int(argv[2])))


if __name__ == "__main__":
    sys.exit(main(sys.argv))

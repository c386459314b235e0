"""One server process on a loopback port: start it, wait until it answers, stop it by its pid.

Every server binds to 127.0.0.1 on a free port, lives in its own temporary directory and is
stopped by its own pid (never ``pkill``, never ``redis-cli shutdown`` of anything else, never
``FLUSHALL``).  Servers still running when the interpreter exits are stopped then.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from .environment import ServerStartError
from .ports import LOOPBACK, free_port
from .resp import RespError

__all__ = ["ManagedServer", "ServerInfo"]


@dataclass(frozen=True)
class ServerInfo:
    """Connection facts of one started server process."""

    kind: str
    host: str
    port: int
    pid: int
    data_dir: Path
    log_file: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class _PortInUseError(Exception):
    pass


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is in the stopped state (``T`` in /proc)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        for task in tasks:
            with open(f"/proc/{pid}/task/{task}/stat", encoding="ascii", errors="replace") as stat:
                if stat.read().rpartition(")")[2].split()[0] not in ("T", "t"):
                    return False
    except OSError:
        return True  # no /proc (or the process is gone): nothing more to wait for
    return True


def _read_from(path: Path, offset: int = 0, limit: int = 4000) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


def _looks_like_port_in_use(log_text: str) -> bool:
    text = log_text.lower()
    return "address already in use" in text or "eaddrinuse" in text


InfoT = TypeVar("InfoT", bound=ServerInfo)

_live: dict[int, ManagedServer[Any]] = {}
_live_lock = threading.Lock()


def _stop_all_at_exit() -> None:
    with _live_lock:
        servers = list(_live.values())
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_stop_all_at_exit)


def _end_process(proc: subprocess.Popen[bytes], *, graceful: bool, timeout: float = 10.0) -> None:
    """Stop exactly this process (by its pid) and reap it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGCONT)  # in case it was paused
    if graceful:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait(timeout=timeout)


class ManagedServer(Generic[InfoT]):
    """One server process on a loopback port with its own temp directory.

    ``start()`` starts it (and, after ``kill()``/``terminate()``, starts it
    again on the same port and with the same directory); ``stop()`` ends it
    and removes the directory.  Usable as a context manager.
    """

    kind: ClassVar[str] = "server"
    poll_interval: ClassVar[float] = 0.05
    #: stop() sends SIGTERM first (else SIGKILL right away, for servers that keep nothing).
    graceful_stop: ClassVar[bool] = True

    def __init__(self, *, port: int | None = None, startup_timeout: float = 30.0) -> None:
        self._port = port
        self._startup_timeout = startup_timeout
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._info: InfoT | None = None
        self._program = ""
        self._lock = threading.RLock()

    # ---- hooks for subclasses ------------------------------------------------
    def _check_available(self) -> None:
        """Resolve binaries; raise ServerUnavailable when something is missing."""

    def _prepare(self, data_dir: Path) -> None:
        """Write config files etc. into the fresh data dir (first start only)."""

    def _command(self, port: int) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        return None

    def _probe(self, port: int, pid: int) -> bool:
        """True once the server (process ``pid``) answers on ``port``."""
        raise NotImplementedError

    def _choose_port(self) -> int:
        return free_port()

    def _make_info(self, port: int, pid: int, data_dir: Path, log_file: Path) -> InfoT:
        raise NotImplementedError

    # ---- public API ---------------------------------------------------------------
    @property
    def info(self) -> InfoT:
        if self._info is None:
            raise RuntimeError(f"{self.kind} server has not been started")
        return self._info

    @property
    def program(self) -> str:
        """The executable of the last start (empty before the first)."""
        return self._program

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        return self.info.port

    @property
    def pid(self) -> int:
        return self.info.pid

    @property
    def data_dir(self) -> Path:
        return self.info.data_dir

    @property
    def address(self) -> str:
        return self.info.address

    def start(self) -> InfoT:
        """Start (or start again after ``kill()``) and wait until it answers."""
        with self._lock:
            if self.running:
                return self.info
            self._check_available()
            first_start = self._dir is None
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix=f"iii-state-{self.kind}-"))
                with _live_lock:
                    _live[id(self)] = self
            try:
                if first_start:
                    self._prepare(self._dir)
                return self._start_process(self._dir)
            except BaseException:
                if first_start:
                    self.stop()
                raise

    def stop(self) -> None:
        """SIGTERM (then SIGKILL) this server's own pid and remove its temp dir."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                _end_process(proc, graceful=self.graceful_stop)
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
            with _live_lock:
                _live.pop(id(self), None)

    def kill(self) -> None:
        """SIGKILL the process (a crash); port and data dir are kept for ``start()``."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                _end_process(proc, graceful=False)

    def terminate(self) -> None:
        """SIGTERM the process and wait (clean shutdown); port and dir are kept."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                _end_process(proc, graceful=True)

    def restart(self, *, graceful: bool = False) -> InfoT:
        """Kill (SIGKILL, or SIGTERM if ``graceful``) and start again on the
        same port with the same data dir.  Returns the new info (new pid)."""
        with self._lock:
            if graceful:
                self.terminate()
            else:
                self.kill()
            return self.start()

    def pause(self) -> None:
        """SIGSTOP the process (it stops answering; connections stay open).

        Returns once every thread is stopped: a thread running on another core could
        otherwise still answer a request sent right after the signal.
        """
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not _all_threads_stopped(self._proc.pid):
            time.sleep(0.001)

    def resume(self) -> None:
        """SIGCONT a paused process."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> ManagedServer[InfoT]:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- internals --------------------------------------------------------------
    def _start_process(self, data_dir: Path) -> InfoT:
        deadline = time.monotonic() + self._startup_timeout
        fixed = self._port is not None
        attempts = 0
        while True:
            port = self._port if self._port is not None else self._choose_port()
            try:
                self._launch(port, data_dir, deadline)
            except ServerStartError as exc:
                if attempts and fixed:
                    raise ServerStartError(
                        f"{self.kind}: port {port} (or its cluster bus port) stayed in use by another process"
                    ) from exc
                raise
            except _PortInUseError:
                attempts += 1
                if fixed:
                    if time.monotonic() > deadline:
                        raise ServerStartError(
                            f"{self.kind}: port {port} (or its cluster bus port) stayed in use "
                            "by another process"
                        ) from None
                    time.sleep(0.2)
                elif attempts >= 5:
                    raise ServerStartError(f"{self.kind}: every port tried was in use") from None
                continue
            self._port = port
            return self.info

    def _launch(self, port: int, data_dir: Path, deadline: float) -> None:
        log_file = data_dir / "server.log"
        offset = log_file.stat().st_size if log_file.exists() else 0
        command = self._command(port)
        self._program = command[0]
        with log_file.open("ab") as log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=data_dir,
                env=self._env(),
                start_new_session=True,  # no terminal signals; we stop it by pid
            )
        self._proc = proc
        while True:
            code = proc.poll()
            if code is not None:
                self._proc = None
                text = _read_from(log_file, offset)
                if _looks_like_port_in_use(text):
                    raise _PortInUseError
                raise ServerStartError(
                    f"{self.kind} exited with code {code} while starting: "
                    f"{' '.join(command)}\n--- {log_file} ---\n{text}"
                )
            if time.monotonic() > deadline:
                self._proc = None
                _end_process(proc, graceful=False)
                raise ServerStartError(
                    f"{self.kind} did not answer on {LOOPBACK}:{port} within "
                    f"{self._startup_timeout:.0f}s: {' '.join(command)}\n"
                    f"--- {log_file} ---\n{_read_from(log_file, offset)}"
                )
            try:
                # The probe must be answered by OUR process: a server of someone
                # else that grabbed the port would answer too, so re-check our pid.
                if self._probe(port, proc.pid) and proc.poll() is None:
                    break
            except (OSError, ValueError, RespError, http.client.HTTPException):
                pass  # not listening / not ready yet
            time.sleep(self.poll_interval)
        self._info = self._make_info(port, proc.pid, data_dir, log_file)

"""Shared pieces of the iii-state worker tests: a worker serving on an :class:`EnginePeer`, test
adapters registered through a plugin object (never installed), and subprocess helpers."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine_peer import EnginePeer, PeerFunctionError
from iii_state_conformance import doubles

from iii_state_core import Adapter, Capabilities, Registry, hookimpl
from iii_state_core.adapter import Page, Token
from iii_state_core.worker import StateWorker, WorkerSettings
from iii_state_core.worker.functions import WORKER_FUNCTION_IDS

#: Every scenario finishes well inside this.
SCENARIO_TIMEOUT = 15.0
MEMORY: dict[str, Any] = {"adapter": {"name": "kv", "config": {"store_method": "in_memory"}}}
#: Fast reconnects and short budgets, so a lost connection costs the tests milliseconds.
FAST = WorkerSettings(
    telemetry=False,
    reconnect_initial_ms=50,
    reconnect_max_ms=200,
    drain_timeout=5.0,
    reaction_timeout=5.0,
)
SECRET = "hunter2-S3CRET-token"


def run(coro: Coroutine[Any, Any, None], timeout: float = SCENARIO_TIMEOUT) -> None:
    """Run one scenario on a fresh event loop, bounded by ``timeout``."""
    asyncio.run(asyncio.wait_for(coro, timeout))


async def run_until_it_stops(config: Any, engine_url: str) -> StateWorker:
    """Start a worker that must stop by itself (it refuses to serve), within 10 s; stop it anyway."""
    worker = StateWorker(config, replace(FAST, engine_url=engine_url))
    await worker.start()
    try:
        await asyncio.wait_for(worker.wait_stopped(), 10)
    finally:
        await worker.stop()
    return worker


def memory(**state: Any) -> dict[str, Any]:
    """:returns: a state block for the in-memory kv adapter plus ``state`` settings."""
    return {**MEMORY, **state}


@asynccontextmanager
async def serving(
    config: Any = None,
    *,
    registry: Registry | None = None,
    peer: EnginePeer | None = None,
    **settings: Any,
) -> AsyncIterator[tuple[EnginePeer, StateWorker]]:
    """A started :class:`StateWorker` whose functions and trigger type the peer has seen.

    The worker runs on the caller's loop, with the peer; it is stopped on exit.
    """
    async with EnginePeer(stamp_callers=True) if peer is None else _borrowed(peer) as engine:
        worker = StateWorker(
            MEMORY if config is None else config,
            replace(FAST, engine_url=engine.url, **settings),
            registry=registry,
        )
        await worker.start()
        try:
            # Every function the worker always registers, worker-only ones (on-changed,
            # claim-namespace) included: they come last, and a test may look for them at once.
            for function_id in WORKER_FUNCTION_IDS:
                await engine.wait_for_function(function_id)
            await engine.wait_for_trigger_type("state")
            yield engine, worker
        finally:
            await worker.stop()


@asynccontextmanager
async def _borrowed(peer: EnginePeer) -> AsyncIterator[EnginePeer]:
    yield peer


# -- the configuration worker ------------------------------------------------------------


class ConfigurationWorker:
    """The configuration worker's functions, over one dict of entries."""

    def __init__(self, peer: EnginePeer, stored: dict[str, Any] | None = None) -> None:
        self.entries: dict[str, Any] = dict(stored or {})
        peer.serve("configuration::ensure", self.ensure)
        peer.serve("configuration::get", self.get)

    def ensure(self, data: Any, _metadata: Any) -> Any:
        if self.entries.get(data["id"]) is None:  # installed only when nothing is stored
            self.entries[data["id"]] = data.get("initial_value")
        return {"ok": True}

    def get(self, data: Any, _metadata: Any) -> Any:
        if data["id"] not in self.entries:
            raise PeerFunctionError("NOT_FOUND", f"configuration {data['id']} not found")
        return {"id": data["id"], "value": self.entries[data["id"]]}


# -- test adapters ---------------------------------------------------------------------------


class FailingAdapter(doubles.FailingAdapter):
    """Every primitive fails the way a careless client library does: secret in the message."""

    def failure(self) -> BaseException:
        return ConnectionError(f"AUTH failed for redis://admin:{SECRET}@db:6379")

    def secrets(self) -> list[str]:
        return [SECRET]


class GatedAdapter(Adapter):
    """A dict in memory whose reads of scope ``gated`` wait until the test opens :attr:`gate`."""

    name = "gated"
    capabilities = Capabilities(shared=False, ordered_listing=True)
    gate = threading.Event()
    entered = threading.Event()
    closed = threading.Event()

    @classmethod
    def reset(cls) -> None:
        """Fresh events for a new test (they are class-wide: the core builds the instance)."""
        cls.gate, cls.entered, cls.closed = threading.Event(), threading.Event(), threading.Event()

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._data: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()
        if config.get("slow_open"):  # opening itself waits at the gate
            type(self).entered.set()
            if not type(self).gate.wait(10):
                raise TimeoutError("the test never opened the gate")

    def read(self, scope: str, key: str) -> bytes | None:
        if scope == "gated":
            type(self).entered.set()
            if not type(self).gate.wait(10):
                raise TimeoutError("the test never opened the gate")
        with self._lock:
            return self._data.get((scope, key))

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        with self._lock:
            old = self._data.get((scope, key))
            self._data[scope, key] = data
            return old

    def remove(self, scope: str, key: str) -> bytes | None:
        with self._lock:
            return self._data.pop((scope, key), None)

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        with self._lock:
            if self._data.get((scope, key)) != token:
                return False
            self._data[scope, key] = data
            return True

    def list_scopes(self) -> list[str]:
        with self._lock:
            return sorted({scope for scope, _ in self._data})

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        with self._lock:
            keys = sorted(k for s, k in self._data if s == scope and (cursor is None or k > cursor))
            page = [(k, self._data[scope, k]) for k in keys[:limit]]
        return page, (page[-1][0] if len(keys) > limit else None)

    def close(self) -> None:
        type(self).closed.set()


class WorkerTestPlugin:
    @hookimpl
    def iii_state_register_adapters(self, register: Callable[[type[Adapter]], None]) -> None:
        register(FailingAdapter)
        register(GatedAdapter)


def make_registry() -> Registry:
    """:returns: the installed plugins plus the test adapters ``failing`` and ``gated``."""
    GatedAdapter.reset()
    return Registry(extra_plugins=[WorkerTestPlugin()])


# -- subprocesses ----------------------------------------------------------------------------


def free_port() -> int:
    """:returns: a loopback port nothing listens on (closed again at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def iii_state_command() -> list[str]:
    """:returns: the argv of the installed ``iii-state`` console script."""
    script = Path(sys.executable).with_name("iii-state")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from iii_state_core.cli import main; main()"]


class WorkerProcess:
    """``iii-state worker …`` in a subprocess, its stderr collected by a thread."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            [*iii_state_command(), "worker", *args],
            cwd=cwd,
            env=dict(os.environ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    @property
    def log(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for_line(self, needle: str, count: int = 1, timeout: float = 10.0) -> list[str]:
        """Block until ``count`` stderr lines contain ``needle``. :returns: those lines."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if needle in line]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no {count}x {needle!r} in the worker's log:\n" + "\n".join(self.lines)
                    )
                self._changed.wait(min(left, 0.1))

    def finish(self, timeout: float = 10.0) -> int:
        """Wait for the exit. :returns: the exit code."""
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

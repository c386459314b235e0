"""Run a :class:`StateWorker` as a process: its own event loop, SIGTERM/SIGINT handling, exit code."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from .. import ConfigSource
from ..plugins import Registry
from .service import StateWorker
from .settings import WorkerSettings

log = logging.getLogger("iii_state.worker")

#: Threads for blocking adapter calls. asyncio's default (CPU count + 4) would cap a worker
#: on a small machine at a handful of concurrent calls to a networked store.
DEFAULT_THREADS = 32


def run_worker(
    config: ConfigSource = None,
    settings: WorkerSettings | None = None,
    *,
    registry: Registry | None = None,
    threads: int = DEFAULT_THREADS,
) -> int:
    """Serve until SIGTERM or SIGINT, then stop cleanly. Blocks; call it from the main thread.

    :param config: as for :class:`StateWorker`.
    :param settings: as for :class:`StateWorker`.
    :param registry: the plugin registry (default: installed plugins).
    :param threads: size of the thread pool that runs blocking adapter calls.
    :returns: the process exit code: ``0`` after a clean stop, ``1`` when the SDK gave up on the
        engine for good (e.g. another worker holds the same name in the namespace).
    :raises StateError: when the store cannot be opened.
    """
    return asyncio.run(_serve(config, settings, registry, threads))


async def _serve(
    config: ConfigSource, settings: WorkerSettings | None, registry: Registry | None, threads: int
) -> int:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=threads, thread_name_prefix="iii-state"))
    worker = StateWorker(config, settings, registry=registry)
    requested = asyncio.Event()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if requested.is_set():
            log.warning(
                "%s again: already stopping (each drain step waits at most %g s)",
                name, worker.settings.drain_timeout,
            )  # fmt: skip
            return
        log.info("%s received: stopping (finishing in-flight calls first)", name)
        requested.set()

    installed = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
    try:
        await worker.start()  # on failure it has released what it opened
        try:
            stopped = asyncio.ensure_future(worker.wait_stopped())
            wanted = asyncio.ensure_future(requested.wait())
            await asyncio.wait({stopped, wanted}, return_when=asyncio.FIRST_COMPLETED)
            for waiter in (stopped, wanted):
                waiter.cancel()
        finally:
            await worker.stop()  # a no-op wait when the worker stopped itself
        return worker.exit_code
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)

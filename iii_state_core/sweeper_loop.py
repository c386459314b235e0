"""The asyncio store's expiry sweeper process (``expiry_sweeper: process`` with
``open_async_store`` and the worker, decision 0030).

The child claims and acknowledges exactly as for the sync store (:mod:`.sweeper_process`); what
differs is where the handlers run. The sweeper task runs them on the store's event loop
(``emit_async``, a coroutine handler awaited there), so here too: the relay thread waits on the
child's pipe off the loop and hands each batch to the loop, then waits for its handlers to
finish before the child acknowledges. The loop is the one the store serves now (an async store
may serve one loop after another: ``asyncio.run`` twice); a batch that arrives while no loop
runs waits for the next.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Final

from .events import EventBus
from .results import StateEvent
from .sweeper_process import ProcessSweeper, SweeperSpec, Undelivered

#: How often a relay waiting on a loop checks that the loop still runs (and the store is open).
WAKE_S: Final = 0.2


class LoopDelivery:
    """Runs each batch's handlers on the event loop the async store serves (thread-safe)."""

    def __init__(self, events: EventBus) -> None:
        self._events = events
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = threading.Condition()
        self._closing = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def serve(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver on ``loop`` from now on."""
        with self._changed:
            self._loop = loop
            self._changed.notify_all()

    def close(self) -> None:
        """Deliver nothing not yet handed to a loop: the store is closing (see :meth:`__call__`)."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()

    def __call__(self, events: list[StateEvent]) -> None:
        """Run the handlers of a batch's ``events`` on the store's loop and return once they ran.

        :raises Undelivered: when the store closes first (the batch is left to its leases). A
            loop that stops before the handlers ran is left for the next one, which runs all
            of them (some may have run: a delivery again, with the same ``expiry_id``).
        """
        if not events:
            return
        while True:
            loop = self._running_loop()
            try:
                future = asyncio.run_coroutine_threadsafe(self._emit(events), loop)
            except RuntimeError:  # the loop closed since: wait for the next
                continue
            if self._finished(future, loop):
                return

    @staticmethod
    def _finished(future: concurrent.futures.Future[None], loop: asyncio.AbstractEventLoop) -> bool:
        while True:
            try:
                future.result(WAKE_S)
                return True
            except concurrent.futures.TimeoutError:
                if loop.is_running():
                    continue  # the handlers are still running
                future.cancel()  # its task never runs on a loop that runs again later
                return False
            except concurrent.futures.CancelledError:
                return False

    async def _emit(self, events: list[StateEvent]) -> None:
        emit = self._events.emit_async
        for event in events:
            await emit(event)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._changed:
            while True:
                if self._closing:
                    raise Undelivered
                loop = self._loop
                if loop is not None and loop.is_running():
                    return loop
                self._changed.wait(WAKE_S)


class LoopProcessSweeper:
    """The async store's sweeper with ``expiry_sweeper: process``: the same surface as
    :class:`~iii_state_core.sweeper.TaskSweeper` (``started``, ``start``, ``stop``).

    The child is started when the store opens (so opening fails if it cannot open the store) but
    claims nothing until :meth:`start` names the loop to deliver on (the worker holds its
    sweeper until it is connected to the engine).
    """

    def __init__(self, spec: SweeperSpec) -> None:
        self._delivery = LoopDelivery(spec.events)
        self._process = ProcessSweeper(spec, deliver=self._delivery, held=True)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def open(self) -> None:
        """Start the child and wait until it has opened the store (see ``ProcessSweeper.start``)."""
        self._process.start()

    @property
    def started(self) -> bool:
        """Delivering on the current loop (outside a loop: whether it delivers on any)."""
        loop = self._delivery.loop
        try:
            return loop is asyncio.get_running_loop()
        except RuntimeError:  # no loop running here
            return loop is not None

    def start(self) -> None:
        """Deliver on the running loop (call from inside it), and let the child claim."""
        self._delivery.serve(asyncio.get_running_loop())
        self._process.release()

    async def stop(self) -> None:
        """Let the batch being delivered finish (on this loop, if it is the store's) and end the
        child; a batch not yet handed to the loop is left to its leases."""
        self._delivery.close()
        await asyncio.to_thread(self._process.stop)

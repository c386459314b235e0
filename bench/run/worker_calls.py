"""What the worker benchmarks share: the calls they make, the fake engine, timing one round.

Imports ``engine_peer`` (``tests/worker``) and whichever ``iii_state_core`` comes first on
``sys.path``: ``bench/run/worker_script.py`` puts this tree's first, ``bench/run/worker_rounds.py``
is started by ``python -m bench.worker_ab`` with the revision under test first. Nothing here
changes ``sys.path``.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from engine_peer import EnginePeer

from bench.run.measuring import Measurement
from iii_state_core.wire import FUNCTIONS

T = TypeVar("T")
#: The store under every worker benchmark: in-memory kv, so the worker's own cost shows.
MEMORY = {"adapter": {"name": "kv", "config": {"store_method": "in_memory"}}}
OPS: dict[str, Callable[[int], dict[str, Any]]] = {
    "set": lambda i: {"scope": "bench", "key": f"k{i % 1000}", "value": {"n": i, "tags": ["a", "b"]}},
    "get": lambda i: {"scope": "bench", "key": f"k{i % 1000}"},
    "update": lambda i: {
        "scope": "bench",
        "key": "counter",
        "ops": [{"type": "increment", "path": "n", "by": 1}],
    },
}
#: What the fake engine announces: an iii 0.25 engine.
FEATURES = ("observe.v1",)
#: Calls in flight at once in the concurrent rows.
IN_FLIGHT = 200


class Loop:
    """An event loop on a thread of its own, for the peers and the worker."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def start_peer() -> EnginePeer:
    peer = EnginePeer(features=FEATURES)
    await peer.start()
    return peer


async def wait_registered(peer: EnginePeer) -> None:
    """Until every ``state::*`` function of the loaded core's table is registered on ``peer``."""
    for name in FUNCTIONS:
        await peer.wait_for_function(f"state::{name}")


def concurrent(runner: Loop, peer: EnginePeer, function_id: str, label: str, n: int = 2000) -> Measurement:
    """``n`` update calls, :data:`IN_FLIGHT` at a time."""

    async def go() -> list[float]:
        sem = asyncio.Semaphore(IN_FLIGHT)
        times: list[float] = []

        async def one(i: int) -> None:
            async with sem:
                t0 = time.perf_counter()
                await peer.call(function_id, OPS["update"](i), timeout=30)
                times.append(time.perf_counter() - t0)

        await asyncio.gather(*(one(i) for i in range(n)))
        return times

    started = time.perf_counter()
    times = sorted(runner.run(go()))
    total = time.perf_counter() - started
    return Measurement(label, n / total, statistics.median(times) * 1e6, times[int(n * 0.99)] * 1e6)


def caller(runner: Loop, peer: EnginePeer, function_id: str, op: str) -> Callable[[int], object]:
    """One blocking call through ``peer``: what :func:`bench.run.measuring.measure` times."""
    return lambda i: runner.run(peer.call(function_id, OPS[op](i)))


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker did not reach the expected state within {timeout:.0f} s")
        time.sleep(0.01)

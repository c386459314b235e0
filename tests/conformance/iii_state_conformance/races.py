"""Run store work in many threads of this process, released together by a barrier.

A data race in pure Python code shows only when the interpreter switches threads inside the
racy window, and a check-then-act in an adapter is a window of a few bytecodes: left to the
scheduler it is hit a few times in a hundred runs. So while racing threads run, the switch
interval is cut to a microsecond and every line executed in the *adapter's own* modules (its
class's packages, never the core or third-party clients) yields the interpreter to the other
threads (a ``sys.settrace`` hook). A missing lock around two lines of an adapter is then
crossed by another thread on every run. The cost is paid only in these tests.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import FrameType
from typing import Any

from iii_state_core import Adapter

#: Switch interval while racing threads run (seconds).
RACE_SWITCH_INTERVAL = 1e-6


@contextmanager
def tight_switching(interval: float = RACE_SWITCH_INTERVAL) -> Iterator[None]:
    """Make the interpreter switch threads as often as it can, then restore the interval."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def adapter_packages(adapter: Adapter) -> tuple[str, ...]:
    """The top-level packages of the adapter's class and its bases, but the core's."""
    found = {
        cls.__module__.split(".")[0]
        for cls in type(adapter).__mro__
        if cls.__module__.split(".")[0] not in ("iii_state_core", "builtins", "abc")
    }
    return tuple(sorted(found))


TraceFunction = Callable[[FrameType, str, Any], Any]


def interleaver(packages: tuple[str, ...]) -> TraceFunction | None:
    """A ``sys.settrace`` function that yields the interpreter at each line of ``packages``."""
    if not packages:
        return None
    prefixes = tuple(packages) + tuple(p + "." for p in packages)

    def each_line(frame: FrameType, event: str, arg: Any) -> TraceFunction:
        if event == "line":
            time.sleep(0)  # let another racing thread run here
        return each_line

    def each_call(frame: FrameType, event: str, arg: Any) -> TraceFunction | None:
        name = frame.f_globals.get("__name__", "")
        if name in packages or name.startswith(prefixes):
            return each_line
        return None

    return each_call


def interleaving_executor(packages: tuple[str, ...], workers: int = 16) -> ThreadPoolExecutor:
    """A thread pool whose threads interleave inside the adapter (for an event loop's default)."""
    trace = interleaver(packages)
    return ThreadPoolExecutor(
        workers, thread_name_prefix="iii-conf-async", initializer=sys.settrace, initargs=(trace,)
    )


def run_threads(
    target: Callable[..., Any],
    args_per_thread: list[tuple[Any, ...]],
    *,
    adapter: Adapter | None = None,
    timeout: float = 120.0,
) -> list[Any]:
    """Run ``target(barrier, *args)`` in one thread per args tuple; return results in order.

    Every thread waits on ``barrier`` before its racing part, so all start together. With
    ``adapter``, each thread yields at every line of the adapter's own code (see above).

    :raises AssertionError: with the thread's traceback when a thread fails or hangs.
    """
    barrier = threading.Barrier(len(args_per_thread))
    results: list[Any] = [None] * len(args_per_thread)
    errors: list[str] = []

    trace = interleaver(adapter_packages(adapter)) if adapter is not None else None

    def body(index: int, args: tuple[Any, ...]) -> None:
        if trace is not None:
            sys.settrace(trace)
        try:
            results[index] = target(barrier, *args)
        except BaseException:
            barrier.abort()  # the others must not wait for a thread that died
            errors.append(f"thread {index} failed:\n{traceback.format_exc()}")
        finally:
            sys.settrace(None)

    threads = [
        threading.Thread(target=body, args=(i, a), daemon=True, name=f"iii-conf-race-{i}")
        for i, a in enumerate(args_per_thread)
    ]
    with tight_switching():
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
    hung = [t.name for t in threads if t.is_alive()]
    assert not hung, f"threads still running after {timeout:.0f} s (a deadlock?): {hung}"
    real = [e for e in errors if "BrokenBarrierError" not in e.splitlines()[-1]]
    assert not (real or errors), (real or errors)[0]
    return results

"""Run store work in many threads of this process, released together by a barrier.

A data race in pure Python code shows only when the interpreter switches threads inside the
racy window. The default switch interval (5 ms) lets most windows pass unseen, so while the
threads run the interval is cut to a microsecond: threads then interleave every few bytecodes,
and a check-then-act without a lock is caught on every run instead of one in a hundred.
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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


def run_threads(
    target: Callable[..., Any], args_per_thread: list[tuple[Any, ...]], *, timeout: float = 120.0
) -> list[Any]:
    """Run ``target(barrier, *args)`` in one thread per args tuple; return results in order.

    Every thread waits on ``barrier`` before its racing part, so all start together.

    :raises AssertionError: with the thread's traceback when a thread fails or hangs.
    """
    barrier = threading.Barrier(len(args_per_thread))
    results: list[Any] = [None] * len(args_per_thread)
    errors: list[str] = []

    def body(index: int, args: tuple[Any, ...]) -> None:
        try:
            results[index] = target(barrier, *args)
        except BaseException:
            barrier.abort()  # the others must not wait for a thread that died
            errors.append(f"thread {index} failed:\n{traceback.format_exc()}")

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

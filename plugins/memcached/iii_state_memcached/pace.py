"""Short hand-overs of the GIL in the expiry sweeper's long loops.

The sweeper claims a chunk of up to 250 entries with a few pipelined requests, and between two
requests it runs Python over the whole chunk (a millisecond or more). An application thread whose
request completes meanwhile waits for the GIL until the sweeper's next request, or for CPython's
switch interval (5 ms): measured on this machine, a thread running 2 ms stretches of Python let
another thread make 160-470 memcached round trips a second instead of 6,800, and stretches of
0.05-0.1 ms let it make 4,600-6,500. So the sweeper's per-entry loops call :func:`breathe`, which
releases the GIL (``time.sleep(0)``) once at least ``SLICE_NS`` passed since the last release
(decision 0029; ``os.sched_yield()`` hands nothing over: the releasing thread takes the GIL
straight back).
"""

from __future__ import annotations

import time
from typing import Final

from iii_state_core import sweeper as _core_sweeper

#: The longest stretch of Python the sweeper runs without releasing the GIL, in nanoseconds.
SLICE_NS: Final = 50_000

_clock = time.perf_counter_ns
_sleep = time.sleep
#: When the GIL was last released here (shared by threads: a race only moves one release).
_last = [0]


def breathe() -> None:
    """Release the GIL for a moment if this process's sweeping ran ``SLICE_NS`` without doing so
    (not in a sweeper process of its own: nothing there waits for it)."""
    if _core_sweeper.alone:
        return
    now = _clock()
    if now - _last[0] >= SLICE_NS:
        _sleep(0)
        _last[0] = _clock()

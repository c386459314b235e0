"""How far the machine's CPUs were oversubscribed while a test waited, for timing bounds that
must allow for scheduling.

A bound such as "an expiry event comes within the declared delay plus a slack" holds on an idle
machine, but on a loaded one (a CI box running two suites on two cores, or several engineers'
test runs) every process — the sweepers, the test, a serialising test server — gets a fraction
of a core and the same work takes longer. Such a test samples the run queue while it waits and
stretches only its scheduling slack by the oversubscription it saw in that same window: on an
idle machine the factor is 1 and the bound is exactly as tight as it was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

#: How often :meth:`CpuLoad.sleep` samples the run queue.
SAMPLE_S = 0.05
#: The largest factor a bound is stretched by: past it the machine is too slow to say anything
#: and the bound holds as at this factor (a sweeper that never runs still fails).
MOST = 10.0


def runnable() -> int | None:
    """Tasks running or waiting for a CPU now (``procs_running`` of ``/proc/stat``, which counts
    this process too), or ``None`` where there is no such file."""
    try:
        with open("/proc/stat", "rb") as stat:
            for line in stat:
                if line.startswith(b"procs_running "):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class CpuLoad:
    """Samples of the run queue taken while a test waits."""

    def __init__(self) -> None:
        self._cpus = os.cpu_count() or 1
        self._samples: list[int] = []

    def sample(self) -> None:
        found = runnable()
        if found is not None:
            self._samples.append(found)

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, sampling the run queue every :data:`SAMPLE_S`."""
        ends = time.monotonic() + seconds
        while (left := ends - time.monotonic()) > 0:
            self.sample()
            time.sleep(min(SAMPLE_S, left))
        self.sample()

    def factor(self) -> float:
        """Runnable tasks per CPU, on average over the samples, at least 1 and at most
        :data:`MOST` (without samples: the one-minute load average per CPU)."""
        if self._samples:
            per_cpu = sum(self._samples) / len(self._samples) / self._cpus
        else:
            per_cpu = os.getloadavg()[0] / self._cpus
        return min(MOST, max(1.0, per_cpu))


def wait_until(condition: Callable[[], object], timeout: float) -> bool:
    """Poll ``condition`` every 10 ms until it holds (``True``) or ``timeout`` seconds passed
    (``False``): a test waiting for another thread or process returns as soon as it may."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True

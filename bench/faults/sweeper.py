"""A process the kv expiry campaign kills: it writes entries that expire, sweeps (expiry events
on), reads its own expired entries back, and logs everything.

``python -m bench.faults.kv_sweeper DIR LOG NAME`` opens the kv file store in ``DIR`` with
``expiry_events: true``, prints ``ready``, then forever writes ``NAME-<n>`` with a short TTL.
Log lines (appended, one ``os.write`` each, so a kill never leaves half a line that counts):

- ``B key`` before a write, ``W key deadline`` once it returned (``deadline``: the TTL added to
  the clock read after the write returned, so the entry's own deadline is not later);
- ``S`` before each ``take_expired``, ``T n`` after it returned ``n`` entries, ``D key value``
  per ``state:expired`` delivered (a sweep is complete once ``n`` ``D`` lines follow ``T n``);
- ``X key`` when a read returned an entry past the deadline its writer logged.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from typing import Any

SCOPE = "expiring"
MAX_TTL_MS = 150
#: Set by the campaign's self-test only: a sweeper that delivers each taken entry twice.
DOUBLE = os.environ.get("III_FAULTS_EXPIRY_DOUBLE") == "1"


def _config(directory: str, expiry_events: bool = True) -> dict[str, Any]:
    return {
        "adapter": {"name": "kv", "config": {"store_method": "file_based", "file_path": directory}},
        "expiry_events": expiry_events,
    }


def run(directory: str, log_path: str, name: str, writes: int | None = None) -> None:
    from iii_state_core import open_store
    from iii_state_core.expiry import now_ms

    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def note(line: str) -> None:
        os.write(log, (line + "\n").encode())

    store = open_store(_config(directory))
    take = store.adapter.take_expired

    def logged_take(limit: int) -> Any:
        note("S")
        taken = take(limit)
        if DOUBLE:
            taken = taken + taken
        note(f"T {len(taken)}")
        return taken

    store.adapter.take_expired = logged_take  # type: ignore[method-assign]
    store.on_change(
        lambda e: note(f"D {e.key} {json.dumps(e.old_value)}"),
        scope=SCOPE,
        condition=lambda e: e.event_type == "state:expired",
    )
    print("ready", flush=True)
    rng = random.Random()
    mine: list[tuple[str, int]] = []
    n = 0
    while writes is None or n < writes:
        key = f"{name}-{n}"
        ttl = rng.randint(5, MAX_TTL_MS)
        note(f"B {key}")
        store.set(SCOPE, key, key, ttl_ms=ttl)
        deadline = now_ms() + ttl
        note(f"W {key} {deadline}")
        mine.append((key, deadline))
        n += 1
        # read back one of this process's entries whose deadline has passed: it must be missing
        past = [k for k, at in mine[-50:] if at < now_ms()]
        if past:
            key = rng.choice(past)
            if store.get(SCOPE, key) is not None:
                note(f"X {key}")
        time.sleep(rng.uniform(0.0, 0.01))
    store.close()


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], sys.argv[3])

"""A process the expiry campaign kills: it writes entries that expire, sweeps (expiry events
on), reads its own expired entries back, and logs everything.

``python -m bench.faults.sweeper CONFIG LOG NAME`` opens the store described by ``CONFIG`` (a
state block as JSON, ``expiry_events: true``), prints ``ready``, then forever writes
``NAME-<n>`` with a short TTL. Log lines (appended, one ``os.write`` each, so a kill never
leaves half a line that counts):

- ``B key earliest`` before a write (``earliest``: the clock before the write plus the TTL, so
  the entry's own deadline is not earlier), ``W key deadline`` once it returned (``deadline``:
  the TTL added to the clock read after the write returned, so the entry's own deadline is not
  later), ``U key`` if it failed with an unknown outcome (it may be stored), ``F key`` if it
  failed with another error (not stored);
- ``S`` before each ``take_expired``, ``T n`` after it returned ``n`` entries, then ``C keys``
  naming them (space-separated), ``E at`` if it raised (at: the clock then; what it claimed
  before the error is lost with the reply, or, where claims are leases, claimed again later),
  ``D key expiry_id value`` per ``state:expired`` delivered (a sweep is complete once ``n``
  ``D`` lines follow ``T n``), ``A keys`` once ``ack_expired`` returned for those entries;
- ``X key`` when a read returned an entry past the deadline its writer logged;
- ``P pid`` once open, with ``expiry_sweeper: process``: its sweeper process (whose claims and
  acknowledgements are not logged: they are made there).
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


def kv_config(directory: str) -> dict[str, Any]:
    """The state block of a kv file store in ``directory``, expiry events on."""
    return {
        "adapter": {"name": "kv", "config": {"store_method": "file_based", "file_path": directory}},
        "expiry_events": True,
    }


def _open(config: dict[str, Any]) -> Any:
    """Open the store, retrying while a fault in the connection breaks the first requests."""
    from iii_state_core import StateError, open_store

    for attempt in range(20):
        try:
            return open_store(config)
        except StateError:
            if attempt == 19:
                raise
            time.sleep(0.25)
    raise AssertionError("unreachable")


def run(config: dict[str, Any], log_path: str, name: str, writes: int | None = None) -> None:
    from iii_state_core import StateError, UnknownOutcomeError
    from iii_state_core.expiry import now_ms

    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def note(line: str) -> None:
        os.write(log, (line + "\n").encode())

    store = _open(config)
    child = getattr(getattr(store, "_sweeper", None), "pid", None)
    if child is not None:
        note(f"P {child}")
    take = store.adapter.take_expired

    def logged_take(limit: int) -> Any:
        note("S")
        try:
            taken = take(limit)
        except Exception:
            note(f"E {now_ms()}")
            raise
        if DOUBLE:
            taken = taken + taken
        note(f"T {len(taken)}")
        if taken:
            note("C " + " ".join(entry[1] for entry in taken))
        return taken

    ack = store.adapter.ack_expired

    def logged_ack(taken: Any) -> None:
        ack(taken)
        note("A " + " ".join(entry[1] for entry in taken))

    store.adapter.take_expired = logged_take
    store.adapter.ack_expired = logged_ack
    store.on_change(
        lambda e: note(f"D {e.key} {e.expiry_id} {json.dumps(e.old_value)}"),
        scope=SCOPE,
        condition=lambda e: e.event_type == "state:expired",
    )
    print("ready", flush=True)
    rng = random.Random()
    mine: list[tuple[str, int]] = []
    n = 0
    while writes is None or n < writes:
        key = f"{name}-{n}"
        n += 1
        ttl = rng.randint(5, MAX_TTL_MS)
        note(f"B {key} {now_ms() + ttl}")
        try:
            store.set(SCOPE, key, key, ttl_ms=ttl)
        except UnknownOutcomeError:
            note(f"U {key}")
            time.sleep(0.02)
            continue
        except StateError:
            note(f"F {key}")
            time.sleep(0.02)
            continue
        deadline = now_ms() + ttl
        note(f"W {key} {deadline}")
        mine.append((key, deadline))
        # read back one of this process's entries whose deadline has passed: it must be missing
        past = [k for k, at in mine[-50:] if at < now_ms()]
        if past:
            key = rng.choice(past)
            try:
                if store.get(SCOPE, key) is not None:
                    note(f"X {key}")
            except StateError:
                pass
        time.sleep(rng.uniform(0.0, 0.01))
    store.close()


if __name__ == "__main__":
    run(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3])

"""What expiry events cost a kv file store under load: get/set throughput while 10,000 entries
expire each second, with ``expiry_events: true`` (the sweeper claims them and emits one
``state:expired`` each) against ``false`` (the store deletes them from its writes, no events).

``python -m bench.expiry [SECONDS] [ROUNDS]``: each round fills a fresh store with entries whose
deadlines are spread over the round at ``RATE`` per second (inserted straight into SQLite
before the clock starts), then one thread runs ``get``/``set`` on 1,000 other keys for
``SECONDS``; the two settings alternate so both see the same machine load. Prints the median
get/set rate of each, their ratio, and how many expiry events the sweeper delivered per second.
"""

from __future__ import annotations

import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from typing import Any

from iii_state_core import open_store
from iii_state_core.expiry import now_ms

RATE = 10_000
KEYS = 1_000


def _config(directory: str, events: bool) -> dict[str, Any]:
    return {
        "adapter": {"name": "kv", "config": {"store_method": "file_based", "file_path": directory}},
        "expiry_events": events,
    }


#: Milliseconds between filling the store and the first deadline: opening and loading fit in it.
LEAD_MS = 2_000


def _fill(directory: str, seconds: float) -> int:
    """Entries expiring at RATE per second for ``seconds``, from LEAD_MS on; :returns: the first
    deadline (epoch ms)."""
    with open_store(_config(directory, False)):
        pass  # creates the schema
    start, count = now_ms() + LEAD_MS, int(RATE * seconds)
    db = sqlite3.connect(f"{directory}/state.sqlite3")
    with db:
        db.executemany(
            "INSERT INTO entries (scope, key, value, expires) VALUES (?, ?, ?, ?)",
            ((b"expiring", f"e{n}".encode(), b'{"n":1}', start + n * 1000 // RATE) for n in range(count)),
        )
    db.close()
    return start


def one_round(seconds: float, events: bool) -> tuple[float, float]:
    """:returns: get/set operations per second, and expiry events delivered per second."""
    directory = tempfile.mkdtemp(prefix="iii-bench-expiry-")
    try:
        first = _fill(directory, seconds)
        delivered = 0

        def count(_event: Any) -> None:
            nonlocal delivered
            delivered += 1

        with open_store(_config(directory, events)) as store:
            store.on_change(count, scope="expiring")
            for n in range(KEYS):
                store.set("load", f"k{n}", n)
            time.sleep(max(0.0, (first - now_ms()) / 1000))  # the clock starts with the first expiries
            ops, started = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - started) < seconds:
                key = f"k{ops % KEYS}"
                if ops % 2:
                    store.set("load", key, ops)
                else:
                    store.get("load", key)
                ops += 1
            events_seen = delivered
        return ops / elapsed, events_seen / elapsed
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def measure(seconds: float = 3.0, rounds: int = 3) -> dict[str, float]:
    off: list[float] = []
    on: list[float] = []
    rates: list[float] = []
    for _ in range(rounds):
        off.append(one_round(seconds, False)[0])
        ops, delivered = one_round(seconds, True)
        on.append(ops)
        rates.append(delivered)
    return {
        "ops_off": statistics.median(off),
        "ops_on": statistics.median(on),
        "ratio": statistics.median(on) / statistics.median(off),
        "events_per_s": statistics.median(rates),
    }


def section(seconds: float, rounds: int) -> str:
    """The report section of ``python -m bench``."""
    found = measure(seconds, rounds)
    return "\n".join(
        [
            "## Expiry events under load",
            "",
            f"kv file store, one thread of `get`/`set` (alternating, 1,000 keys) while {RATE:,} entries "
            f"expire per second, median of {rounds} rounds of {seconds:g} s, the two settings alternating "
            "(`python -m bench.expiry` measures this alone). With `expiry_events: false` the store deletes "
            "expired rows from its writes, without events; with `true` the sweeper thread claims them "
            "and emits one `state:expired` each, to one counting handler, in the same process.",
            "",
            "| `expiry_events` | get/set per s | events delivered per s |",
            "|---|---:|---:|",
            f"| false | {found['ops_off']:,.0f} | - |",
            f"| true | {found['ops_on']:,.0f} | {found['events_per_s']:,.0f} |",
            f"| ratio | {found['ratio']:.2f}× | |",  # noqa: RUF001
        ]
    )


def main(argv: list[str]) -> None:
    seconds = float(argv[0]) if argv else 3.0
    rounds = int(argv[1]) if len(argv) > 1 else 3
    found = measure(seconds, rounds)
    print(
        f"kv file, one thread of get/set while {RATE:,} entries expire per second, median of {rounds} "
        f"rounds of {seconds:g} s, alternating:\n"
        f"  expiry_events: false  {found['ops_off']:,.0f} ops/s\n"
        f"  expiry_events: true   {found['ops_on']:,.0f} ops/s  ({found['ratio']:.2f}x; "
        f"{found['events_per_s']:,.0f} state:expired events/s delivered)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])

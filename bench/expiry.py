"""What expiry events cost a kv file store under load: get/set throughput while 10,000 entries
expire each second, with ``expiry_events: true`` (the sweeper claims them and emits one
``state:expired`` each) against ``false`` (the store deletes them from its writes, no events).

``python -m bench.expiry [SECONDS] [ROUNDS]``: each round fills a fresh store with entries whose
deadlines are spread over the round at ``RATE`` per second (inserted straight into SQLite
before the clock starts), then one thread runs ``get``/``set`` on 1,000 other keys for
``SECONDS``; the two settings alternate so both see the same machine load. Prints the median
get/set rate of each, their ratio, how many expiry events the sweeper delivered per second, and
the load average before and after (the machine may be shared). The sweeper runs in the same
process as the load (one GIL), which is the setting a single process with ``expiry_events: true``
has; a sweeping worker replica in its own process would take less from the load than this.
"""

from __future__ import annotations

import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from iii_state_kvfile.file_store import KvFileStore

from bench.run.machine import load
from iii_state_core import open_store
from iii_state_core.events import EventBus, Subscription
from iii_state_core.expiry import now_ms
from iii_state_core.sweeper import ThreadSweeper

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
            # sweep_at: when the store's sweep looks at the row (the store sets it to the deadline)
            "INSERT INTO entries (scope, key, value, expires, sweep_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            ((b"expiring", f"e{n}".encode(), b'{"n":1}', start + n * 1000 // RATE) for n in range(count)),
        )
    db.close()
    return start


class _Count:
    """A handler counting the events it gets (keeping none: 20,000 live events would make each
    garbage collection of the round walk them all)."""

    def __init__(self) -> None:
        self.events = 0

    def __call__(self, _event: Any) -> None:
        self.events += 1


#: Expired rows one :func:`sweep_alone` round sweeps.
ALONE_ROWS = 20_000


def sweep_alone(rounds: int = 5) -> float:
    """The sweeper's CPU per event with nothing else running: ``ALONE_ROWS`` expired rows (and
    1,000 live ones) swept by one ``ThreadSweeper.sweep()`` on this thread (claims, events to one
    counting handler, acknowledgements). :returns: the median µs of thread CPU per event. Less
    swayed by a shared machine than the load's rates: what the load loses is about this much
    sweeper time per event, at 10,000 events a second."""
    costs: list[float] = []
    for _ in range(rounds + 1):  # the first warms up, not counted
        directory = tempfile.mkdtemp(prefix="iii-bench-expiry-alone-")
        try:
            KvFileStore(directory).close()  # creates the schema
            deadline = now_ms() - 60_000
            db = sqlite3.connect(f"{directory}/state.sqlite3")
            with db:
                db.executemany(
                    "INSERT INTO entries (scope, key, value, expires, sweep_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                    ((b"expiring", f"e{n}".encode(), b'{"n":1}', deadline + n) for n in range(ALONE_ROWS)),
                )
                db.executemany(
                    "INSERT INTO entries (scope, key, value) VALUES (?, ?, ?)",
                    ((b"load", f"k{n}".encode(), b"1") for n in range(KEYS)),
                )
            db.close()
            adapter = KvFileStore(directory, expiry_events=True)
            bus = EventBus()
            seen = _Count()
            bus.subscribe(Subscription(seen, "expiring"))
            cpu = time.thread_time()
            swept = ThreadSweeper(adapter, bus, 1.0).sweep()  # never started: swept on this thread
            cpu = time.thread_time() - cpu
            adapter.close()
            if swept != ALONE_ROWS or seen.events != ALONE_ROWS:
                raise RuntimeError(f"swept {swept} and delivered {seen.events} of {ALONE_ROWS} expired rows")
            costs.append(cpu / ALONE_ROWS * 1e6)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    return statistics.median(costs[1:])


def _sweeper_cpu(store: Any) -> Callable[[], float]:
    """The CPU seconds the store's sweeper thread has used so far (0 without one)."""
    sweeper = getattr(store, "_sweeper", None)
    ident = getattr(getattr(sweeper, "_thread", None), "ident", None)
    if ident is None:
        return lambda: 0.0
    clock = time.pthread_getcpuclockid(ident)
    return lambda: time.clock_gettime(clock)


def one_round(seconds: float, events: bool) -> tuple[float, float, float, float]:
    """:returns: get/set operations per second, expiry events delivered per second, get/set
    operations per CPU-second of the load's thread (which waiting for the GIL or a core does not
    count: what the load itself pays per operation), and the sweeper thread's CPU seconds while
    the load ran (what the GIL shares out between the two)."""
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
            sweeper_cpu = _sweeper_cpu(store)
            swept_from = sweeper_cpu()
            ops, started, cpu = 0, time.perf_counter(), time.thread_time()
            while (elapsed := time.perf_counter() - started) < seconds:
                key = f"k{ops % KEYS}"
                if ops % 2:
                    store.set("load", key, ops)
                else:
                    store.get("load", key)
                ops += 1
            cpu = time.thread_time() - cpu
            events_seen = delivered
            swept = sweeper_cpu() - swept_from
        return ops / elapsed, events_seen / elapsed, ops / cpu, swept
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def measure(seconds: float = 3.0, rounds: int = 3) -> dict[str, Any]:
    """``rounds`` of each setting, alternating (false first); medians, ratio, per-round ratios."""
    load_before = load()
    off: list[float] = []
    on: list[float] = []
    rates: list[float] = []
    cpu_off: list[float] = []
    cpu_on: list[float] = []
    per_event: list[float] = []
    if rounds > 1:  # a real measurement (not the quick check of the report's shape)
        # one short round of each first, not counted: a process's first rounds pay for warming up
        # (lazy imports, the page cache), which would tilt whichever setting goes first
        one_round(min(1.0, seconds), False)
        one_round(min(1.0, seconds), True)
    for _ in range(rounds):
        ops, _, per_cpu, _ = one_round(seconds, False)
        off.append(ops)
        cpu_off.append(per_cpu)
        ops, delivered, per_cpu, swept = one_round(seconds, True)
        on.append(ops)
        rates.append(delivered)
        cpu_on.append(per_cpu)
        per_event.append(swept / max(1.0, delivered * seconds) * 1e6)
    return {
        "cpu_off": statistics.median(cpu_off),
        "cpu_on": statistics.median(cpu_on),
        "cpu_ratio": statistics.median(cpu_on) / statistics.median(cpu_off),
        "ops_off": statistics.median(off),
        "ops_on": statistics.median(on),
        "ratio": statistics.median(on) / statistics.median(off),
        "events_per_s": statistics.median(rates),
        "sweeper_us_per_event": statistics.median(per_event),
        "round_ratios": [b / a for a, b in zip(off, on, strict=True)],
        "sweep_alone_us": sweep_alone(max(1, rounds)),
        "load": f"{load_before} before, {load()} after",
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
            "and emits one `state:expired` each, to one counting handler. **The sweeper and the load "
            "share one process** (one GIL). Per-round ratios (true ÷ the false round before it): "
            + ", ".join(f"{r:.2f}" for r in found["round_ratios"])
            + f". Load average (1/5/15 min) {found['load']}.",
            "",
            "| `expiry_events` | get/set per s | events delivered per s | get/set per CPU-second of the "
            "load thread |",
            "|---|---:|---:|---:|",
            f"| false | {found['ops_off']:,.0f} | - | {found['cpu_off']:,.0f} |",
            f"| true | {found['ops_on']:,.0f} | {found['events_per_s']:,.0f} | {found['cpu_on']:,.0f} |",
            f"| ratio | {found['ratio']:.2f}× | | {found['cpu_ratio']:.2f}× |",  # noqa: RUF001
            "",
            "The first column is what the load gets in wall time, sharing the GIL and this machine's cores "
            "with the sweeper thread (and, on a shared machine, with every other process: a thread that "
            "holds the GIL while the OS runs something else stalls the other). The last column counts only "
            "the CPU time of the load's own thread, so it shows what expiry events add to each get/set "
            "itself, without the waiting. The sweeper thread used "
            f"{found['sweeper_us_per_event']:.1f} µs of CPU per event it delivered (claim, event, "
            "acknowledgement; SQLite's part of it runs without the GIL); sweeping 20,000 expired rows "
            f"alone, with no load, it used {found['sweep_alone_us']:.1f} µs per event "
            f"(median of {max(1, rounds)}).",
        ]
    )


def main(argv: list[str]) -> None:
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__.replace("``", "`"))
        return
    try:
        seconds = float(argv[0]) if argv else 3.0
        rounds = int(argv[1]) if len(argv) > 1 else 3
    except ValueError:
        sys.exit("usage: python -m bench.expiry [SECONDS] [ROUNDS] (SECONDS a number, ROUNDS a whole number)")
    found = measure(seconds, rounds)
    print(
        f"kv file, one thread of get/set while {RATE:,} entries expire per second, median of {rounds} "
        f"rounds of {seconds:g} s, alternating:\n"
        f"  expiry_events: false  {found['ops_off']:,.0f} ops/s\n"
        f"  expiry_events: true   {found['ops_on']:,.0f} ops/s  ({found['ratio']:.2f}x; "
        f"{found['events_per_s']:,.0f} state:expired events/s delivered)\n"
        f"  per CPU-second of the load thread: {found['cpu_off']:,.0f} vs {found['cpu_on']:,.0f} "
        f"({found['cpu_ratio']:.2f}x)\n"
        f"  sweeper thread CPU per event delivered: {found['sweeper_us_per_event']:.1f} us "
        "(claim, events, acknowledgement; part of it without the GIL)\n"
        f"  sweeper CPU per event sweeping {ALONE_ROWS:,} expired rows alone, no load: "
        f"{found['sweep_alone_us']:.1f} us\n"
        f"  sweeper and load in the same process; per-round ratios "
        + ", ".join(f"{r:.2f}" for r in found["round_ratios"])
        + f"\n  load average (1/5/15 min) {found['load']}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])

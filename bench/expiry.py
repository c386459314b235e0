"""What expiry events cost a get/set load, per adapter (issue 16's third bar: "the sweeper at
10,000 expiring entries per second adds <= 10 % to a concurrent get/set load").

``python -m bench.expiry [SECONDS] [ROUNDS] [ADAPTER ...] [--rate N | --rate ADAPTER=N ...]
[--sweeper thread|process]`` (defaults: 3 s, 3 rounds, ``kv``, ``thread``). ADAPTER is any of
``kv`` (the file store), ``kv-memory``, ``redis``, ``memcached``, ``dynamodb`` (on dynalite) and
``dynamodb-moto``; each server is started on a free loopback port by ``bench/run/targets.py`` and
stopped after its adapter's rounds.

What is measured, per adapter: one thread of the process runs ``get``/``set`` (alternating) on
1,000 load keys for SECONDS while entries of another scope expire at RATE per second; the same
process's store has ``expiry_events: true`` (its sweeper thread claims each expired entry and
emits one ``state:expired``, to one counting handler) or ``false`` (no sweeper: the store only
hides expired entries; the kv stores delete them from their writes). The two settings alternate,
round by round, so both see the same machine load; a round is: open a fresh store (kv: a new
directory; kv-memory: a new store; Redis: the database emptied after the round; memcached: a new
key prefix, the server flushed after the round; DynamoDB: a new table, deleted after the round),
write the 1,000 load keys, seed RATE x SECONDS expiring entries whose deadlines are spread evenly
over the round from a lead time on, wait for the first deadline, then run the load. The sweeper
and the load share one process (one GIL): the setting of one process with ``expiry_events: true``.
With ``--sweeper process`` the stores with expiry events have ``expiry_sweeper: process``
(decision 0030): a child process claims and acknowledges, and the load's process only builds and
delivers the events (on its sweeper thread); the sweeper CPU columns then add the child's CPU.

Seeding: the kv file store's entries are inserted straight into its SQLite file before the store
opens; every other adapter's go through the store's own ``state::batch`` (``set`` with a per-entry
``ttl_ms`` = the wanted deadline minus the clock read just before the batch, so the absolute
deadline lands where wanted, a few ms later at most), in batches of up to 1,000. Its lead time is
how long that filling takes (measured in each round; the next round's lead is 1.25x the slowest
fill so far + 0.5 s), so every entry is in place before the clock starts; a round whose filling
overran its lead is run again with a longer one.

RATE: 10,000 per second (the bar's) unless the adapter's sweeper cannot come near it: memcached's
default is 5,000/s (what one process's sweeper keeps up with beside the load, decisions 0027 and
0029: it hands the GIL to the load every 50 µs, so at 10,000/s it falls behind) and
DynamoDB's 100/s (see DEFAULT_RATES), and every report line then says
"10,000/s not reached". ``--rate N`` sets it for every adapter named, ``--rate ADAPTER=N`` for one.
A sweeper more than its adapter's declared delay + 0.5 s behind the deadlines when the load stops
is called out too ("N/s not reached: M/s delivered").

Columns / lines per adapter:
  false, true       load get/set operations per second (wall clock), median over the rounds
  ratio             true / false of those medians (the bar: >= 0.90); per-round ratios are each true
                    round over the false round before it
  events/s          state:expired events delivered to the handler per second of the load
  per CPU-second    load operations per CPU-second of the load's own thread, true / false: what the
                    sweeper adds to each get/set itself, without waiting for the GIL or a core
  sweeper CPU       CPU us per delivered event of the sweeper thread, and of every thread but the
                    load's (an adapter may claim on pool threads: DynamoDB's conditional deletes)
  server CPU        the server process's extra CPU us per delivered event (true round minus the
                    false round's CPU per load operation times the true round's operations)
  alone             the sweeper's CPU us per event and events per second sweeping a backlog of
                    already-expired entries on the main thread with nothing else running (the
                    sweeper's own capacity; 20,000 entries, or 2 x RATE when that is fewer, then
                    as many as the first sweep took in 5 s when that is fewer still)
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from iii_state_kvfile.file_store import KvFileStore

from bench.run.machine import load, process_cpu_s
from bench.run.targets import TARGETS, Session
from iii_state_core import StateStore, open_store
from iii_state_core.events import EventBus, Subscription
from iii_state_core.expiry import now_ms
from iii_state_core.sweeper import BATCH, ThreadSweeper
from iii_state_core.sweeper_process import ProcessSweeper

#: The bar's rate: expiring entries per second.
RATE: Final = 10_000
KEYS: Final = 1_000
#: Adapters this bench measures, with the ``bench/run/targets.py`` target that serves each.
ADAPTERS: Final = ("kv", "kv-memory", "redis", "memcached", "dynamodb", "dynamodb-moto")
#: Seeded rates where 10,000/s is out of reach. memcached's sweeper claims a slot's candidates
#: in pipelined chunks (decisions 0027, 0029): 9,700-10,700 a second alone; beside the load it
#: releases the GIL every 50 µs and delivers 3,500-4,700 a second (at full speed it kept up with
#: 10,000 but left the load a quarter of its speed).
#: Each DynamoDB expiry is a BatchGetItem share, a stash PutItem, a DeleteItem and a share of an
#: acknowledging BatchWriteItem (sweep.py), which dynalite (one Node process) serves at 750-1,000
#: events per second alone on this machine and under 200 beside the load.
#: Measured, not guessed: see docs/PERFORMANCE.md.
DEFAULT_RATES: Final = {"memcached": 5_000, "dynamodb": 100, "dynamodb-moto": 100}
#: The same with ``--sweeper process``: memcached's sweeper process keeps near 10,000 a second
#: (it need not hand the GIL over); DynamoDB's test servers stay the limit.
PROCESS_RATES: Final = {"dynamodb": 100, "dynamodb-moto": 100}
#: The scope of the entries that expire (the load never reads it) and of the load's keys.
EXPIRING: Final = "expiring"
LOAD: Final = "load"
VALUE: Final = {"n": 1}

#: Milliseconds between filling the kv file store and the first deadline: opening and loading fit in it.
LEAD_MS = 2_000
#: The shortest lead of the other adapters (the load keys and the store's first poll fit in it).
MIN_LEAD_MS: Final = 500
#: Tries of one round whose filling overran its lead (each with a longer lead).
FILL_TRIES: Final = 3


def _config(directory: str, events: bool) -> dict[str, Any]:
    return {
        "adapter": {"name": "kv", "config": {"store_method": "file_based", "file_path": directory}},
        "expiry_events": events,
    }


def _fill(directory: str, seconds: float, rate: int = RATE, lead_ms: int = LEAD_MS) -> int:
    """Entries expiring at ``rate`` per second for ``seconds``, from ``lead_ms`` on; :returns: the
    first deadline (epoch ms)."""
    with open_store(_config(directory, False)):
        pass  # creates the schema
    start, count = now_ms() + lead_ms, int(rate * seconds)
    db = sqlite3.connect(f"{directory}/state.sqlite3")
    with db:
        db.executemany(
            # sweep_at: when the store's sweep looks at the row (the store sets it to the deadline)
            "INSERT INTO entries (scope, key, value, expires, sweep_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            (
                (EXPIRING.encode(), f"e{n}".encode(), b'{"n":1}', start + n * 1000 // rate)
                for n in range(count)
            ),
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
    """The kv file sweeper's CPU per event with nothing else running: ``ALONE_ROWS`` expired rows
    (and 1,000 live ones) swept by one ``ThreadSweeper.sweep()`` on this thread (claims, events to
    one counting handler, acknowledgements). :returns: the median µs of thread CPU per event. Less
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
                    (
                        (EXPIRING.encode(), f"e{n}".encode(), b'{"n":1}', deadline + n)
                        for n in range(ALONE_ROWS)
                    ),
                )
                db.executemany(
                    "INSERT INTO entries (scope, key, value) VALUES (?, ?, ?)",
                    ((LOAD.encode(), f"k{n}".encode(), b"1") for n in range(KEYS)),
                )
            db.close()
            adapter = KvFileStore(directory, expiry_events=True)
            bus = EventBus()
            seen = _Count()
            bus.subscribe(Subscription(seen, EXPIRING))
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
    """The CPU seconds the store's sweeper thread has used so far (0 without one), plus its
    sweeper process's (``expiry_sweeper: process``; one restarted counts from its start)."""
    sweeper = getattr(store, "_sweeper", None)
    ident = getattr(getattr(sweeper, "_thread", None), "ident", None)
    if ident is None:
        return lambda: 0.0
    clock = time.pthread_getcpuclockid(ident)
    if not isinstance(sweeper, ProcessSweeper):
        return lambda: time.clock_gettime(clock)
    return lambda: time.clock_gettime(clock) + (process_cpu_s(sweeper.pid) or 0.0)


class FillOverran(RuntimeError):
    """Filling took longer than the round's lead: some entries' deadlines passed before the load."""

    def __init__(self, message: str, done: float = 1.0) -> None:
        super().__init__(message)
        #: the share of the entries written when it was found
        self.done = done


@dataclass
class Round:
    """One round of one setting."""

    ops_per_s: float
    events_per_s: float
    #: load operations per CPU-second of the load's thread
    ops_per_cpu_s: float
    #: CPU seconds during the load: the sweeper thread's, every thread's but the load's, and the
    #: server process's (``None``: no server of ours)
    sweeper_cpu_s: float
    others_cpu_s: float
    server_cpu_s: float | None
    ops: int
    events: int
    #: seconds the load keys and the expiring entries took to write, and their lead time
    fill_s: float
    lead_ms: int
    #: how far delivery was behind the deadlines when the load stopped: seconds of expiries due
    #: and not delivered yet (about the poll interval when the sweeper keeps up)
    lag_s: float = 0.0
    #: the whole round's wall time: opening, filling, waiting, the load, closing, cleaning
    wall_s: float = 0.0


class Bench:
    """One adapter's rounds, on the session ``bench/run/targets.py`` opened (its server)."""

    def __init__(self, name: str, session: Session, rate: int, sweeper: str = "thread") -> None:
        self.name = name
        #: ``expiry_sweeper`` of the rounds with expiry events
        self.sweeper = sweeper
        self.session = session
        self.rate = rate
        #: the slowest filling so far (s): the next round's lead follows it
        self.fill_s = 0.0
        #: the slowest filling so far per entry written (s): what :meth:`sweep_alone` waits for
        self.entry_s = 0.0
        self._dirs: list[str] = []

    # -- per-adapter parts ---------------------------------------------------------------------------
    def _state(self, events: bool, tag: str, *, alone: bool = False) -> dict[str, Any]:
        """The state block of a fresh store for one round (tag: the round's own name; alone: for
        :meth:`sweep_alone`, which sweeps on its own thread)."""
        config = dict(self.session.adapter_config)
        if self.name == "kv":
            directory = tempfile.mkdtemp(prefix="iii-bench-expiry-")
            self._dirs.append(directory)
            config = {"store_method": "file_based", "file_path": directory}
        elif self.name == "memcached":
            config["key_prefix"] = f"x{tag}:"  # the index and schedule of this round alone
        elif self.name.startswith("dynamodb"):
            config.update(table_name=f"iii-bench-x{tag}", create_table=True)
        state = {"adapter": {"name": self.session.adapter, "config": config}, "expiry_events": events}
        if events and not alone and self.sweeper != "thread":
            state["expiry_sweeper"] = self.sweeper
        return state

    def _clean(self, state: dict[str, Any]) -> None:
        """Leave nothing of a round for the next one's sweeper to find (or the server to carry)."""
        config = state["adapter"]["config"]
        raw: Any = self.session.raw
        if self.name == "kv":
            shutil.rmtree(config["file_path"], ignore_errors=True)
        elif self.name == "redis":
            raw.client.flushdb()
        elif self.name == "memcached":
            raw.client.flush_all()
            # memcached's flush_all drops items stored up to the current second, not just before
            # it: the next round's writes wait for the second to turn
            time.sleep(1.05)
        elif self.name.startswith("dynamodb"):
            raw.client.delete_table(TableName=config["table_name"])

    def _lead_ms(self) -> int:
        return max(MIN_LEAD_MS, int(1.25 * self.fill_s * 1000) + 500)

    def _seed(self, store: StateStore, first: int, count: int) -> None:
        """``count`` entries whose deadlines are spread from ``first`` at ``rate`` per second,
        through the store's own ``state::batch`` (``ttl_ms`` per entry)."""
        chunk = min(1000, int(store.capabilities.max_batch_ops))
        for at in range(0, count, chunk):
            now = now_ms()
            if first + at * 1000 // self.rate - now < 1:
                raise FillOverran(f"entry e{at} would be written after its deadline", at / count)
            ops: list[dict[str, Any]] = [
                {"op": "set", "scope": EXPIRING, "key": f"e{n}", "value": VALUE,
                 "ttl_ms": first + n * 1000 // self.rate - now}
                for n in range(at, min(count, at + chunk))
            ]  # fmt: skip
            for item in store.batch(ops):
                if not item.ok:
                    raise RuntimeError(f"seeding {self.name}: {item.error}")

    @contextlib.contextmanager
    def _filled(self, seconds: float, events: bool) -> Iterator[tuple[StateStore, int, float, int]]:
        """A fresh store of the setting, its load keys and expiring entries written: ``(store,
        first deadline, seconds the filling took, lead ms)``; cleaned up after."""
        count = int(self.rate * seconds)
        for attempt in range(1, FILL_TRIES + 1):
            state = self._state(events, secrets.token_hex(4))
            lead = LEAD_MS * attempt if self.name == "kv" else self._lead_ms()
            started = time.perf_counter()
            try:
                if self.name == "kv":
                    first = _fill(state["adapter"]["config"]["file_path"], seconds, self.rate, lead)
                    store = open_store(state)
                else:
                    store = open_store(state)
                    first = now_ms() + lead
                try:
                    store.set_many(LOAD, {f"k{n}": n for n in range(KEYS)})
                    if self.name != "kv":
                        self._seed(store, first, count)
                    filled = time.perf_counter() - started
                    self.fill_s = max(self.fill_s, filled)
                    self.entry_s = max(self.entry_s, filled / (count + KEYS))
                    if now_ms() >= first:
                        raise FillOverran(f"filling took {filled:.2f} s, its lead time was {lead / 1000:g} s")
                    yield store, first, filled, lead
                    return
                finally:
                    store.close()
            except FillOverran as exc:
                # the whole filling, at the pace it went: the next try's lead follows it (the load
                # keys, written first, count as done: an overrun found at the first expiring entry
                # once made a 0.8 s filling look like 16 s, and every later round waited for that)
                done = (KEYS + exc.done * count) / (KEYS + count)
                needed = (time.perf_counter() - started) / done
                self.fill_s = max(self.fill_s, needed)
                self.entry_s = max(self.entry_s, needed / (count + KEYS))
                if attempt == FILL_TRIES:
                    raise RuntimeError(f"{self.name}: {exc} ({FILL_TRIES} tries)") from exc
            finally:
                self._clean(state)

    def one_round(self, seconds: float, events: bool) -> Round:
        delivered = _Count()
        began = time.perf_counter()
        with self._filled(seconds, events) as (store, first, filled, lead):
            store.on_change(delivered, scope=EXPIRING)
            time.sleep(max(0.0, (first - now_ms()) / 1000))  # the clock starts with the first expiries
            sweeper_cpu = _sweeper_cpu(store)
            pid = self.session.server_pid
            swept_from, server_from, seen_from = sweeper_cpu(), process_cpu_s(pid), delivered.events
            ops, started = 0, time.perf_counter()
            cpu, process = time.thread_time(), time.process_time()
            while (elapsed := time.perf_counter() - started) < seconds:
                key = f"k{ops % KEYS}"
                if ops % 2:
                    store.set(LOAD, key, ops)
                else:
                    store.get(LOAD, key)
                ops += 1
            cpu = time.thread_time() - cpu
            others = time.process_time() - process - cpu
            events_seen = delivered.events - seen_from
            due = min(int(self.rate * seconds), (now_ms() - first) * self.rate // 1000)
            lag = (due - delivered.events) / self.rate
            swept = sweeper_cpu() - swept_from
            server_to = process_cpu_s(pid)
        server = None if server_from is None or server_to is None else server_to - server_from
        return Round(ops / elapsed, events_seen / elapsed, ops / cpu, swept, others, server, ops,
                     events_seen, filled, lead, lag, time.perf_counter() - began)  # fmt: skip

    def sweep_alone(self, rounds: int) -> tuple[float, float]:
        """The sweeper's own cost: a backlog of expired entries swept by one ``ThreadSweeper.sweep()``
        on this thread, nothing else running. :returns: median CPU µs per event (every thread of
        the process) and median events per second (wall)."""
        if self.name == "kv":
            return sweep_alone(rounds), 0.0
        rows = min(ALONE_ROWS, 2 * self.rate)
        costs: list[float] = []
        speeds: list[float] = []
        tries = 0
        while len(costs) <= rounds:  # the first warms up, not counted
            state = self._state(True, secrets.token_hex(4), alone=True)
            try:
                with open_store(state) as store:
                    sweeper: Any = store._sweeper
                    sweeper.stop()  # before its first poll: this function sweeps, on this thread
                    store.adapter.take_expired(BATCH)  # a process's first take may scan (DynamoDB)
                    # every entry written before the first deadline, at the rounds' pace of filling
                    first = now_ms() + max(MIN_LEAD_MS, int(1500 * self.entry_s * rows) + 300)
                    started = time.perf_counter()
                    try:
                        self._seed_fast(store, first, rows)
                    except FillOverran as exc:
                        tries += 1
                        if tries >= FILL_TRIES:
                            raise
                        needed = (time.perf_counter() - started) / max(0.05, exc.done)
                        self.entry_s = max(self.entry_s, needed / rows)
                        continue
                    time.sleep(max(0.0, (first + rows // 10 - now_ms()) / 1000 + 0.1))
                    bus = EventBus()
                    seen = _Count()
                    bus.subscribe(Subscription(seen, EXPIRING))
                    cpu, wall = time.process_time(), time.perf_counter()
                    swept = 0
                    sweeping = ThreadSweeper(store.adapter, bus, 1.0)  # never started
                    while swept < rows and time.perf_counter() - wall < 60:
                        # an eventually consistent index (DynamoDB) may list the last few a poll later
                        swept += sweeping.sweep()
                    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                if swept != rows or seen.events != rows:
                    raise RuntimeError(f"{self.name}: swept {swept} and delivered {seen.events} of {rows}")
                costs.append(cpu / rows * 1e6)
                speeds.append(rows / wall)
                # the next ones sweep what this sweeper takes in about 5 s (DynamoDB's claims
                # one entry at a time, a few hundred a second): the median, not the run's length, matters
                rows = max(500, min(rows, int(speeds[0] * 5)))
            finally:
                self._clean(state)
        return statistics.median(costs[1:]), statistics.median(speeds[1:])

    def _seed_fast(self, store: StateStore, first: int, count: int) -> None:
        """``count`` entries due 10 per ms from ``first`` (for :meth:`sweep_alone`)."""
        rate = self.rate
        try:
            self.rate = 10_000
            self._seed(store, first, count)
        finally:
            self.rate = rate


@dataclass
class Found:
    """One adapter's measurement."""

    name: str
    title: str
    rate: int
    seconds: float
    off: list[Round] = field(default_factory=list)
    on: list[Round] = field(default_factory=list)
    alone_us: float = 0.0
    alone_per_s: float = 0.0
    load: str = ""
    #: the adapter's declared expiry-event delay (s): a sweeper keeping up lags about half of it
    delay_s: float = 1.0
    #: ``expiry_sweeper``: where the sweeper claims (its thread, or a process of its own)
    sweeper: str = "thread"

    @property
    def label(self) -> str:
        """The adapter's name, and where its sweeper ran when not in a thread."""
        return self.name if self.sweeper == "thread" else f"{self.name} ({self.sweeper})"

    @staticmethod
    def _median(rounds: list[Round], what: Callable[[Round], float]) -> float:
        return statistics.median(what(r) for r in rounds)

    @property
    def ops_off(self) -> float:
        return self._median(self.off, lambda r: r.ops_per_s)

    @property
    def ops_on(self) -> float:
        return self._median(self.on, lambda r: r.ops_per_s)

    @property
    def ratio(self) -> float:
        return self.ops_on / self.ops_off

    @property
    def round_ratios(self) -> list[float]:
        return [b.ops_per_s / a.ops_per_s for a, b in zip(self.off, self.on, strict=True)]

    @property
    def cpu_off(self) -> float:
        return self._median(self.off, lambda r: r.ops_per_cpu_s)

    @property
    def cpu_on(self) -> float:
        return self._median(self.on, lambda r: r.ops_per_cpu_s)

    @property
    def cpu_ratio(self) -> float:
        return self.cpu_on / self.cpu_off

    @property
    def events_per_s(self) -> float:
        return self._median(self.on, lambda r: r.events_per_s)

    @property
    def sweeper_us(self) -> float:
        """The sweeper thread's CPU µs per delivered event."""
        return self._median(self.on, lambda r: r.sweeper_cpu_s / max(1, r.events) * 1e6)

    @property
    def others_us(self) -> float:
        """CPU µs per delivered event of every thread but the load's (beyond the false rounds')."""
        idle = self._median(self.off, lambda r: r.others_cpu_s / r.ops)  # per load op, no sweeper
        return self._median(self.on, lambda r: (r.others_cpu_s - idle * r.ops) / max(1, r.events) * 1e6)

    @property
    def server_us(self) -> float | None:
        """The server's extra CPU µs per delivered event."""
        if any(r.server_cpu_s is None for r in self.off + self.on):
            return None
        per_op = self._median(self.off, lambda r: (r.server_cpu_s or 0.0) / r.ops)
        return self._median(
            self.on, lambda r: ((r.server_cpu_s or 0.0) - per_op * r.ops) / max(1, r.events) * 1e6
        )

    @property
    def lag_s(self) -> float:
        return self._median(self.on, lambda r: r.lag_s)

    @property
    def fill_s(self) -> float:
        return max(r.fill_s for r in self.off + self.on)

    @property
    def short(self) -> list[str]:
        """What keeps this run from being the bar's setting, said plainly (empty: nothing)."""
        notes = []
        if self.rate < RATE:
            notes.append(f"{RATE:,}/s not reached: seeded at {self.rate:,}/s")
        if self.lag_s > self.delay_s + 0.5:
            notes.append(
                f"{self.rate:,}/s not reached: {self.events_per_s:,.0f}/s delivered, the sweeper "
                f"{self.lag_s:.1f} s behind the deadlines when the load stopped "
                f"(declared delay {self.delay_s:g} s)"
            )
        return notes


def measure(
    seconds: float = 3.0,
    rounds: int = 3,
    name: str = "kv",
    rate: int | None = None,
    progress: Callable[[str], None] | None = None,
    sweeper: str = "thread",
) -> Found:
    """``rounds`` of each setting, alternating (false first), on one adapter's own server."""
    target = TARGETS[name]
    rate = rate or (PROCESS_RATES if sweeper == "process" else DEFAULT_RATES).get(name, RATE)
    found = Found(name, target.title.split(" vs ")[0], rate, seconds, sweeper=sweeper)
    load_before = load()
    with target.open() as session:
        bench = Bench(name, session, found.rate, sweeper)
        found.delay_s = (session.store.capabilities.expiry_event_delay_ms or 1000) / 1000
        if rounds > 1:  # a real measurement (not the quick check of the report's shape)
            # one short round of each first, not counted: a process's first rounds pay for warming
            # up (lazy imports, the page cache, the server's), which would tilt whichever goes first
            bench.one_round(min(1.0, seconds), False)
            bench.one_round(min(1.0, seconds), True)
        for n in range(rounds):
            found.off.append(bench.one_round(seconds, False))
            found.on.append(bench.one_round(seconds, True))
            if progress is not None:
                off, on = found.off[-1], found.on[-1]
                progress(
                    f"  {name} round {n + 1}: false {off.ops_per_s:,.0f} ops/s, true {on.ops_per_s:,.0f} "
                    f"ops/s ({on.ops_per_s / off.ops_per_s:.2f}x), {on.events_per_s:,.0f} events/s, "
                    f"{on.lag_s:.2f} s behind; filled in {off.fill_s:.2f}/{on.fill_s:.2f} s, "
                    f"rounds took {off.wall_s:.1f}/{on.wall_s:.1f} s"
                )
        found.alone_us, found.alone_per_s = bench.sweep_alone(max(1, rounds))
    found.load = f"{load_before} before, {load()} after"
    return found


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(found: Found, rounds: int) -> str:
    """The plain-text lines of one adapter."""
    alone = f"{found.alone_us:.1f} us per event"
    if found.alone_per_s:
        alone += f", {found.alone_per_s:,.0f} events/s"
    lines = [
        f"{found.title}: one thread of get/set while {found.rate:,} entries expire per second, "
        f"median of {rounds} rounds of {found.seconds:g} s, alternating"
        + (":" if found.sweeper == "thread" else f", expiry_sweeper: {found.sweeper}:"),
        f"  expiry_events: false  {found.ops_off:,.0f} ops/s",
        f"  expiry_events: true   {found.ops_on:,.0f} ops/s  ({found.ratio:.2f}x; "
        f"{found.events_per_s:,.0f} state:expired events/s delivered)",
        f"  per CPU-second of the load thread: {found.cpu_off:,.0f} vs {found.cpu_on:,.0f} "
        f"({found.cpu_ratio:.2f}x)",
        f"  sweeper CPU per event delivered: {found.sweeper_us:.1f} us its thread"
        + (" and process" if found.sweeper == "process" else "")
        + ", "
        f"{found.others_us:.1f} us every thread but the load's; "
        f"server CPU per event: {_us(found.server_us)} us",
        f"  sweeping a backlog alone, no load: {alone}",
        f"  delivery behind the deadlines when the load stopped: {found.lag_s:.2f} s (median; the "
        f"adapter declares a delay of {found.delay_s:g} s, its sweeper polls every {found.delay_s / 2:g} s)",
        f"  filling (load keys + {int(found.rate * found.seconds):,} expiring entries) took up to "
        f"{found.fill_s:.2f} s; per-round ratios " + ", ".join(f"{r:.2f}" for r in found.round_ratios),
        f"  load average (1/5/15 min) {found.load}",
    ]
    lines += [f"  ** {note}" for note in found.short]
    return "\n".join(lines)


def summary(all_found: list[Found]) -> str:
    """A markdown table of every adapter measured."""
    lines = [
        "| adapter | rate seeded /s | false ops/s | true ops/s | ratio | per-round ratios | events/s "
        "| per CPU-s ratio | sweeper µs/event (thread / all) | server µs/event | alone µs/event | note |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|---:|---|---|",
    ]
    for f in all_found:
        alone = f"{f.alone_us:.1f}" + (f" ({f.alone_per_s:,.0f}/s)" if f.alone_per_s else "")
        lines.append(
            f"| {f.label} | {f.rate:,} | {f.ops_off:,.0f} | {f.ops_on:,.0f} | {f.ratio:.2f}× | "  # noqa: RUF001
            + ", ".join(f"{r:.2f}" for r in f.round_ratios)
            + f" | {f.events_per_s:,.0f} | {f.cpu_ratio:.2f}× | {f.sweeper_us:.1f} / {f.others_us:.1f} | "  # noqa: RUF001
            f"{_us(f.server_us)} | {alone} | {'; '.join(f.short) or '-'} |"
        )
    return "\n".join(lines)


def section(seconds: float, rounds: int, adapters: tuple[str, ...] = ("kv",)) -> str:
    """The report section of ``python -m bench`` (the kv file store unless told otherwise)."""
    parts = ["## Expiry events under load", ""]
    for name in adapters:
        found = measure(seconds, rounds, name)
        parts += [
            f"{found.title}, one thread of `get`/`set` (alternating, 1,000 keys) while {found.rate:,} "
            f"entries expire per second, median of {rounds} rounds of {seconds:g} s, the two "
            "settings alternating (`python -m bench.expiry` measures this alone, per adapter). "
            "With `expiry_events: false` the store has no sweeper (it only hides expired "
            "entries); with `true` the sweeper thread claims them and emits one `state:expired` "
            "each, to one counting handler. **The sweeper and the load share one process** (one "
            "GIL). Per-round ratios (true ÷ the false round before it): "
            + ", ".join(f"{r:.2f}" for r in found.round_ratios)
            + f". Load average (1/5/15 min) {found.load}."
            + "".join(f" **{note}.**" for note in found.short),
            "",
            "| `expiry_events` | get/set per s | events delivered per s | get/set per CPU-second of the "
            "load thread |",
            "|---|---:|---:|---:|",
            f"| false | {found.ops_off:,.0f} | - | {found.cpu_off:,.0f} |",
            f"| true | {found.ops_on:,.0f} | {found.events_per_s:,.0f} | {found.cpu_on:,.0f} |",
            f"| ratio | {found.ratio:.2f}× | | {found.cpu_ratio:.2f}× |",  # noqa: RUF001
            "",
            "The first column is what the load gets in wall time, sharing the GIL and this machine's cores "
            "with the sweeper thread (and, on a shared machine, with every other process: a thread that "
            "holds the GIL while the OS runs something else stalls the other). The last column counts only "
            "the CPU time of the load's own thread, so it shows what expiry events add to each get/set "
            "itself, without the waiting. The sweeper thread used "
            f"{found.sweeper_us:.1f} µs of CPU per event it delivered (claim, event, acknowledgement"
            + ("; SQLite's part of it runs without the GIL" if name == "kv" else "")
            + f"), every thread but the load's {found.others_us:.1f} µs"
            + (f", the server {found.server_us:.1f} µs" if found.server_us is not None else "")
            + f"; sweeping a backlog of expired entries alone, with no load, it used {found.alone_us:.1f} µs "
            f"per event (median of {max(1, rounds)}).",
            "",
        ]
    return "\n".join(parts).rstrip("\n")


def _parse(argv: list[str]) -> tuple[float, int, list[str], dict[str, int], str]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.expiry",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]).replace("``", "`"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "args", nargs="*", metavar="[SECONDS [ROUNDS]] ADAPTER",
        help=f"seconds of load per round (3), rounds per setting (3), then adapters: "
        f"{', '.join(ADAPTERS)} (default kv)",
    )  # fmt: skip
    parser.add_argument(
        "--sweeper", choices=("thread", "process"), default="thread",
        help="expiry_sweeper of the rounds with expiry events: the sweeper in a thread of the "
        "load's process (default), or in a process of its own (then memcached too is seeded at "
        f"{RATE:,}/s unless --rate says otherwise)",
    )  # fmt: skip
    parser.add_argument(
        "--rate", action="append", default=[], metavar="N|ADAPTER=N",
        help=f"expiring entries per second to seed (default {RATE:,}; "
        + ", ".join(f"{k} {v:,}" for k, v in DEFAULT_RATES.items()) + ")",
    )  # fmt: skip
    args = parser.parse_args(argv)
    numbers: list[str] = []
    names: list[str] = []
    for arg in args.args:
        (names if names or arg in ADAPTERS or not arg[:1].isdigit() else numbers).append(arg)
    try:
        if len(numbers) > 2:
            raise ValueError
        seconds = float(numbers[0]) if numbers else 3.0
        rounds = int(numbers[1]) if len(numbers) > 1 else 3
        if seconds <= 0 or rounds < 1:
            raise ValueError
    except ValueError:
        parser.error("SECONDS is a positive number, ROUNDS a whole number >= 1, then adapter names")
    unknown = [n for n in names if n not in ADAPTERS]
    if unknown:
        parser.error(f"unknown adapter(s) {', '.join(unknown)}; choose from {', '.join(ADAPTERS)}")
    names = names or ["kv"]
    rates: dict[str, int] = {}
    for given in args.rate:
        adapter, _, number = given.rpartition("=")
        if adapter and adapter not in ADAPTERS:
            parser.error(f"--rate {given}: unknown adapter {adapter}")
        if not number.isdigit() or int(number) < 1:
            parser.error(f"--rate {given}: a whole number of entries per second >= 1")
        for name in [adapter] if adapter else names:
            rates[name] = int(number)
    return seconds, rounds, names, rates, args.sweeper


def main(argv: list[str]) -> int:
    seconds, rounds, names, rates, sweeper = _parse(argv)
    print(f"Load average at the start (1/5/15 min): {load()}\n", flush=True)
    all_found = []
    failed = []
    for name in names:
        try:
            found = measure(
                seconds, rounds, name, rates.get(name), lambda line: print(line, flush=True), sweeper
            )
        except Exception as exc:  # the other adapters still get measured; the exit code says it
            failed.append(name)
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}\n", flush=True)
            continue
        all_found.append(found)
        print(report(found, rounds) + "\n", flush=True)
    if all_found:
        print(summary(all_found))
    print(f"\nLoad average at the end (1/5/15 min): {load()}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

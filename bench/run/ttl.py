"""What a deadline costs each adapter with ``ttl`` (issue 16): ``get`` of an entry that has one
beside ``get`` of one that has none, ``set`` with ``ttl_ms`` beside ``set`` without, and the raw
client's ``get``/``set`` of the standard table, measured in the same run in short interleaved slices.

The two sides do the same work but for the deadline. Both ``set`` rows overwrite existing entries
with a value that differs from the one stored (two values of one size, taking turns): SQLite skips
writing a row rewritten with identical bytes, so a plain ``set`` of the value already there writes
no page while every ``set`` with ``ttl_ms`` (a new deadline each millisecond) writes one.

Any target whose adapter declares ``ttl`` other than ``none`` gets the table (DynamoDB included
once its adapter declares it); the others are named, not measured.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from iii_state_core import StateStore

from . import workload as w
from .machine import process_cpu_s
from .measuring import Budget, Measurement, Op, best, measure
from .raw import RawSide

#: Far enough that no entry expires while the bench runs.
TTL_MS: Final = 3_600_000
#: Issue 16: with a deadline, ``get`` keeps at least this share of its speed, ``set`` at least the other.
TARGETS: Final = {"get": 0.85, "set": 0.80}
#: Each round of the budget is cut into this many slices; the three sides take turns slice by slice
#: (each side first in turn), so a burst of load from other processes reaches them alike.
SLICES: Final = 10
#: What the ``set`` rows write, in turn: one size, and each differs from the one before it.
VALUES: Final = ({**w.VALUE, "n": 1}, {**w.VALUE, "n": 2})
#: Calls each slice makes before its clock starts (``measure``'s warm-up).
WARMUP: Final = 20


@dataclass(frozen=True)
class TtlRow:
    operation: str
    plain: Measurement
    with_ttl: Measurement
    raw: Measurement
    #: Median over the slices of the thread CPU µs per call, without and with the deadline.
    plain_cpu_us: float
    with_ttl_cpu_us: float
    #: The server process's CPU µs per call over every slice, without and with the deadline
    #: (``None``: no server process of ours, e.g. the embedded store). With the calling thread's
    #: CPU it splits what a deadline costs into our side's work and the server's.
    plain_server_us: float | None = None
    with_ttl_server_us: float | None = None

    @property
    def ratio(self) -> float:
        return self.with_ttl.ops_per_s / self.plain.ops_per_s

    @property
    def met(self) -> bool:
        return self.ratio >= TARGETS[self.operation]


def has_ttl(store: StateStore) -> bool:
    return str(store.capabilities.ttl) != "none"


def _ops(store: StateStore, scope: str) -> dict[str, tuple[Op, Op]]:
    """Per operation, (without a deadline, with one); both sides overwrite existing entries."""
    plain, timed = f"{scope}-plain", f"{scope}-ttl"
    for i in range(w.KEYS):
        store.set(plain, w.key(i), VALUES[0])
        store.set(timed, w.key(i), VALUES[0], ttl_ms=TTL_MS)

    def getter(scope: str) -> Op:
        return lambda i: store.get(scope, w.key(i))

    def setter(scope: str, **extra: Any) -> Op:
        # Call n writes key n % KEYS; each pass over the keys writes the value the last one did
        # not (the first: not the prefilled one). Its own count, not ``i``: ``measure`` restarts
        # ``i`` after the warm-up, which would rewrite keys with the value they just got.
        calls = itertools.count()

        def op(_i: int) -> object:
            n = next(calls)
            return store.set(scope, w.key(n), VALUES[(n // w.KEYS + 1) % 2], **extra)

        return op

    return {
        "get": (getter(plain), getter(timed)),
        "set": (setter(plain), setter(timed, ttl_ms=TTL_MS)),
    }


def measure_rows(
    store: StateStore, scope: str, raw: RawSide, budget: Budget, server_pid: int | None = None
) -> list[TtlRow]:
    """Without, with, raw, in :data:`SLICES` interleaved slices per round; each side keeps its
    best slice (load only ever slows one), and its median CPU per call; with ``server_pid``,
    also the server process's CPU per call on each of our two sides.

    ``raw`` must be populated already (the standard table does it).
    """
    rows = []
    for operation, (plain, timed) in _ops(store, scope).items():
        raw_op: Callable[[int], object] = getattr(raw, operation)
        sides = (plain, timed, raw_op)
        runs: tuple[list[Measurement], ...] = ([], [], [])
        server_s, calls = [0.0, 0.0, 0.0], [0, 0, 0]
        for n in range(budget.rounds * SLICES):
            for side in (n % 3, (n + 1) % 3, (n + 2) % 3):
                before = process_cpu_s(server_pid)
                m = measure(operation, sides[side], seconds=budget.seconds / SLICES, warmup=WARMUP)
                after = process_cpu_s(server_pid)
                runs[side].append(m)
                if before is not None and after is not None:
                    server_s[side] += after - before
                    calls[side] += m.calls + WARMUP
        cpu = [statistics.median(m.cpu_us for m in r) for r in runs]
        plain_server, timed_server = (server_s[i] / calls[i] * 1e6 if calls[i] else None for i in (0, 1))
        rows.append(TtlRow(operation, best(runs[0]), best(runs[1]), best(runs[2]), cpu[0], cpu[1],
                           plain_server, timed_server))  # fmt: skip
    return rows


def table(title: str, ttl: str, rows: list[TtlRow]) -> str:
    lines = [
        f"#### With and without a TTL: {title}",
        "",
        f"Adapter `ttl`: {ttl}. {TEXT}",
        "",
        "| operation | without TTL ops/s | with TTL ops/s | ratio | target | met | raw client ops/s "
        "| with TTL p50 µs | without p50 µs | with TTL CPU µs | without CPU µs "
        "| with TTL server CPU µs | without server CPU µs |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        label = "get" if r.operation == "get" else "set (`ttl_ms`)"
        lines.append(
            f"| {label} | {r.plain.ops_per_s:,.0f} | {r.with_ttl.ops_per_s:,.0f} | {r.ratio:.2f} | "
            f"≥ {TARGETS[r.operation]:.2f} | {'yes' if r.met else 'NO'} | {r.raw.ops_per_s:,.0f} | "
            f"{r.with_ttl.p50_us:,.1f} | {r.plain.p50_us:,.1f} | {r.with_ttl_cpu_us:,.1f} | "
            f"{r.plain_cpu_us:,.1f} | {_us(r.with_ttl_server_us)} | {_us(r.plain_server_us)} |"
        )
    return "\n".join(lines)


def _us(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


TEXT = (
    "Per adapter that declares `ttl`, in the same run and session as its standard table: `get` of an "
    "entry that has a deadline beside `get` of one that has none, `set` with `ttl_ms` beside `set` "
    "without (both overwrite an existing entry with a value of the same size that differs from the "
    "stored one: SQLite writes nothing for a row rewritten with identical bytes), and the raw client's "
    f"plain `get`/`set` of the standard table, the three taking turns in {SLICES} short slices per "
    "round, each keeping its best slice; CPU µs is the calling thread's CPU time per call, median "
    "over the slices; server CPU µs is the server process's CPU time (user + system, from /proc) per "
    "call over all the slices of that side (— for the embedded store, which has no server process). "
    f"The deadline is {TTL_MS // 1000:,} s away, so nothing expires during the run. "
    "Ratio = with ÷ without (ops/s); the target is issue 16's bar."
)

"""What a deadline costs each adapter with ``ttl`` (issue 16): ``get`` of an entry that has one
beside ``get`` of one that has none, ``set`` with ``ttl_ms`` beside ``set`` without, and the raw
client's ``get``/``set`` of the standard table measured in the same alternating rounds.

Any target whose adapter declares ``ttl`` other than ``none`` gets the table (DynamoDB included
once its adapter declares it); the others are named, not measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from iii_state_core import StateStore

from . import workload as w
from .measuring import Budget, Measurement, Op, best, measure
from .raw import RawSide

#: Far enough that no entry expires while the bench runs.
TTL_MS: Final = 3_600_000
#: Issue 16: with a deadline, ``get`` keeps at least this share of its speed, ``set`` at least the other.
TARGETS: Final = {"get": 0.85, "set": 0.80}


@dataclass(frozen=True)
class TtlRow:
    operation: str
    plain: Measurement
    with_ttl: Measurement
    raw: Measurement

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
        store.set(plain, w.key(i), w.VALUE)
        store.set(timed, w.key(i), w.VALUE, ttl_ms=TTL_MS)

    def getter(scope: str) -> Op:
        return lambda i: store.get(scope, w.key(i))

    def setter(scope: str, **extra: Any) -> Op:
        return lambda i: store.set(scope, w.key(i), w.VALUE, **extra)

    return {
        "get": (getter(plain), getter(timed)),
        "set": (setter(plain), setter(timed, ttl_ms=TTL_MS)),
    }


def measure_rows(store: StateStore, scope: str, raw: RawSide, budget: Budget) -> list[TtlRow]:
    """Without, with, raw, in alternating rounds (each keeps its best, like the standard table).

    ``raw`` must be populated already (the standard table does it).
    """
    rows = []
    for operation, (plain, timed) in _ops(store, scope).items():
        raw_op: Callable[[int], object] = getattr(raw, operation)
        runs: tuple[list[Measurement], list[Measurement], list[Measurement]] = ([], [], [])
        for _ in range(budget.rounds):
            for op, into in ((plain, runs[0]), (timed, runs[1]), (raw_op, runs[2])):
                into.append(measure(operation, op, seconds=budget.seconds, warmup=20))
        rows.append(TtlRow(operation, best(runs[0]), best(runs[1]), best(runs[2])))
    return rows


def table(title: str, ttl: str, rows: list[TtlRow]) -> str:
    lines = [
        f"#### With and without a TTL: {title}",
        "",
        f"Adapter `ttl`: {ttl}. {TEXT}",
        "",
        "| operation | without TTL ops/s | with TTL ops/s | ratio | target | met | raw client ops/s "
        "| with TTL p50 µs | without p50 µs |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        label = "get" if r.operation == "get" else "set (`ttl_ms`)"
        lines.append(
            f"| {label} | {r.plain.ops_per_s:,.0f} | {r.with_ttl.ops_per_s:,.0f} | {r.ratio:.2f} | "
            f"≥ {TARGETS[r.operation]:.2f} | {'yes' if r.met else 'NO'} | {r.raw.ops_per_s:,.0f} | "
            f"{r.with_ttl.p50_us:,.1f} | {r.plain.p50_us:,.1f} |"
        )
    return "\n".join(lines)


TEXT = (
    "Per adapter that declares `ttl`, in the same run and session as its standard table: `get` of an "
    "entry that has a deadline beside `get` of one that has none, `set` with `ttl_ms` beside `set` "
    "without (both overwrite an existing entry), and the raw client's plain `get`/`set` of the standard "
    "table, the three in alternating rounds, each keeping its best round; the deadline is "
    f"{TTL_MS // 1000:,} s away, so nothing expires during the run. Ratio = with ÷ without; the "
    "target is issue 16's bar."
)

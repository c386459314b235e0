"""Timing helpers on top of ``bench.harness``: alternating rounds, counters, the row table."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from bench.harness import Measurement, Pair, measure

Op = Callable[[int], object]


@dataclass(frozen=True)
class Budget:
    """How long to measure: seconds per measurement and alternating rounds per operation."""

    seconds: float
    rounds: int


def best(runs: list[Measurement]) -> Measurement:
    """The round with the highest throughput: load from other processes only ever slows a round."""
    return max(runs, key=lambda m: m.ops_per_s)


def alternate(name: str, ours: Op, raw: Op | None, budget: Budget) -> Pair:
    """Measure ours and raw in alternating rounds and keep each side's best round.

    Alternating makes a burst of load from other processes hit both sides alike.
    """
    mine: list[Measurement] = []
    theirs: list[Measurement] = []
    for _ in range(budget.rounds):
        mine.append(measure(name, ours, seconds=budget.seconds, warmup=20))
        if raw is not None:
            theirs.append(measure(f"raw {name}", raw, seconds=budget.seconds, warmup=20))
    return Pair(name, best(mine), best(theirs) if theirs else None)


def counting(op: Callable[[int], object]) -> Op:
    """Call ``op`` with 0, 1, 2, … whatever index the caller passes.

    ``harness.measure`` restarts its index after the warm-up; a pool of keys that each call
    consumes (deletes) needs a number that never repeats.
    """
    counter = itertools.count()
    return lambda _i: op(next(counter))


def rows_table(title: str, pairs: list[Pair], notes: dict[str, str] | None = None) -> str:
    """A Markdown table: operation, ours and raw ops/s, ratio, and both sides' p50/p99."""
    lines = [
        f"### {title}",
        "",
        "| operation | iii-state ops/s | raw client ops/s | ratio | p50 µs | p99 µs "
        "| raw p50 µs | raw p99 µs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in pairs:
        raw = p.raw
        lines.append(
            "| {op} | {ours:,.0f} | {raw_ops} | {ratio} | {p50:,.1f} | {p99:,.1f} | {rp50} | {rp99} |".format(
                op=p.operation,
                ours=p.ours.ops_per_s,
                raw_ops="-" if raw is None else f"{raw.ops_per_s:,.0f}",
                ratio="-" if p.ratio is None else f"{p.ratio:.2f}",
                p50=p.ours.p50_us,
                p99=p.ours.p99_us,
                rp50="-" if raw is None else f"{raw.p50_us:,.1f}",
                rp99="-" if raw is None else f"{raw.p99_us:,.1f}",
            )
        )
    if notes:
        lines.append("")
        lines.extend(f"- *{operation}*: {note}" for operation, note in notes.items())
    return "\n".join(lines)

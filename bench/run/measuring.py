"""The one bench harness: time an operation, alternate ours and raw in rounds, the row table."""

from __future__ import annotations

import itertools
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Op = Callable[[int], object]
Fill = Callable[[int, int], object]


@dataclass(frozen=True)
class Measurement:
    label: str
    ops_per_s: float
    p50_us: float
    p99_us: float
    #: The calling thread's CPU time per call (``time.thread_time``): unlike the wall-clock
    #: figures, other processes on a shared machine cannot inflate it.
    cpu_us: float = 0.0
    #: Calls timed (the warm-up's not counted).
    calls: int = 0


def measure(
    label: str, op: Callable[[int], object], *, seconds: float = 1.0, warmup: int = 50, least: int = 20
) -> Measurement:
    """Call ``op(i)`` repeatedly for about ``seconds`` and at least ``least`` times; return
    throughput and latency percentiles."""
    for i in range(warmup):
        op(i)
    samples: list[float] = []
    cpu_started = time.thread_time()
    started = time.perf_counter()
    i = 0
    while True:
        t0 = time.perf_counter()
        op(i)
        t1 = time.perf_counter()
        samples.append(t1 - t0)
        i += 1
        if t1 - started >= seconds and i >= least:
            break
    total = time.perf_counter() - started
    cpu = time.thread_time() - cpu_started
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return Measurement(label, i / total, statistics.median(samples) * 1e6, p99 * 1e6, cpu / i * 1e6, i)


@dataclass(frozen=True)
class Pair:
    """One operation measured through the adapter and through the raw client doing the same work."""

    operation: str
    ours: Measurement
    raw: Measurement | None

    @property
    def ratio(self) -> float | None:
        return None if self.raw is None else self.ours.ops_per_s / self.raw.ops_per_s


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


#: Resamples of the bootstrap intervals (:func:`interval`).
BOOTSTRAP_RESAMPLES = 2000


def interval(values: Sequence[float], rng: random.Random, level: float = 0.90) -> tuple[float, float]:
    """The ``level`` bootstrap interval of the median of ``values`` (percentile method)."""
    medians = sorted(
        statistics.median(rng.choices(values, k=len(values))) for _ in range(BOOTSTRAP_RESAMPLES)
    )
    tail = (1 - level) / 2
    return medians[int(tail * (len(medians) - 1))], medians[int((1 - tail) * (len(medians) - 1))]


@dataclass(frozen=True)
class Ratio:
    """One side over another, round by round: the median per-round ratio and its 90 % interval."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, top: Sequence[Measurement], bottom: Sequence[Measurement]) -> Ratio:
        """``top[i].ops_per_s / bottom[i].ops_per_s`` of each round ``i`` (the same rounds)."""
        return cls.median_of([a.ops_per_s / b.ops_per_s for a, b in zip(top, bottom, strict=True)])

    @classmethod
    def of_cpu(cls, cheap: Sequence[Measurement], costly: Sequence[Measurement]) -> Ratio:
        """``costly[i].cpu_us / cheap[i].cpu_us`` of each round: how many times the CPU time per
        call (the calling thread's: time other processes take does not count) ``costly`` spends."""
        return cls.median_of([b.cpu_us / a.cpu_us for a, b in zip(cheap, costly, strict=True)])

    @classmethod
    def median_of(cls, ratios: list[float]) -> Ratio:
        # seeded: the same rounds always print the same interval
        return cls(statistics.median(ratios), *interval(ratios, random.Random(17)))

    def __str__(self) -> str:
        return f"{self.median:.2f} [{self.low:.2f}, {self.high:.2f}]"

    def reaches(self, bar: float) -> str:
        """Whether the rounds show the ratio at or above ``bar``: "met" when the whole interval is,
        "below" when it all lies under it, "not shown" when it straddles it (the run cannot tell)."""
        if self.low >= bar:
            return "met"
        return "below" if self.high < bar else "not shown"


def rotating(ops: dict[str, Op], rounds: int, seconds: float) -> dict[str, list[Measurement]]:
    """Each op's rounds: every op measured for about ``seconds`` (at least one call) in each of
    ``rounds`` rounds, taking turns in an order that rotates each round, so a burst of load from
    other processes hits every side of some rounds alike and a per-round ratio cancels it out."""
    names = list(ops)
    for name in names:  # one untimed turn each first (caches, the store's pages)
        measure(name, ops[name], seconds=0.0, warmup=2, least=1)
    runs: dict[str, list[Measurement]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            runs[name].append(measure(name, ops[name], seconds=seconds, warmup=2, least=1))
    return runs


def median_run(runs: Sequence[Measurement]) -> Measurement:
    """The round of median throughput (the lower middle one of an even count)."""
    return sorted(runs, key=lambda m: m.ops_per_s)[(len(runs) - 1) // 2]


def consuming(
    label: str,
    fill: Callable[[int, int], object],
    op: Callable[[int], object],
    *,
    seconds: float,
    chunk: int = 500,
) -> Measurement:
    """Time ``op(j)`` on entries that each call uses up (``delete``), refilled in untimed chunks.

    ``fill(start, count)`` creates entries ``start … start + count - 1``; then each is consumed
    once with its own timing. Only the calls are timed, so ops/s is calls ÷ their summed time
    (the refills cost nothing), and the scope never holds more than ``chunk`` such entries.
    """
    samples: list[float] = []
    spent = 0.0
    start = 0
    while spent < seconds or len(samples) < 20:
        fill(start, chunk)
        for j in range(start, start + chunk):
            t0 = time.perf_counter()
            op(j)
            t1 = time.perf_counter()
            samples.append(t1 - t0)
            spent += t1 - t0
        start += chunk
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return Measurement(label, len(samples) / spent, statistics.median(samples) * 1e6, p99 * 1e6)


def alternate_consuming(
    name: str, ours: tuple[Fill, Op], raw: tuple[Fill, Op] | None, budget: Budget
) -> Pair:
    """:func:`alternate` for operations that use up their entries (see :func:`consuming`)."""
    mine: list[Measurement] = []
    theirs: list[Measurement] = []
    offset = 0
    for _ in range(budget.rounds):
        for side, runs in ((ours, mine), (raw, theirs)):
            if side is None:
                continue
            fill, op = side
            runs.append(consuming(name, *_shifted(fill, op, offset), seconds=budget.seconds))
        offset += 10_000_000  # each round uses fresh entry numbers
    return Pair(name, best(mine), best(theirs) if theirs else None)


def _shifted(fill: Fill, op: Op, base: int) -> tuple[Fill, Op]:
    """``fill`` and ``op`` on entry numbers ``base`` and up."""
    return (lambda start, count: fill(base + start, count)), (lambda j: op(base + j))


def counting(op: Callable[[int], object]) -> Op:
    """Call ``op`` with 0, 1, 2, … whatever index the caller passes.

    ``measure`` restarts its index after the warm-up; a pool of keys that each call
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

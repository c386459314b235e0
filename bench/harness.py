"""Shared benchmark helpers: time an operation, print ours beside the raw client's, same run."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Measurement:
    label: str
    ops_per_s: float
    p50_us: float
    p99_us: float


def measure(
    label: str, op: Callable[[int], object], *, seconds: float = 1.0, warmup: int = 50
) -> Measurement:
    """Call ``op(i)`` repeatedly for about ``seconds``; return throughput and latency percentiles."""
    for i in range(warmup):
        op(i)
    samples: list[float] = []
    started = time.perf_counter()
    i = 0
    while True:
        t0 = time.perf_counter()
        op(i)
        t1 = time.perf_counter()
        samples.append(t1 - t0)
        i += 1
        if t1 - started >= seconds and i >= 20:
            break
    total = time.perf_counter() - started
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return Measurement(label, i / total, statistics.median(samples) * 1e6, p99 * 1e6)


@dataclass(frozen=True)
class Pair:
    """One operation measured through the adapter and through the raw client doing the same work."""

    operation: str
    ours: Measurement
    raw: Measurement | None

    @property
    def ratio(self) -> float | None:
        return None if self.raw is None else self.ours.ops_per_s / self.raw.ops_per_s


def table(title: str, pairs: Iterable[Pair]) -> str:
    """A Markdown table: operation, ours ops/s, raw ops/s, ratio, p50/p99 of ours."""
    lines = [
        f"### {title}",
        "",
        "| operation | iii-state ops/s | raw client ops/s | ratio | p50 µs | p99 µs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for p in pairs:
        raw = "-" if p.raw is None else f"{p.raw.ops_per_s:,.0f}"
        ratio = "-" if p.ratio is None else f"{p.ratio:.2f}×"  # noqa: RUF001 (a real times sign)
        lines.append(
            f"| {p.operation} | {p.ours.ops_per_s:,.0f} | {raw} | {ratio} | "
            f"{p.ours.p50_us:,.1f} | {p.ours.p99_us:,.1f} |"
        )
    return "\n".join(lines)

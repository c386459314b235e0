"""How cost grows with a scope: get/set latency at 10 vs many keys, and a full ``list_entries``
walk of a large scope with its peak memory (tracemalloc) beside a small scope's.
"""

from __future__ import annotations

import random
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from iii_state_core import StateStore

from . import workload as w
from .measuring import Budget, Measurement, best, measure

SMALL = 10
#: The scope a walk's peak memory is compared against: same page size, 1/100 of the keys.
SMALL_WALK = 1000
WALK_PAGE = w.PAGE


@dataclass(frozen=True)
class Growth:
    small: int
    large: int
    fill_s: float
    get_small: Measurement
    get_large: Measurement
    set_small: Measurement
    set_large: Measurement
    #: Creating a new key in a fresh scope and in the large one, measured like get/set.
    create_small: Measurement | None = None
    create_large: Measurement | None = None


@dataclass(frozen=True)
class Walk:
    keys: int
    page: int
    seconds: float
    pages: int
    returned: int
    distinct: int
    peak_large: int
    peak_small: int
    complete: bool


def _name(i: int) -> str:
    return f"e{i:07d}"


def fill(store: StateStore, scope: str, count: int, threads: int) -> float:
    """Write ``count`` entries through the store (the adapter's own layout and indexes)."""
    started = time.perf_counter()
    if threads <= 1:
        for i in range(count):
            store.set(scope, _name(i), w.VALUE)
    else:
        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(lambda i: store.set(scope, _name(i), w.VALUE), range(count), chunksize=64):
                pass
    return time.perf_counter() - started


def _random_keys(count: int) -> list[str]:
    rng = random.Random(7)
    return [_name(rng.randrange(count)) for _ in range(4096)]


def growth(store: StateStore, scope: str, large: int, budget: Budget, threads: int) -> Growth:
    """Point get/set latency on a 10-key scope and on a ``large``-key scope, alternating rounds."""
    small_scope, large_scope = f"{scope}-10", f"{scope}-{large}"
    fill(store, small_scope, SMALL, 1)
    fill_s = fill(store, large_scope, large, threads)
    keys = {SMALL: _random_keys(SMALL), large: _random_keys(large)}
    results: dict[tuple[str, int], list[Measurement]] = {}
    creates: list[tuple[int, Callable[[int], object]]] = []
    for round_no in range(budget.rounds):
        for size, where in ((SMALL, small_scope), (large, large_scope)):
            names = keys[size]
            # new names every call; small creates go to a scope of their own (10 keys stay 10)
            create_in = f"{scope}-new{round_no}" if size == SMALL else where

            def create(i: int, where: str = create_in, prefix: str = f"c{round_no}-") -> object:
                return store.set(where, f"{prefix}{i}", w.VALUE)

            def get(i: int, where: str = where, names: list[str] = names) -> object:
                return store.get(where, names[i % 4096])

            def put(i: int, where: str = where, names: list[str] = names) -> object:
                return store.set(where, names[i % 4096], w.VALUE)

            results.setdefault(("get", size), []).append(measure("get", get, seconds=budget.seconds))
            results.setdefault(("set", size), []).append(measure("set", put, seconds=budget.seconds))
            creates.append((size, create))
    # after every get/set round: new keys would push the keys being overwritten out of an
    # adapter's caches (memcached remembers 4,096 items' cas) and slow the next set rounds
    for size, create in creates:
        results.setdefault(("create", size), []).append(measure("create", create, seconds=budget.seconds))
    return Growth(
        SMALL, large, fill_s,
        best(results[("get", SMALL)]), best(results[("get", large)]),
        best(results[("set", SMALL)]), best(results[("set", large)]),
        best(results[("create", SMALL)]), best(results[("create", large)]),
    )  # fmt: skip


def _walk_once(store: StateStore, scope: str, seen: bytearray) -> tuple[int, int]:
    """One full walk; marks each key in ``seen`` (allocated by the caller, outside the trace)."""
    cursor: str | None = None
    pages = returned = 0
    while True:
        page = store.list_entries(scope, cursor, WALK_PAGE)
        pages += 1
        for key, _value in page.entries:
            if key[0] == "e":  # the filled keys; growth's create rounds added others
                seen[int(key[1:])] = 1
                returned += 1
        cursor = page.next_cursor
        if page.done:
            return pages, returned


def _traced_peak(store: StateStore, scope: str, seen: bytearray) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        _walk_once(store, scope, seen)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def walk(store: StateStore, scope: str, large: int) -> Walk:
    """Walk the ``large`` scope ``growth`` filled: timed, then traced; then a 1,000-key scope traced.

    :returns: time, pages, keys returned and distinct, and both peaks in bytes.
    """
    large_scope, small_scope = f"{scope}-{large}", f"{scope}-walk{SMALL_WALK}"
    fill(store, small_scope, SMALL_WALK, 1)
    seen = bytearray(large)
    started = time.perf_counter()
    pages, returned = _walk_once(store, large_scope, seen)
    seconds = time.perf_counter() - started
    distinct = sum(seen)
    peak_large = _traced_peak(store, large_scope, bytearray(large))
    peak_small = _traced_peak(store, small_scope, bytearray(SMALL_WALK))
    return Walk(
        large, WALK_PAGE, seconds, pages, returned, distinct, peak_large, peak_small, distinct == large
    )


def growth_table(rows: list[tuple[str, Growth]]) -> str:
    lines = [
        "| adapter | op | p50 µs (10 keys) | p99 µs (10 keys) | p50 µs (large) | p99 µs (large) "
        "| keys in large scope | large/small p50 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, g in rows:
        for op, small, large in _ops(g):
            lines.append(
                f"| {name} | {op} | {small.p50_us:,.1f} | {small.p99_us:,.1f} | {large.p50_us:,.1f} | "
                f"{large.p99_us:,.1f} | {g.large:,} | {large.p50_us / small.p50_us:.2f} |"
            )
    return "\n".join(lines)


def _ops(g: Growth) -> list[tuple[str, Measurement, Measurement]]:
    ops = [("get", g.get_small, g.get_large), ("set", g.set_small, g.set_large)]
    if g.create_small is not None and g.create_large is not None:
        ops.append(("create", g.create_small, g.create_large))
    return ops


def walk_table(rows: list[tuple[str, Walk, float]]) -> str:
    lines = [
        "| adapter | keys | page | walk s | entries/s | pages | keys returned | distinct | fill s | "
        "peak KiB (large scope) | peak KiB (1,000 keys) | peak ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, k, fill_s in rows:
        distinct = f"{k.distinct:,}" + ("" if k.complete else " (INCOMPLETE)")
        cells = [
            name, f"{k.keys:,}", str(k.page), f"{k.seconds:,.2f}", f"{k.returned / k.seconds:,.0f}",
            f"{k.pages:,}", f"{k.returned:,}", distinct, f"{fill_s:,.1f}", f"{k.peak_large / 1024:,.0f}",
            f"{k.peak_small / 1024:,.0f}", f"{k.peak_large / max(1, k.peak_small):.2f}",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: Above these, a figure is called out under the tables.
GROWTH_FLAG = 1.5
PEAK_FLAG = 2.0
CREATE_FLAG = 5.0
#: Creating a key (p50, large scope) against overwriting one, above which it is called out.
CREATE_P50_FLAG = 3.0


def flags(growth_rows: list[tuple[str, Growth]], walk_rows: list[tuple[str, Walk, float]]) -> list[str]:
    """Sentences for whatever did not stay flat: slower calls, unbounded walk memory, missed keys,
    creating keys that costs more than overwriting them (a cost that grows while filling)."""
    out = []
    for name, g in growth_rows:
        for op, small, large in (("get", g.get_small, g.get_large), ("set", g.set_small, g.set_large)):
            if large.p50_us > GROWTH_FLAG * small.p50_us:
                out.append(
                    f"{name}: {op} p50 is {large.p50_us / small.p50_us:.1f} times slower in the "
                    f"{g.large:,}-key scope than in the 10-key one."
                )
        if g.create_large is not None and g.create_large.p50_us > CREATE_P50_FLAG * g.set_large.p50_us:
            out.append(
                f"{name}: creating a key in the {g.large:,}-key scope (p50 {g.create_large.p50_us:,.0f} µs) "
                f"costs {g.create_large.p50_us / g.set_large.p50_us:.1f} times overwriting one "
                f"({g.set_large.p50_us:,.0f} µs)."
            )
        per_create = g.fill_s / g.large * 1e6
        if per_create > CREATE_FLAG * g.set_large.p50_us:
            out.append(
                f"{name}: creating the {g.large:,} keys took {g.fill_s:,.0f} s, {per_create:,.0f} µs per key "
                f"on average, against {g.set_large.p50_us:,.0f} µs to overwrite one: creating a key costs "
                "more the larger its scope."
            )
    for name, k, _fill in walk_rows:
        if not k.complete:
            out.append(f"{name}: the walk returned {k.distinct:,} of {k.keys:,} keys.")
        if k.peak_large > PEAK_FLAG * k.peak_small:
            out.append(
                f"{name}: the walk's peak memory grows with the scope: {k.peak_large / 1024:,.0f} KiB for "
                f"{k.keys:,} keys against {k.peak_small / 1024:,.0f} KiB for {SMALL_WALK:,} "
                f"({k.peak_large / k.peak_small:.1f} times), not bounded by the page size."
            )
    return out

"""``python -m bench``: every benchmark of the project in one run, written as one Markdown report.

Sections: the core's own overhead (before/after), one table per adapter (ours beside the raw
client, same run), how cost grows with a scope (10 vs many keys, a full ``list_entries`` walk
with its peak memory), and the worker's invocations/s over loopback.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field

from bench import expiry, startup
from bench.batches import IMPORT_TARGETS
from bench.run import batches, imports, machine, overhead, scaling, ttl
from bench.run.measuring import Budget, rows_table
from bench.run.ops import Ours, raw_notes, standard_pairs
from bench.run.targets import TARGETS
from bench.run.transfer import transfer_table
from bench.run.worker import worker_ab_table, worker_table

#: Every target but kv-fsync (its single calls each wait for the disk: a batches-only comparison).
DEFAULT_ADAPTERS = tuple(name for name in TARGETS if name != "kv-fsync")
#: The per-call overhead the core may add over the in-memory adapter (issue 9).
OVERHEAD_TARGET_US = 10.0


@dataclass(frozen=True)
class Options:
    adapters: tuple[str, ...]
    budget: Budget
    large: int
    overhead_rounds: int
    overhead_calls: int
    baseline: str | None
    callgrind_calls: int
    worker: bool
    #: entries moved by each export / migrate / verify call (0: no transfer section)
    transfer_entries: int
    #: entries of the kv and Redis import timing (issue 17 measures 100,000)
    import_entries: int
    quick: bool
    #: Measure the core's overhead (off when only some adapters' figures are refreshed).
    overhead: bool = True

    @classmethod
    def make(cls, *, quick: bool, adapters: tuple[str, ...] | None = None, **overrides: object) -> Options:
        base: dict[str, object] = (
            dict(budget=Budget(0.05, 1), large=2000, overhead_rounds=3, overhead_calls=3000, baseline=None,
                 callgrind_calls=0, worker=False, transfer_entries=200, import_entries=10_000)
            if quick
            else dict(budget=Budget(1.0, 3), large=100_000, overhead_rounds=9, overhead_calls=20000,
                      baseline=overhead.BASELINE_REV, callgrind_calls=2000, worker=True,
                      transfer_entries=5000, import_entries=imports.ENTRIES)
        )  # fmt: skip
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(adapters=adapters or DEFAULT_ADAPTERS, quick=quick, **base)  # type: ignore[arg-type]


@dataclass
class Report:
    sections: list[str] = field(default_factory=list)
    #: adapter or section -> why it did not run (missing server: not a failure of ours)
    not_run: dict[str, str] = field(default_factory=dict)
    #: adapter or section -> the error it failed with
    failed: dict[str, str] = field(default_factory=dict)
    overhead_met: bool | None = None
    load_at_start: str = ""
    #: adapter -> its "### …" subsection; the growth and walk rows (for ``--update``).
    adapter_tables: dict[str, str] = field(default_factory=dict)
    growth_rows: list[tuple[str, scaling.Growth]] = field(default_factory=list)
    walk_rows: list[tuple[str, scaling.Walk, float]] = field(default_factory=list)
    #: The expiry-events section ("" when it failed), which ``--update`` refreshes too.
    expiry_section: str = ""


def _say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def _overhead_section(options: Options, report: Report) -> None:
    _say("core overhead")
    cores = []
    if options.baseline:
        try:
            cores.append(overhead.measure_core("before", options.baseline, options.overhead_rounds,
                                               options.overhead_calls, options.callgrind_calls))  # fmt: skip
        except Exception as exc:
            report.not_run["core overhead before"] = f"baseline {options.baseline[:10]} did not run: {exc}"
    after = overhead.measure_core(
        "after", None, options.overhead_rounds, options.overhead_calls, options.callgrind_calls
    )
    cores.append(after)
    report.overhead_met = all(v < OVERHEAD_TARGET_US for v in after.overhead("cpu_median").values())
    report.sections.append(overhead_markdown(cores, options))


def overhead_markdown(cores: list[overhead.CoreCost], options: Options) -> str:
    labels = {
        "get": "get",
        "set": "set",
        "trigger_get": "trigger(state::get)",
        "trigger_set": "trigger(state::set)",
    }
    head = (
        "| call | "
        + " | ".join(
            f"{c.label}: CPU µs | {c.label}: wall µs"
            + (f" | {c.label}: instructions" if c.instructions else "")
            for c in cores
        )
        + " |"
    )
    columns = head.count("|") - 1
    lines = [head, "|---|" + "---:|" * (columns - 1)]
    for name, label in labels.items():
        cells = []
        for c in cores:
            cells += [f"{c.overhead('cpu_median')[name]:.2f}", f"{c.overhead('wall_median')[name]:.2f}"]
            ir = c.instruction_overhead()
            if ir is not None:
                cells.append(f"{ir[name]:,.0f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    primitive = ["", "Time of the adapter primitives themselves (the part not counted as overhead):", ""]
    for c in cores:
        cpu = c.timing["cpu_median"]
        primitive.append(
            f"- {c.label} (`{c.timing['core']}`): in-memory `read` {cpu['read']:.2f} µs, "
            f"`write` {cpu['write']:.2f} µs CPU; typed get {cpu['get']:.2f} µs, "
            f"set {cpu['set']:.2f} µs in all"
        )
    after = cores[-1].overhead("cpu_median")
    verdict = (
        f"**Target (< {OVERHEAD_TARGET_US:.0f} µs per call for get and set, typed and trigger): "
        + ("met" if all(v < OVERHEAD_TARGET_US for v in after.values()) else "NOT met")
        + f"** — the largest CPU overhead is {max(after.values()):.2f} µs."
    )
    baseline_text = ""
    if options.baseline:
        baseline_text = f"*before* is the core at commit `{options.baseline[:10]}` (before this work), "
    return "\n".join([
        "## Core overhead over the in-memory adapter",
        "",
        "Per call, the store's time minus the time of the adapter primitive it wraps (`kv` in_memory: "
        "`get` wraps `read`, `set` wraps `write`). CPU µs is the calling thread's CPU time "
        "(`time.thread_time`), which other processes on this shared machine cannot inflate; wall µs "
        "is elapsed time and includes being descheduled. Both are medians of "
        f"{cores[-1].timing['rounds']} rounds of {cores[-1].timing['calls']:,} calls. Instructions come from "
        "`valgrind --tool=callgrind` (calls run minus an empty run, per call) and do not depend on load "
        "at all. " + baseline_text + "*after* is this tree.",
        "",
        *lines,
        *primitive,
        "",
        verdict,
    ])  # fmt: skip


def _adapter_sections(options: Options, report: Report) -> None:
    growth_rows: list[tuple[str, scaling.Growth]] = []
    walk_rows: list[tuple[str, scaling.Walk, float]] = []
    tables = ["## Adapters beside their raw clients", "", METHOD]
    batch_tables: list[str] = []
    for name in options.adapters:
        target = TARGETS[name]
        _say(f"{name}: standard operations")
        try:
            with target.open() as session:
                pairs, notes = standard_pairs(Ours(session.store, session.scope), session.raw, options.budget)
                facts = "; ".join(session.facts.values())
                table = rows_table(target.title, pairs, {**raw_notes(session.raw), **notes})
                section = f"{table}\n\nBackend: {facts}."
                if ttl.has_ttl(session.store):  # DynamoDB too, once its adapter declares ttl
                    _say(f"{name}: with and without a TTL")
                    rows = ttl.measure_rows(session.store, session.scope + "-t", session.raw, options.budget,
                                            session.server_pid)  # fmt: skip
                    section += "\n\n" + ttl.table(target.title, str(session.store.capabilities.ttl), rows)
                report.adapter_tables[name] = section
                tables += ["", section]
                if name in BATCH_TARGETS:
                    _say(f"{name}: batches and transactions")
                    batch_tables.append(batches.table(target.title, session.store, session.scope + "-b",
                                                      session.raw, options.budget))  # fmt: skip
                if name in IMPORT_TARGETS:
                    _say(f"{name}: import of {options.import_entries:,} entries")
                    batch_tables.append(imports.table(target.title, session.store, options.import_entries))
                if name == "dynamodb-moto":
                    continue  # moto serialises every request: the dynalite run covers growth
                _say(f"{name}: growth with {options.large:,} keys")
                store = session.reopen()
                try:
                    growth = scaling.growth(store, session.scope, options.large, options.budget,
                                            target.bulk_fill_threads)  # fmt: skip
                    growth_rows.append((name, growth))
                    _say(f"{name}: list_entries walk of {options.large:,} keys")
                    walk_rows.append((name, scaling.walk(store, session.scope, options.large), growth.fill_s))
                finally:
                    if store is not session.store:
                        store.close()
        except Exception as exc:
            unavailable = type(exc).__name__ == "ServerUnavailable"
            (report.not_run if unavailable else report.failed)[name] = f"{type(exc).__name__}: {exc}"
            if not unavailable:
                _say(traceback.format_exc())
    report.sections.append("\n".join(tables))
    if batch_tables:
        report.sections.append("\n\n".join(["## Batches and transactions", batches.TEXT, *batch_tables]))
    report.growth_rows, report.walk_rows = growth_rows, walk_rows
    if growth_rows:
        report.sections.append("\n".join([
            "## How cost grows with a scope",
            "",
            "Point get/set on random keys of a 10-key scope and of a large one (both filled through the "
            "store, so the adapter's own indexes are built as in use); best of the alternating rounds. "
            "Flat means the last column stays near 1. *create* sets a new key each call, in a scope of its "
            "own (10 keys column) and in the large scope, measured the same way.",
            "",
            scaling.growth_table(growth_rows),
            "",
            f"A full `list_entries` walk (page {scaling.WALK_PAGE}) of the large scope: time, whether every "
            "key came back, and the walk's peak Python memory (tracemalloc, everything allocated in this "
            f"process including the client library) beside the same walk of a {scaling.SMALL_WALK:,}-key "
            "scope. Memory bounded by the page size means a peak ratio near 1.",
            "",
            scaling.walk_table(walk_rows),
            "",
            f"Called out (a call over {scaling.GROWTH_FLAG} times slower, walk memory over "
            f"{scaling.PEAK_FLAG} times, creating a key over {scaling.CREATE_FLAG} times overwriting one):",
            "",
            *([f"- {flag}" for flag in scaling.flags(growth_rows, walk_rows)] or ["- nothing."]),
        ]))  # fmt: skip


#: Adapters whose batch primitive and raw batch are measured (the others make one call per entry).
BATCH_TARGETS = ("kv", "kv-memory", "redis", "memcached", "dynamodb")

METHOD = (
    "Each operation runs through iii-state and through the raw client doing the least the adapter "
    'must do for the same result (same server, same run, same value `{"n":1,"name":"alice",'
    '"tags":["a","b"]}`), in alternating rounds; each side keeps its best round, so load from '
    "other processes skews both alike. Ratio = iii-state ops/s ÷ raw ops/s (1.00 = no cost, above 1 = "
    "faster than the raw code). p50/p99 are per-call latencies of that round. Below each table: "
    "what the raw side does."
)


def run(options: Options) -> Report:
    report = Report()
    rows = machine.facts()
    report.load_at_start = machine.load()
    rows.append(("load average at start (1/5/15 min)", report.load_at_start))
    try:
        if options.overhead:
            _overhead_section(options, report)
    except Exception as exc:
        report.failed["core overhead"] = f"{type(exc).__name__}: {exc}"
        _say(traceback.format_exc())
    _adapter_sections(options, report)
    if options.transfer_entries:
        _transfer_section(options, report)
    if options.worker:
        _say("worker")
        table, why = worker_table(options.budget.seconds)
        if table is None:
            report.not_run["worker"] = why
        else:
            _say("worker A/B (this tree vs before issue 15)")
            ab, why_ab = worker_ab_table()
            if ab is None:
                report.not_run["worker A/B"] = why_ab
            text = "## The iii worker over loopback\n\n" + WORKER_TEXT + "\n\n" + table
            report.sections.append(text if ab is None else text + "\n\n" + WORKER_AB_TEXT + "\n\n" + ab)
    _say("start-up")
    try:
        report.sections.append(startup.section(3 if options.quick else 20))
    except Exception as exc:
        report.failed["start-up"] = f"{type(exc).__name__}: {exc}"
    _say("expiry events")
    try:
        report.expiry_section = expiry.section(0.5 if options.quick else 3.0, 1 if options.quick else 5)
        report.sections.append(report.expiry_section)
    except Exception as exc:
        report.failed["expiry events"] = f"{type(exc).__name__}: {exc}"
    rows.append(("load average at end", machine.load()))
    report.sections.insert(0, "## Machine\n\n" + machine.facts_table(rows))
    return report


def _transfer_section(options: Options, report: Report) -> None:
    _say(f"transfer: export / migrate / verify of {options.transfer_entries:,} entries")
    try:
        table = transfer_table(options.transfer_entries, options.budget, "redis" in options.adapters)
    except Exception as exc:
        unavailable = type(exc).__name__ == "ServerUnavailable"
        (report.not_run if unavailable else report.failed)["transfer"] = f"{type(exc).__name__}: {exc}"
        return
    report.sections.append("## Export, migrate, verify\n\n" + TRANSFER_TEXT + "\n\n" + table)


TRANSFER_TEXT = (
    "The core's `export`, `migrate` and `verify` beside the adapter primitives doing the same work "
    "with no core in between (`scan` pages written out as lines; `scan` + `write` into the target; "
    "`scan` of both sides compared as bytes). The gap is what the checks, JSON decoding/encoding, "
    "the conflict policy, the resume record and the digest cost."
)


WORKER_TEXT = (
    "`bench/run/worker_script.py`, run as it is: each state function served by the worker (`StateWorker`) to "
    "the fake engine of `tests/worker/engine_peer.py` over a loopback WebSocket, timed from the engine's "
    "side, beside a bare iii-sdk handler making the same store call; in-memory kv underneath. ops/s is "
    "the worker's invocations per second. The fake engine plays iii 0.25 (`observe.v1`): nobody observes "
    "`state::on-changed` in the first rows, so a write calls nothing more; the last row attaches an "
    "observer, and each write then also calls it through the engine (as on every engine before 0.25)."
)


WORKER_AB_TEXT = (
    "Issue 15's bar, worker invocations/s unchanged within noise, is judged by `python -m bench.worker_ab` "
    "(below): the worker of this tree and of f27a8d6 (the last commit before issue 15's work) in the same "
    "run, each in processes of its own over the same fake engine, SDK and in-memory kv, in short rounds "
    "taking turns; a second process of the old code gives the noise band. Unlike the one-second ratios "
    "above, which compare with a bare handler and swing by up to ±0.3 between runs, it compares the two "
    "revisions directly and states its own noise."
)


def markdown(report: Report, options: Options, command: str) -> str:
    parts = [
        "# Performance",
        "",
        f"Generated by `{command}` on the machine below; every figure comes from that run. "
        "Do not edit by hand: run the command again. `python -m bench --quick` is the seconds-long "
        "version CI runs (its figures are not meaningful).",
        "",
        *[s + "\n" for s in report.sections],
    ]
    if report.not_run or report.failed:
        parts.append("## Not run\n")
        parts += [f"- **{k}**: not run — {v}" for k, v in report.not_run.items()]
        parts += [f"- **{k}**: FAILED — {v}" for k, v in report.failed.items()]
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"

"""``python -m bench.faults``: every fault run, then ``docs/RELIABILITY.md``."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from bench.run import machine

from . import expiry, fuzz, kv_kill, model_runs, server_faults, transactions
from .backends import BACKENDS
from .limits import FIXED, OPEN_LIMITS, Limit, match
from .outcome import Line

PARTS = ("kv-kill", "expiry", "servers", "transactions", "model", "fuzz")
#: Servers whose adapter declares transactions (DynamoDB: on moto; dynalite has no TransactWriteItems).
TRANSACTION_BACKENDS = ("redis", "dynamodb")
#: Kills of sweeping processes: each costs a process start (~1.5 s), so fewer than the writers' kills.
EXPIRY_KILLS = 60
SERVER_BACKENDS = ("redis", "memcached", "dynamodb")
MODEL_STORES = tuple(model_runs.STORES)


@dataclass(frozen=True)
class Plan:
    quick: bool
    parts: tuple[str, ...]
    backends: tuple[str, ...]
    kills: int
    server_seconds: float
    model_examples: int
    fuzz_examples: int
    seed: int | None
    #: ``expiry_sweeper`` of the expiry part's sweeping processes (``process``: each sweeps in a
    #: child of its own, which the part SIGKILLs too)
    sweeper: str = "thread"

    @classmethod
    def make(
        cls,
        *,
        quick: bool,
        parts: tuple[str, ...] | None = None,
        backends: tuple[str, ...] | None = None,
        seed: int | None = None,
        sweeper: str = "thread",
    ) -> Plan:
        if quick:
            return cls(True, parts or PARTS, backends or ("redis",), 20, 6.0, 8, 150, seed, sweeper)
        return cls(
            False,
            parts or PARTS,
            backends or (*SERVER_BACKENDS, "kv", "kv-memory"),
            240,
            60.0,
            1000,
            5000,
            seed,
            sweeper,
        )


def _say(text: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {text}", flush=True)


def _guarded(area: str, what: str, step: Callable[[], list[Line]]) -> list[Line]:
    try:
        return step()
    except Exception as exc:
        unavailable = type(exc).__name__ == "ServerUnavailable"
        line = Line(area, what, "the run completes")
        if unavailable:
            line.details["not run"] = str(exc)
        else:
            line.tried = 1
            line.fail(
                f"the run itself crashed: {type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"
            )
        return [line]


def _servers_step(name: str, plan: Plan) -> Callable[[], list[Line]]:
    return lambda: server_faults.run(name, plan.server_seconds, seed=plan.seed)


def _expiry_step(name: str, kills: int, plan: Plan) -> Callable[[], list[Line]]:
    return lambda: [expiry.run(name, kills, plan.seed, expiry_sweeper=plan.sweeper)]


def _transactions_step(name: str, plan: Plan) -> Callable[[], list[Line]]:
    return lambda: [transactions.run_server(name, plan.server_seconds, seed=plan.seed)]


def _model_step(name: str, plan: Plan) -> Callable[[], list[Line]]:
    return lambda: [model_runs.run(name, plan.model_examples)]


def run(plan: Plan) -> list[Line]:
    lines: list[Line] = []
    if "kv-kill" in plan.parts:
        _say(f"kv: {plan.kills} SIGKILLs")
        lines += _guarded("kv file store", "SIGKILL campaign", lambda: [kv_kill.run(plan.kills, plan.seed)])
    if "expiry" in plan.parts:
        kills = min(plan.kills, EXPIRY_KILLS)
        for name in ("kv", *(b for b in plan.backends if b in expiry.FAULTS)):
            _say(f"{name}: {kills} SIGKILLs of processes sweeping expiry events")
            lines += _guarded(name, "expiry events under SIGKILL", _expiry_step(name, kills, plan))
    if "servers" in plan.parts:
        for name in plan.backends:
            if name in BACKENDS:
                _say(f"{name}: {plan.server_seconds:.0f} s of server and connection faults")
                lines += _guarded(name, "server and connection faults", _servers_step(name, plan))
    if "transactions" in plan.parts:
        kills = min(plan.kills, EXPIRY_KILLS)
        _say(f"kv: {kills} SIGKILLs of processes running transactions")
        lines += _guarded(
            "kv file store", "transactions under SIGKILL", lambda: [transactions.run_kv(kills, plan.seed)]
        )
        for name in plan.backends:
            if name in TRANSACTION_BACKENDS:
                _say(f"{name}: {plan.server_seconds:.0f} s of transactions through faults")
                lines += _guarded(name, "transactions through faults", _transactions_step(name, plan))
    if "model" in plan.parts:
        for name in plan.backends if not plan.quick else ("kv-memory", *plan.backends):
            if name in model_runs.STORES:
                _say(f"{name}: state machine, {plan.model_examples} programs")
                lines += _guarded(name, "state machine", _model_step(name, plan))
    if "fuzz" in plan.parts:
        _say(f"fuzz: {plan.fuzz_examples} examples per target")
        lines += _guarded("core", "fuzz", lambda: fuzz.run(plan.fuzz_examples, plan.seed))
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(lines: list[Line], plan: Plan, command: str, facts: list[tuple[str, str]]) -> str:
    out = [
        "# Reliability",
        "",
        f"Generated by `{command}`; every count comes from that run. Do not edit by hand: run it "
        "again. `python -m bench.faults --quick` is the short version; CI runs the same checks as "
        "`pytest tests/reliability`.",
        "",
        "## Machine",
        "",
        machine.facts_table(facts),
        "",
        "## Results",
        "",
        "Each line: what was tried, the promise checked, how many times it was tried and how many of "
        "those broke the promise.",
        "",
        "| area | what was tried | promise | tried | failed | s | details |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for line in lines:
        details = "; ".join(f"{k}: {v}" for k, v in line.details.items())
        out.append(
            f"| {_cell(line.area)} | {_cell(line.what)} | {_cell(line.promise)} | {line.tried:,} | "
            f"{line.failed:,} | {line.seconds:,.0f} | {_cell(details)} |"
        )
    new: list[str] = []
    seen: set[str] = set()
    out += ["", "## Failures of this run", ""]
    failing = [line for line in lines if line.failed]
    if not failing:
        out.append("None.")
    for line in failing:
        for failure in line.failures:
            limit = match(failure)
            label = f"known open limit: *{limit.title}*" if limit else "**new: not triaged yet**"
            if limit is None:
                new.append(failure)
            else:
                seen.add(limit.title)
            out.append(f"- {line.area} — {line.what}: `{_cell(failure[:400])}` ({label})")
    out += [
        "",
        "## Open limits",
        "",
        "Failures found by this campaign that are not fixed yet, each with its "
        "reproduction and a strict-xfail regression test that turns red once it is fixed.",
        "",
    ]
    if not OPEN_LIMITS:
        out += ["None open.", ""]
    for limit in OPEN_LIMITS:
        status = "seen in this run" if limit.title in seen else "not exercised or not seen in this run"
        out += _limit_lines(limit, [f"- suggested fix: {limit.fix}", f"- {status}"])
    out += ["## Found by this campaign and fixed", ""]
    for limit, commit in FIXED:
        out += _limit_lines(limit, [f"- fixed in {commit}: {limit.fix}"])
    out += [
        "## What the promises mean",
        "",
        "- *kv file store*: two writer processes share one store on disk; each is SIGKILLed at a random "
        "moment, 15 % of the time while still opening it. After every kill SQLite's `integrity_check` must "
        "say `ok`, every key must read back through the store, and each key must hold what the writer's "
        "acknowledged ops give (the op it had begun and not yet acknowledged may or may not be there).",
        "- *expiry events* (every backend with them): three processes per cycle share one store with "
        "`expiry_events: true`, each writing entries with TTLs of 5-150 ms, reading its own expired "
        "entries back, and sweeping; each is SIGKILLed at a random moment. On Redis and DynamoDB "
        "(dynalite) the server is meanwhile SIGKILLed and restarted and connections through the fault "
        "proxy are reset and replies cut; on memcached only the connections are broken (a restart "
        "empties it, which loses every event by design). Then one more store drains the rest. No "
        "`state:expired` may come for an entry nobody wrote, each must carry the value written, no read "
        "may return an entry past its deadline, nothing may be left (kv: no row; Redis: no field), and "
        "every acknowledged entry's event must be delivered (claims are leases: none lost). Every "
        "delivery of one expiry must carry the same `expiry_id` (a receiver deduplicating on it sees "
        "each expiry once), and an expiry may be delivered again only after a delivery its sweeper "
        "never acknowledged (killed between its handlers and `ack_expired`, or the acknowledgement "
        "failed: at least once, decision 0017); such raw redeliveries are counted in the details.",
        "- *servers*: writer threads append their own sequence numbers (`update` with an `append` op) "
        "and store them (`set`) through one client while a proxy between client and server resets "
        "connections, drops replies after the request went through, and stalls past the client timeout, "
        "and the server is SIGKILLed and restarted. Afterwards a fresh client reads everything directly: "
        "no number may appear twice (applied twice), every acknowledged number must be there "
        "(memcached: those acknowledged after its last restart, since a restart empties it), no call that "
        "failed with an error other than `UnknownOutcomeError` may have been applied, no call may raise "
        "anything but a `StateError` or hang, and after each fault a call through the same client object "
        "must succeed again within the stated time.",
        "- *transactions*: writers run `state::transact` — a transfer of 1 unit between two of 10 "
        "accounts plus an append of its number to the writer's log entry (three writes), or a set of "
        "the writer's three group keys — while kv writer processes are SIGKILLed, or (Redis) the "
        "server is killed and restarted and connections are reset, cut and stalled (DynamoDB on moto: "
        "the same without restarts, as moto keeps its data in memory). Afterwards every "
        "balance must equal the start plus exactly the logged transfers (no half-applied transfer, "
        "total exact), no number may be logged twice, each group's keys must agree, an acknowledged "
        "transaction must be there, and one that failed with a documented error other than an "
        "unknown outcome must not.",
        "- *state machine*: the conformance suite's own Hypothesis machine (`iii_state_conformance.suite."
        "model`), run with many more programs than the suite does.",
        "- *fuzz*: Hypothesis-generated requests, ops, stored bytes (read, exported and written over) "
        "and config files (see `bench/faults/fuzz.py`).",
        "",
    ]
    if new:
        out += ["## New failures", "", *[f"- `{_cell(f[:600])}`" for f in new], ""]
    return "\n".join(out).rstrip() + "\n"


def _limit_lines(limit: Limit, extra: list[str]) -> list[str]:
    return [
        f"### {limit.title}",
        "",
        f"- where: {limit.where}",
        f"- regression test: `{limit.test}`",
        *extra,
        "",
        "```python",
        limit.reproduction,
        "```",
        "",
    ]


def new_failures(lines: list[Line]) -> list[str]:
    return [f for line in lines for f in line.failures if match(f) is None]

"""Transactions through faults: bank transfers and multi-key writes while servers are killed and
connections broken (Redis, and DynamoDB on moto, through the fault proxy) or writer processes
are SIGKILLed (kv file).

Each transaction ``seq`` either moves 1 unit between two of ``ACCOUNTS`` accounts and appends
``seq`` to its writer's log entry — three writes in one ``state::transact`` — or sets the three
keys of its writer's group to ``{"seq": seq}``. Afterwards the store is read directly and must
show no half-applied transaction: every balance equals the start plus exactly the transfers in
the logs (so the total is exact), no ``seq`` is logged twice, each group's keys agree; and an
acknowledged transaction is there, one that failed with a documented error other than
``UnknownOutcomeError`` (or a ``ConflictError``) is not.

``python -m bench.faults.transactions child DIR LOG WRITER START`` is the kv writer process.
"""

from __future__ import annotations

import dataclasses
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iii_state_core import ConflictError, StateError, StateStore, UnknownOutcomeError, open_store

from .backends import BACKENDS, TIMEOUT
from .outcome import Line, start_kill_run
from .proxy import FaultProxy
from .server_faults import FAULTS, HANG_S, Fault, _inject, drive, faults_text

SCOPE = "faults-tx"
ACCOUNTS = 10
START = 1000
GROUP = ("x", "y", "z")


@dataclass
class Tx:
    writer: str
    seq: int
    #: ``(from, to)`` of a transfer; ``None`` for a group write
    move: tuple[int, int] | None
    outcome: str = ""  # ok | conflict | unknown | failed | undocumented | begun (killed meanwhile)
    error: str = ""
    seconds: float = 0.0


def plan_for(writer: str, seq: int) -> tuple[list[dict[str, Any]], tuple[int, int] | None]:
    """The operations of transaction ``seq`` (a pure function of it, so a log names it)."""
    rng = random.Random(f"{writer}/{seq}")
    if seq % 4 == 3:
        return [_op("set", f"{writer}-g-{k}", value={"seq": seq}) for k in GROUP], None
    a, b = rng.sample(range(ACCOUNTS), 2)
    ops = [
        _op("update", f"acct{a}", ops=[{"type": "increment", "path": "", "by": -1}]),
        _op("update", f"acct{b}", ops=[{"type": "increment", "path": "", "by": 1}]),
        _op("update", f"{writer}-log", ops=[{"type": "append", "path": "seqs", "value": seq}]),
    ]
    return ops, (a, b)


def _op(op: str, key: str, **fields: Any) -> dict[str, Any]:
    return {"op": op, "scope": SCOPE, "key": key, **fields}


def attempt(store: StateStore, tx: Tx) -> None:
    ops, _ = plan_for(tx.writer, tx.seq)
    started = time.monotonic()
    try:
        tx.outcome = "ok" if store.transact(ops).committed else "conflict"
    except ConflictError as exc:
        tx.outcome, tx.error = "conflict", str(exc)[:200]
    except UnknownOutcomeError as exc:
        tx.outcome, tx.error = "unknown", str(exc)[:200]
    except StateError as exc:
        tx.outcome, tx.error = "failed", f"{exc.code}: {str(exc)[:200]}"
    except Exception as exc:
        tx.outcome, tx.error = "undocumented", f"{type(exc).__name__}: {str(exc)[:200]}"
    tx.seconds = time.monotonic() - started


def seed_accounts(store: StateStore) -> None:
    store.set_many(SCOPE, {f"acct{i}": START for i in range(ACCOUNTS)})


def check(final: dict[str, Any], txs: list[Tx], writers: list[str], line: Line, durable: bool = True) -> int:
    """Every promise of the module docstring against ``final`` (every key as stored); returns how
    many transfers the store shows applied."""
    balances = {f"acct{i}": START for i in range(ACCOUNTS)}
    logged: set[tuple[str, int]] = set()
    transfers = 0
    for writer in writers:
        seqs = (final.get(f"{writer}-log") or {}).get("seqs", [])
        for seq in {s for s in seqs if seqs.count(s) > 1}:
            line.fail(f"{writer}: transaction #{seq} applied {seqs.count(seq)} times")
        for seq in set(seqs):
            logged.add((writer, seq))
            _, move = plan_for(writer, seq)
            if move is None:
                line.fail(f"{writer}: group write #{seq} found in the transfer log")
                continue
            balances[f"acct{move[0]}"] -= 1
            balances[f"acct{move[1]}"] += 1
            transfers += 1
        group = [final.get(f"{writer}-g-{k}") for k in GROUP]
        if any(g != group[0] for g in group):
            line.fail(f"{writer}: group keys disagree (half-applied multi-key write): {group}")
        if group[0] is not None:
            logged.add((writer, group[0]["seq"]))
    stored = {k: final.get(k) for k in balances}
    if stored != balances:
        line.fail(
            f"balances {stored} (total {sum(v or 0 for v in stored.values())}) are not the start plus "
            f"the {transfers} logged transfers: {balances}"
        )
    acked_groups = [t for t in txs if t.move is None and t.outcome == "ok"]
    last_group = {w: max((t.seq for t in acked_groups if t.writer == w), default=-1) for w in writers}
    for tx in txs:
        there = (tx.writer, tx.seq) in logged
        if tx.outcome == "undocumented":
            line.fail(f"{tx.writer}#{tx.seq} raised an undocumented error: {tx.error}")
        if tx.seconds > HANG_S:
            line.fail(f"{tx.writer}#{tx.seq} took {tx.seconds:.1f} s (a hang)")
        if tx.outcome in ("failed", "conflict") and there and tx.move is not None:
            line.fail(f"{tx.writer}#{tx.seq} failed ({tx.error}) but was applied")
        if tx.outcome == "ok" and durable and tx.move is not None and not there:
            line.fail(f"{tx.writer}#{tx.seq}: acknowledged transfer lost")
    for writer, seq in last_group.items():
        group = final.get(f"{writer}-g-x")
        if seq >= 0 and durable and (group is None or group["seq"] < seq):
            line.fail(f"{writer}: acknowledged group write #{seq} lost (stored {group})")
    return transfers


# -- Redis (and any server backend): server kills, resets, cut replies, stalls -----------------


def _writer(name: str, store: StateStore, stop: threading.Event, txs: list[Tx]) -> None:
    seq = 0
    while not stop.is_set():
        tx = Tx(name, seq, plan_for(name, seq)[1])
        attempt(store, tx)
        txs.append(tx)
        seq += 1
        if tx.outcome not in ("ok", "conflict"):
            time.sleep(0.02)


def _moto_server() -> Any:
    from iii_state_testsupport import MotoServer

    for name, value in (("AWS_ACCESS_KEY_ID", "faults"), ("AWS_SECRET_ACCESS_KEY", "faults")):
        os.environ.setdefault(name, value)
    return MotoServer()


#: DynamoDB transactions need moto (dynalite has no TransactWriteItems). moto keeps its tables in
#: memory, so its server is never restarted: connections are reset, cut and stalled.
MOTO = dataclasses.replace(
    BACKENDS["dynamodb"], name="dynamodb", server=_moto_server, description="moto, in memory: no restarts"
)
NO_RESTART: tuple[str, ...] = tuple(k for k in FAULTS if k != "restart")


def run_server(name: str, seconds: float, threads: int = 3, seed: int | None = None) -> Line:
    """``threads`` writers run transactions through the fault proxy for ``seconds`` while the
    server is killed and restarted (not moto) and connections are reset, cut and stalled.

    :param name: ``redis``, or ``dynamodb`` (run on moto)."""
    backend = MOTO if name == "dynamodb" else BACKENDS[name]
    kinds = NO_RESTART if name == "dynamodb" else FAULTS
    seed = random.randrange(2**32) if seed is None else seed
    line = Line(
        backend.name,
        "transactions (transfers, multi-key writes) while "
        + ("connections are reset, cut, stalled" if name == "dynamodb" else
           "the server is killed/restarted and connections are reset, cut, stalled")
        + f" ({backend.description})",
        "0 half-applied (every balance = start + logged transfers, group keys agree), 0 applied twice, "
        "0 acknowledged lost, 0 failed-but-applied, only StateError, no hang",
    )
    started = time.monotonic()
    server = backend.server()
    server.start()
    faults: list[Fault] = []
    txs: list[Tx] = []
    writers = [f"w{t}" for t in range(threads)]
    try:
        with FaultProxy(server.port) as proxy:
            run_id = f"faults-tx-{secrets.token_hex(3)}"
            store = open_store(adapter=backend.adapter, adapter_config=backend.config(proxy.address, run_id))
            if not store.capabilities.transactions:
                store.close()
                line.details["not run"] = f"the {name} adapter here declares no transactions"
                return line
            seed_accounts(store)
            stop, stop_faults = threading.Event(), threading.Event()
            logs: list[list[Tx]] = [[] for _ in writers]
            workers = [
                threading.Thread(target=_writer, args=(w, store, stop, logs[i]), daemon=True)
                for i, w in enumerate(writers)
            ]
            injector = threading.Thread(
                target=_inject,
                args=(server, proxy, stop_faults, faults, random.Random(seed), kinds, 0.75),
                daemon=True,
            )
            drive(workers, injector, seconds, 3 * TIMEOUT + 2, stop_faults, stop, line)
            txs = [tx for log in logs for tx in log]
            with open_store(
                adapter=backend.adapter, adapter_config=backend.config(f"127.0.0.1:{server.port}", run_id)
            ) as direct:
                final = {k: direct.get(SCOPE, k) for k in direct.list_keys(SCOPE)}
            applied = check(final, txs, writers, line, backend.durable)
            store.close()
    finally:
        server.stop()
    line.tried = len(txs)
    line.details.update(
        {
            "seed": seed,
            "committed": sum(tx.outcome == "ok" for tx in txs),
            "transfers found applied": applied,
            "lost the race (nothing applied)": sum(tx.outcome == "conflict" for tx in txs),
            "reported unknown outcome": sum(tx.outcome == "unknown" for tx in txs),
            "failed with a documented error": sum(tx.outcome == "failed" for tx in txs),
            "faults": faults_text(faults),
        }
    )
    line.seconds = time.monotonic() - started
    return line


# -- kv file store: writer processes SIGKILLed --------------------------------------------------

KV_WRITERS = ("w0", "w1")


def _kv_config(directory: str) -> dict[str, Any]:
    return {"store_method": "file_based", "file_path": directory}


def child(directory: str, log_path: str, writer: str, start: int) -> None:
    """The kv writer process: ``B seq`` before each transaction, ``A seq outcome`` after."""
    store = open_store(adapter="kv", adapter_config=_kv_config(directory))
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    print("ready", flush=True)
    seq = start
    while True:
        tx = Tx(writer, seq, plan_for(writer, seq)[1])
        os.write(log, f"B {seq}\n".encode())
        attempt(store, tx)
        os.write(log, f"A {seq} {tx.outcome}\n".encode())
        seq += 1


def _parse(log: Path, writer: str) -> list[Tx]:
    txs: dict[int, Tx] = {}
    if log.exists():
        for text in log.read_text().splitlines(keepends=True):
            parts = text.split()
            if not text.endswith("\n") or len(parts) < 2 or not parts[1].isdigit():
                continue
            seq = int(parts[1])
            tx = txs.setdefault(seq, Tx(writer, seq, plan_for(writer, seq)[1], outcome="begun"))
            if parts[0] == "A" and len(parts) > 2:
                tx.outcome = parts[2]
    return list(txs.values())


def run_kv(kills: int, seed: int | None = None) -> Line:
    """SIGKILL kv writer processes running transactions ``kills`` times; check after each cycle."""
    line = Line(
        "kv file store",
        f"transactions (transfers, multi-key writes) in writer processes SIGKILLed at random moments "
        f"({len(KV_WRITERS)} concurrent writers per cycle)",
        "0 half-applied (every balance = start + logged transfers, group keys agree), 0 applied twice, "
        "0 acknowledged lost",
    )
    run = start_kill_run(line, seed, "iii-faults-kv-tx-")
    with open_store(adapter="kv", adapter_config=_kv_config(run.directory)) as store:
        seed_accounts(store)
    every: list[Tx] = []
    next_seq = dict.fromkeys(KV_WRITERS, 0)
    cycle = applied = 0
    root = Path(__file__).resolve().parents[2]
    while line.tried < kills:
        cycle += 1
        procs = {}
        for w in KV_WRITERS:
            log = run.logs / f"{w}-{cycle}.log"
            procs[w] = (
                subprocess.Popen(
                    [sys.executable, "-m", "bench.faults.transactions", "child", run.directory, str(log), w,
                     str(next_seq[w])],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=root,
                    env={**os.environ, "III_STATE_PLUGINS": "kv"},
                ),
                log,
            )  # fmt: skip
        for w in run.rng.sample(KV_WRITERS, len(KV_WRITERS)):
            proc = procs[w][0]
            if run.rng.random() >= 0.15 and proc.stdout is not None:
                proc.stdout.readline()  # "ready"
            time.sleep(run.rng.uniform(0.0, 0.4))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        line.tried += len(KV_WRITERS)
        for w, (proc, log) in procs.items():
            if proc.returncode != -signal.SIGKILL:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                line.fail(f"cycle {cycle}: writer {w} exited {proc.returncode} before the kill: {err[-300:]}")
            txs = _parse(log, w)
            every += txs
            next_seq[w] = max((t.seq for t in txs), default=next_seq[w] - 1) + 1
        try:
            with open_store(adapter="kv", adapter_config=_kv_config(run.directory)) as store:
                final = {k: store.get(SCOPE, k) for k in store.list_keys(SCOPE)}
        except Exception as exc:
            line.fail(f"cycle {cycle}: store unreadable after the kill: {type(exc).__name__}: {exc}")
            break
        before = line.failed
        applied = check(final, every, list(KV_WRITERS), line)
        if line.failed > before:
            line.failures[-1] += f" (cycle {cycle})"
            break
    return run.finish(
        line,
        {
            "transactions": len(every),
            "committed": sum(t.outcome == "ok" for t in every),
            "in flight at a kill": sum(t.outcome == "begun" for t in every),
            "transfers found applied": applied,
            "cycles": cycle,
        },
    )


if __name__ == "__main__":
    if sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))

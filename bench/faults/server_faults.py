"""Servers killed and restarted, and connections reset, cut and stalled through a loopback proxy,
while writer threads keep writing.

Every write appends its own sequence number to a list (``update`` with an ``append`` op) or
stores it (``set``), so the final data shows exactly which writes were applied. Promises
checked: no write applied twice (no number twice in a list); no acknowledged write lost where
the backend is durable (every acknowledged number present; for a non-durable one, every number
acknowledged after its last restart); a write that failed with an error other than
``UnknownOutcomeError`` was not applied; only documented errors (``StateError`` subclasses);
no call hangs; and after every fault the same client object works again without help.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iii_state_core import StateError, StateStore, UnknownOutcomeError, open_store

from .backends import BACKENDS, TIMEOUT, Backend
from .outcome import Line
from .proxy import FaultProxy

SCOPE = "faults"
KEYS_PER_THREAD = 6
#: A call taking longer than this is a hang.
HANG_S = 6 * TIMEOUT + 10
#: After a fault, the client must have served a call again within this many seconds.
RECOVERY_S = 20.0


@dataclass
class Op:
    thread: int
    kind: str  # "append" or "set"
    key: str
    seq: int
    started: float
    ended: float = 0.0
    outcome: str = ""  # ok | unknown | failed | undocumented
    error: str = ""


@dataclass
class Fault:
    kind: str
    at: float
    #: when the fault was over (server back up, stall ended)
    over: float


#: Every fault kind, weighted by how often the injector picks it.
FAULTS: tuple[str, ...] = ("reset", "reset", "cut", "cut", "cut", "stall", "restart", "restart")


def _writer(
    tid: int, store: StateStore, stop: threading.Event, ops: list[Op], seed: int, retry_unknown: bool
) -> None:
    rng = random.Random(seed)
    seq = 0
    while not stop.is_set():
        seq += 1
        kind = "set" if rng.random() < 0.25 else "append"
        key = f"t{tid}-s" if kind == "set" else f"t{tid}-k{rng.randrange(KEYS_PER_THREAD)}"
        op = Op(tid, kind, key, seq, time.monotonic())
        try:
            for attempt in range(5 if retry_unknown else 1):
                try:
                    if kind == "set":
                        store.set(SCOPE, key, {"seq": seq})
                    else:
                        store.update(SCOPE, key, [{"type": "append", "path": "log", "value": seq}])
                    break
                except UnknownOutcomeError:
                    # the negative control: a client that resends a write whose reply was lost
                    if not retry_unknown or attempt == 4:
                        raise
            op.outcome = "ok"
        except UnknownOutcomeError as exc:
            op.outcome, op.error = "unknown", str(exc)[:200]
        except StateError as exc:
            op.outcome, op.error = "failed", f"{exc.code}: {str(exc)[:200]}"
        except Exception as exc:
            op.outcome, op.error = "undocumented", f"{type(exc).__name__}: {str(exc)[:200]}"
        op.ended = time.monotonic()
        ops.append(op)
        if op.outcome != "ok":
            time.sleep(0.02)  # a real caller backs off; spinning only fills the log


def faults_text(faults: list[Fault]) -> str:
    """How many faults of each kind a run injected, for its details line."""
    counts = {kind: sum(1 for f in faults if f.kind == kind) for kind in ("reset", "cut", "stall", "restart")}
    return ", ".join(f"{n} {k}s" for k, n in counts.items())


def drive(
    writers: list[threading.Thread],
    injector: threading.Thread,
    seconds: float,
    calm: float,
    stop_faults: threading.Event,
    stop: threading.Event,
    line: Line,
    recovered: Callable[[], bool] | None = None,
) -> None:
    """Run the writers under the injector for ``seconds``, then ``calm`` seconds without faults
    (every writer must get through again), then stop them; a writer still blocked fails ``line``.

    ``recovered``: whether a call has succeeded since the last fault ended. The calm lasts on
    until it has, up to :data:`RECOVERY_S` after the faults stopped, so a recovery check that
    fails has really waited that long (a loaded machine can take longer than a short calm to
    restart the server and reconnect)."""
    for t in writers:
        t.start()
    injector.start()
    time.sleep(seconds)
    stop_faults.set()
    injector.join(30)
    calm_from = time.monotonic()
    time.sleep(calm)
    while recovered is not None and not recovered() and time.monotonic() - calm_from < RECOVERY_S:
        time.sleep(0.05)
    stop.set()
    for t in writers:
        t.join(HANG_S)
        if t.is_alive():
            line.fail(f"writer thread {t.name} still blocked {HANG_S:.0f} s after the run ended")


def _inject(
    server: Any,
    proxy: FaultProxy,
    stop: threading.Event,
    faults: list[Fault],
    rng: random.Random,
    kinds: tuple[str, ...],
    every: float,
) -> None:
    while not stop.wait(rng.uniform(every / 2, every * 1.5)):
        kind = rng.choice(kinds)
        at = time.monotonic()
        if kind == "reset":
            proxy.reset()
        elif kind == "cut":
            proxy.cut_next_reply(rng.randint(1, 3))
        elif kind == "stall":
            proxy.stall(TIMEOUT + 0.5)  # past the client's timeout: its reply counts as lost
        else:
            server.kill()
            time.sleep(rng.uniform(0.1, 1.0))
            server.start()
        faults.append(Fault(kind, at, time.monotonic() + (TIMEOUT + 0.5 if kind == "stall" else 0.0)))


def _final_state(backend: Backend, server: Any, threads: int, run_id: str) -> dict[str, Any]:
    """Every key as stored, read over a fresh direct connection (no proxy)."""
    config = backend.config(f"127.0.0.1:{server.port}", run_id)
    with open_store(adapter=backend.adapter, adapter_config=config) as s:
        keys = [f"t{t}-k{k}" for t in range(threads) for k in range(KEYS_PER_THREAD)]
        return {key: s.get(SCOPE, key) for key in [*keys, *(f"t{t}-s" for t in range(threads))]}


def _check(backend: Backend, ops: list[Op], faults: list[Fault], final: dict[str, Any], line: Line) -> None:
    last_restart = max((f.over for f in faults if f.kind == "restart"), default=0.0)
    by_key: dict[str, list[Op]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
        if op.outcome == "undocumented":
            line.fail(f"{op.kind} {op.key}#{op.seq} raised an undocumented error: {op.error}")
        if op.ended - op.started > HANG_S:
            line.fail(f"{op.kind} {op.key}#{op.seq} took {op.ended - op.started:.1f} s (a hang)")
    for key, key_ops in by_key.items():
        stored = final.get(key)
        if key.endswith("-s"):
            applied = {stored["seq"]} if isinstance(stored, dict) and "seq" in stored else set()
        else:
            log = stored.get("log", []) if isinstance(stored, dict) else []
            applied = set(log)
            for seq in {s for s in log if log.count(s) > 1}:
                line.fail(f"{key}: write #{seq} applied {log.count(seq)} times")
        for op in key_ops:
            if op.outcome == "failed" and op.seq in applied:
                line.fail(
                    f"{key}#{op.seq} failed with '{op.error}' but was applied (an unknown outcome not "
                    "reported as such)"
                )
        if key.endswith("-s"):
            acked = [op for op in key_ops if op.outcome == "ok"]
            last = max(acked, key=lambda o: o.seq) if acked else None
            later = {
                op.seq for op in key_ops if last and op.seq > last.seq and op.outcome in ("ok", "unknown")
            }
            if (
                last
                and (backend.durable or last.started > last_restart)
                and not (applied & ({last.seq} | later))
            ):
                line.fail(f"{key}: acknowledged set #{last.seq} lost (stored {stored})")
            continue
        for op in key_ops:
            if (
                op.outcome == "ok"
                and (backend.durable or op.started > last_restart)
                and op.seq not in applied
            ):
                line.fail(f"{key}: acknowledged append #{op.seq} lost")


def _recoveries(ops: list[Op], faults: list[Fault], line: Line) -> tuple[int, float]:
    """For each fault: the time from its end to the next call that succeeded."""
    worst = 0.0
    recovered = 0
    ok_times = sorted(op.ended for op in ops if op.outcome == "ok")
    for fault in faults:
        after = next((t for t in ok_times if t > fault.over), None)
        if after is None or after - fault.over > RECOVERY_S:
            line.fail(f"no call succeeded within {RECOVERY_S:.0f} s after a {fault.kind}")
        else:
            recovered += 1
            worst = max(worst, after - fault.over)
    return recovered, worst


def run(
    name: str,
    seconds: float,
    threads: int = 3,
    seed: int | None = None,
    *,
    kinds: tuple[str, ...] = FAULTS,
    every: float = 0.75,
    calm: float = 3 * TIMEOUT + 2,
    retry_unknown: bool = False,
) -> list[Line]:
    """Break ``name``'s server and connections for ``seconds`` while ``threads`` writers write.

    :param kinds: the faults to pick from (repeat one to make it likelier).
    :param every: mean seconds between two faults.
    :param calm: seconds without faults at the end, in which every writer must get through.
    :param retry_unknown: a negative control: writers resend a write whose outcome was unknown
        and call it acknowledged, as a silently retrying client would; the check must catch it.
    :returns: the writes line and the recovery line.
    """
    backend = BACKENDS[name]
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    writes = Line(
        backend.name,
        f"writes while the server is killed/restarted and connections are reset, cut, "
        f"stalled ({backend.description})",
        "0 applied twice, 0 acknowledged lost"
        + ("" if backend.durable else " (since the last restart)")
        + ", 0 failed-but-applied, only StateError, no hang",
    )
    recovery = Line(
        backend.name,
        "faults after which the same client must work again on its own",
        f"a call succeeds within {RECOVERY_S:.0f} s of every fault",
    )
    started = time.monotonic()
    server = backend.server()
    server.start()
    try:
        with FaultProxy(server.port) as proxy:
            run_id = f"faults-{secrets.token_hex(3)}"
            store = open_store(adapter=backend.adapter, adapter_config=backend.config(proxy.address, run_id))
            store.set(SCOPE, "warm-up", True)
            stop, stop_faults = threading.Event(), threading.Event()
            logs: list[list[Op]] = [[] for _ in range(threads)]
            faults: list[Fault] = []
            workers = [
                threading.Thread(
                    target=_writer, args=(t, store, stop, logs[t], seed + t, retry_unknown), daemon=True
                )
                for t in range(threads)
            ]
            injector = threading.Thread(
                target=_inject, args=(server, proxy, stop_faults, faults, rng, kinds, every), daemon=True
            )

            def recovered() -> bool:
                last = max((fault.over for fault in faults), default=0.0)
                return any(op.outcome == "ok" and op.ended > last for log in logs for op in log[-20:])

            drive(workers, injector, seconds, calm, stop_faults, stop, writes, recovered)
            ops = [op for log in logs for op in log]
            final = _final_state(backend, server, threads, run_id)
            _check(backend, ops, faults, final, writes)
            recovered, worst = _recoveries(ops, faults, recovery)
            store.close()
    finally:
        server.stop()
    writes.tried = len(ops)
    writes.details.update(
        {
            "seed": seed,
            "acknowledged": sum(op.outcome == "ok" for op in ops),
            "reported unknown outcome": sum(op.outcome == "unknown" for op in ops),
            "failed with a documented error": sum(op.outcome == "failed" for op in ops),
            "faults": faults_text(faults),
            "connections through the proxy": proxy.counters.connections,
        }
    )
    recovery.tried = len(faults)
    recovery.details.update({"recovered": recovered, "slowest recovery s": round(worst, 2)})
    writes.seconds = recovery.seconds = time.monotonic() - started
    return [writes, recovery]

"""kv file store: writers SIGKILLed at random moments; after each kill the store must be intact
and hold every acknowledged write (contract § Backends: crash-safe).

Each cycle starts two writer processes (``kv_writer``) on disjoint keys of one store, kills each
at its own random moment (some while still opening the store), then checks from this process:
SQLite's ``integrity_check``, every key readable through the store, and each key's value equal
to the state its writer's acknowledged ops give, or that state plus the one op it had begun.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from iii_state_core import open_store

from . import kv_writer
from .outcome import Line, start_kill_run

WRITERS = ("w0", "w1")
SCOPE = "faults"


def _parse(log: Path) -> tuple[list[int], int | None]:
    """Acknowledged seqs in order, and the seq begun but not acknowledged (if any)."""
    acked: list[int] = []
    begun: int | None = None
    if log.exists():
        for line in log.read_text().splitlines(keepends=True):
            if not line.endswith("\n"):
                continue  # cut short by the kill (never seen: each line is one small write)
            kind, _, number = line.strip().partition(" ")
            if not number.isdigit():
                continue
            if kind == "B":
                begun = int(number)
            elif kind == "A":
                acked.append(int(number))
                begun = None
    return acked, begun


def _spawn(directory: str, log: Path, writer: str, start: int, lie: bool) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.faults.kv_writer", directory, str(log), writer, str(start)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
        # start fast: load only the kv plugin
        env={**os.environ, "III_STATE_PLUGINS": "kv", "III_FAULTS_ACK_EARLY": "1" if lie else "0"},
    )


def _kill_at_random(proc: subprocess.Popen[bytes], rng: random.Random) -> str:
    """SIGKILL ``proc``: 15 % of the time while it opens the store, else during its writes."""
    if rng.random() < 0.15:
        time.sleep(rng.uniform(0.0, 0.25))
        moment = "while opening"
    else:
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready" (or EOF if it died)
        time.sleep(rng.uniform(0.0, 0.3))
        moment = "while writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    return moment


def _read_all(directory: str) -> dict[str, Any]:
    with open_store(adapter="kv", adapter_config={"store_method": "file_based", "file_path": directory}) as s:
        return {key: s.get(SCOPE, key) for key in s.list_keys(SCOPE)}


def run(kills: int, seed: int | None = None, *, ack_early: bool = False) -> Line:
    """SIGKILL writers ``kills`` times in all and check the store after every cycle.

    :param ack_early: a negative control: writers log the acknowledgement before the write, so
        a kill in between loses an "acknowledged" write and the check must say so.
    """
    line = Line(
        "kv file store",
        f"writer processes SIGKILLed at random moments ({len(WRITERS)} concurrent writers per cycle)",
        "0 corrupt stores, 0 acknowledged writes lost",
    )
    run = start_kill_run(line, seed, "iii-faults-kv-")
    rng, directory, logs = run.rng, run.directory, run.logs
    state: dict[str, Any] = {}
    next_seq = dict.fromkeys(WRITERS, 0)
    acked_total = applied_in_flight = 0
    cycle = 0
    while line.tried < kills:
        cycle += 1
        procs = {}
        for writer in WRITERS:
            log = logs / f"{writer}-{cycle}.log"
            procs[writer] = (_spawn(directory, log, writer, next_seq[writer], ack_early), log)
        order = list(WRITERS)
        rng.shuffle(order)
        moments = {w: _kill_at_random(procs[w][0], rng) for w in order}
        line.tried += len(WRITERS)
        for writer, (proc, _log) in procs.items():
            stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            if proc.returncode not in (-signal.SIGKILL,):
                line.fail(
                    f"cycle {cycle}: writer {writer} exited {proc.returncode} before the kill: "
                    + stderr[-300:]
                )
        try:
            if not (Path(directory) / "state.sqlite3").exists():
                # every writer died before it created the store: nothing can have been acknowledged
                actual = {}
            else:
                check = sqlite3.connect(f"file:{directory}/state.sqlite3?mode=ro", uri=True)
                verdict = check.execute("PRAGMA integrity_check").fetchone()[0]
                check.close()
                if verdict != "ok":
                    line.fail(f"cycle {cycle} (seed {seed}): integrity_check says {verdict!r}")
                actual = _read_all(directory)
        except Exception as exc:
            line.fail(
                f"cycle {cycle} (seed {seed}): store unreadable after the kill: {type(exc).__name__}: {exc}"
            )
            break
        for writer, (_proc, log) in procs.items():
            acked, begun = _parse(log)
            acked_total += len(acked)
            expected = {k: v for k, v in state.items() if k.startswith(f"{writer}-")}
            for s in acked:
                kv_writer.apply(expected, writer, s)
            mine = {k: v for k, v in actual.items() if k.startswith(f"{writer}-")}
            candidates = [expected]
            if begun is not None:
                with_pending = json.loads(json.dumps(expected))
                kv_writer.apply(with_pending, writer, begun)
                candidates.append(with_pending)
            if mine == candidates[0]:
                pass
            elif len(candidates) > 1 and mine == candidates[1]:
                applied_in_flight += 1
            else:
                line.fail(
                    f"cycle {cycle} (seed {seed}), writer {writer} killed {moments[writer]}: store holds "
                    f"{mine}, acknowledged ops give {expected}"
                    + (f" (op {begun} was in flight)" if begun else "")
                )
            state = {k: v for k, v in state.items() if not k.startswith(f"{writer}-")} | mine
            last = max(acked + ([begun] if begun is not None else []), default=next_seq[writer] - 1)
            next_seq[writer] = last + 1
    return run.finish(
        line,
        {
            "acknowledged writes checked": acked_total,
            "in-flight writes found applied": applied_in_flight,
            "cycles": cycle,
        },
    )

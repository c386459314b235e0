"""kv file store, expiry events under SIGKILL (contract § Expiry): processes that write expiring
entries and sweep them are killed at random moments; afterwards a last store drains what is left.

Checked from the processes' logs (``kv_sweeper``) and the drain:

- no expiry event is delivered twice, and none for an entry nobody wrote;
- every acknowledged entry's event is delivered, except entries a killed process had claimed
  and not yet handed to its handler: ``take_expired`` deletes in one statement and the handler
  runs after it, so a kill inside that window loses those events (at most once under SIGKILL).
  Each loss must be explained by such a kill, from the killed process's log;
- no read returns an entry past its deadline, and the drained store holds no expired row.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import kv_sweeper
from .outcome import Line, start_kill_run

PROCESSES = 3


@dataclass
class _Log:
    """What one sweeper process's log says."""

    begun: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    delivered: list[tuple[str, str]] = field(default_factory=list)
    read_back: list[str] = field(default_factory=list)
    #: Events a kill may have lost: those of an unfinished sweep (``None``: unknown, a kill
    #: between ``S`` and ``T``; the claim may have committed).
    open_claims: int | None = 0


def _parse(path: Path) -> _Log:
    log = _Log()
    pending: int | None = 0  # taken but not yet delivered, in the current sweep
    for line in path.read_text().splitlines(keepends=True) if path.exists() else []:
        if not line.endswith("\n"):
            continue
        kind, _, rest = line.rstrip("\n").partition(" ")
        if kind == "B":
            log.begun.add(rest)
        elif kind == "W":
            log.acked.add(rest.split(" ")[0])
        elif kind == "S":
            pending = None
        elif kind == "T":
            pending = int(rest)
        elif kind == "D":
            key, _, value = rest.partition(" ")
            log.delivered.append((key, value))
            pending = None if pending is None else pending - 1
        elif kind == "X":
            log.read_back.append(rest)
    log.open_claims = pending
    return log


def _spawn(directory: str, log: Path, name: str, double: bool) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.faults.kv_sweeper", directory, str(log), name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "III_STATE_PLUGINS": "kv", "III_FAULTS_EXPIRY_DOUBLE": "1" if double else "0"},
    )


def _drain(directory: str, seconds: float) -> list[tuple[str, str]]:
    """Open one more store with expiry events, let it deliver what is left, close it."""
    from iii_state_core import open_store

    got: list[tuple[str, str]] = []
    with open_store(kv_sweeper._config(directory)) as store:
        store.on_change(
            lambda e: got.append((e.key, json.dumps(e.old_value))),
            scope=kv_sweeper.SCOPE,
            condition=lambda e: e.event_type == "state:expired",
        )
        time.sleep(seconds)
        left = store.list_keys(kv_sweeper.SCOPE)
    if left:
        got.append(("<listed after the drain>", json.dumps(left[:5])))
    return got


def run(kills: int, seed: int | None = None, *, double: bool = False) -> Line:
    """SIGKILL sweeping writers ``kills`` times in all, then drain and check every expiry.

    :param double: a negative control: sweepers deliver each taken entry twice, and the check
        must say so.
    """
    line = Line(
        "kv file store",
        f"expiry events: processes writing expiring entries and sweeping them SIGKILLed at random "
        f"moments ({PROCESSES} per cycle)",
        "0 expiry events doubled, 0 lost except a claimed batch of a killed sweeper, 0 expired reads",
    )
    run = start_kill_run(line, seed, "iii-faults-expiry-")
    rng, started, directory, logs = run.rng, run.started, run.directory, run.logs
    cycle = 0
    while line.tried < kills:
        cycle += 1
        names = [f"p{cycle}-{i}" for i in range(PROCESSES)]
        procs = [(_spawn(directory, logs / f"{name}.log", name, double), name) for name in names]
        for proc, _name in procs:
            assert proc.stdout is not None
            proc.stdout.readline()  # "ready" (or EOF if it died)
        for proc, name in sorted(procs, key=lambda _: rng.random()):
            time.sleep(rng.uniform(0.05, 0.4))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            line.tried += 1
            if proc.returncode != -signal.SIGKILL:
                stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                line.fail(f"cycle {cycle}: {name} exited {proc.returncode} before the kill: {stderr[-300:]}")
    drained = _drain(directory, (kv_sweeper.MAX_TTL_MS + 1500) / 1000)
    parsed = [_parse(path) for path in sorted(logs.iterdir())]
    delivered = [d for log in parsed for d in log.delivered] + drained
    counts = Counter(key for key, _ in delivered)
    begun = set().union(*(log.begun for log in parsed))
    acked = set().union(*(log.acked for log in parsed))
    for key, n in counts.items():
        if n > 1:
            line.fail(f"seed {seed}: the expiry of {key} was delivered {n} times")
        if key not in begun:
            line.fail(f"seed {seed}: an expiry event for {key}, which nobody wrote")
    for key, value in delivered:
        if key in begun and value != json.dumps(key):
            line.fail(f"seed {seed}: the expiry of {key} carried {value}, not the value written")
    for log in parsed:
        for key in log.read_back:
            line.fail(f"seed {seed}: {key} was read back after its deadline")
    lost = sorted(acked - set(counts))
    unknown = any(log.open_claims is None for log in parsed)
    explained = sum(log.open_claims or 0 for log in parsed)
    if lost and not unknown and len(lost) > explained:
        line.fail(f"seed {seed}: {len(lost)} expiry events lost, {explained} explained by kills: {lost[:5]}")
    raw = sqlite3.connect(f"file:{directory}/state.sqlite3?mode=ro", uri=True)
    rows = (
        raw.execute("SELECT count(*) FROM entries").fetchone()[0]
        + raw.execute("SELECT count(*) FROM expired").fetchone()[0]
    )
    raw.close()
    if rows:
        line.fail(f"seed {seed}: {rows} expired rows left in the file after the drain")
    line.details.update(
        {
            "entries acknowledged": len(acked),
            "expiry events delivered": len(delivered),
            "lost to a kill inside a sweep": len(lost),
            "cycles": cycle,
        }
    )
    line.seconds = time.monotonic() - started
    if line.failed:
        line.details["store kept for inspection"] = directory
    else:
        shutil.rmtree(directory, ignore_errors=True)
    return line

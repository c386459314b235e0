"""The worker's invocations/s at two revisions, in the same run: is the new one unchanged within noise?

``python -m bench.worker_ab [--old REV] [--new REV] [--rounds N] [--seconds S] [--smoke]``

Three processes each serve the state functions through a ``StateWorker`` to the same fake iii
0.25 engine (``tests/worker/engine_peer.py``) over a loopback WebSocket, on the in-memory kv
store: one at the new revision (default: this working tree), two at the old one (default: the
last commit before issue 15's work). Each revision's ``iii_state_core`` and kv plugin are taken
with ``git archive`` into a temporary directory put first on the child's ``PYTHONPATH``; the
bench code, the fake engine and iii-sdk are this tree's and the same on every side. Each child
says which core it loaded and the run stops if it is not the one asked for.

Per operation, the three sides take turns in short rounds (the order rotates each round), so a
burst of load from elsewhere hits all of them alike. Per round it forms the ratios new ÷ old and
old2 ÷ old (two processes of the same code: the A-vs-A noise floor) and prints the median of each
side's ops/s, the median per-round ratio with a 90 % bootstrap interval, the process CPU time per
call (time other processes take does not count, though sharing caches and cores still sways it)
and a verdict:

- **unchanged within noise** when new ÷ old's interval reaches into the band 1 ± n, where n is how
  far old2 ÷ old's interval (the same statistic over the same rounds, where nothing changed)
  reaches from 1;
- **slower** / **faster** when the whole interval lies below / above that band (**costlier** /
  **cheaper** for CPU per call: above / below). A band wider than 1 ± 0.10 is flagged: such a run
  (a loaded machine) cannot tell a 10 % change from noise; rerun quieter or with more rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import statistics
import subprocess
import sys
import tempfile
import threading
from contextlib import AbstractContextManager as ContextManager
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.run import revisions
from bench.run.machine import load
from bench.run.measuring import interval
from bench.run.revisions import BenchError, revision_label

REPO = Path(__file__).resolve().parents[1]
#: The last commit before issue 15's work (f27a8d6, 2026-11-29 16:18 UTC, the end of that
#: session): the next commit, 96b3b81, is issue 15's first ("the reference worker's logic as
#: pure plans"), and no worker code changed between the 2026-11-29 worker table and it.
OLD_REV = "f27a8d604affc1370723b87073720ad09b1ff343"
#: What each revision contributes: its core and its kv plugin (the store under the worker).
PACKAGES = ("iii_state_core", "plugins/kvfile/iii_state_kvfile")
#: Operation label -> the child's op name. One at a time, then 200 in flight.
OPERATIONS = {
    "set (one at a time)": "set",
    "get (one at a time)": "get",
    "update (one at a time)": "update",
    "update (200 in flight)": "update_in_flight",
}
#: A noise band wider than 1 ± this says the run could not resolve a change of that size.
COARSE = 0.10


@dataclass(frozen=True)
class Settings:
    rounds: int
    seconds: float
    in_flight_calls: int
    #: One untimed round per operation and side first (caches, the store's keys).
    warm_up: bool = True


FULL = Settings(rounds=21, seconds=0.25, in_flight_calls=600)
SMOKE = Settings(rounds=3, seconds=0.03, in_flight_calls=200, warm_up=False)


# -- the revisions' code ---------------------------------------------------------------------


def revision_tree(rev: str | None) -> ContextManager[Path]:
    """A directory holding :data:`PACKAGES` as in ``rev``, or this working tree (``None``)."""
    return revisions.revision_tree(rev, PACKAGES, "iii-worker-ab-")


class Side:
    """One child process (``bench/run/worker_rounds.py``) serving one revision's worker."""

    def __init__(self, label: str, tree: Path, workdir: Path, timeout: float) -> None:
        self.label = label
        self.tree = tree
        self.timeout = timeout
        self.home = workdir / label
        self.home.mkdir()
        paths = [tree, tree / "plugins" / "kvfile", REPO, REPO / "tests" / "worker"]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(dict.fromkeys(map(str, paths))),
            "III_STATE_PLUGINS": "kv",
            "HOME": str(self.home),  # the SDK writes a marker under $HOME
            "OTEL_ENABLED": "false",  # and would dial an OpenTelemetry collector
        }
        self.stderr_path = self.home / "stderr"
        self._stderr = self.stderr_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.run.worker_rounds"],
            cwd=self.home,  # not the repo: its core must not shadow the revision's
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
        )  # fmt: skip
        self._lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put("")  # the child closed its stdout

    def _answer(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise BenchError(f"the {self.label} worker did not answer within {timeout:.0f} s") from None
        if not line:
            self.process.wait(5)
            tail = self.stderr_path.read_text().strip().splitlines()[-1:]
            raise BenchError(f"the {self.label} worker exited ({self.process.returncode}): {tail}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ready(self) -> None:
        """Wait for the child to serve, and check it loaded this side's core and kv plugin."""
        loaded = self._answer(self.timeout)
        for name, path in loaded.items():
            if not Path(path).resolve().is_relative_to(self.tree.resolve()):
                raise BenchError(f"the {self.label} worker loaded its {name} from {path}, not {self.tree}")

    def round(self, request: dict[str, Any]) -> dict[str, float]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._answer(self.timeout)

    def close(self) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            try:
                self.process.stdin.write(json.dumps({"op": "stop"}) + "\n")
                self.process.stdin.close()
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._stderr.close()


# -- statistics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One operation's rounds: per side ("old", "new", "old2"), ops/s and process CPU µs per call."""

    operation: str
    ops: dict[str, list[float]]
    cpu: dict[str, list[float]]


@dataclass(frozen=True)
class Verdict:
    """new ÷ old and old2 ÷ old of one metric, per round: medians, 90 % intervals, the call."""

    ratio: float
    low: float
    high: float
    aa_ratio: float
    aa_low: float
    aa_high: float

    @property
    def noise(self) -> float:
        """n: how far old2 ÷ old's interval reaches from 1; the noise band is 1 ± n."""
        return max(1 - self.aa_low, self.aa_high - 1, 0.0)

    def word(self, higher: str, lower: str) -> str:
        if self.high < 1 - self.noise:
            return lower
        if self.low > 1 + self.noise:
            return higher
        if self.noise > COARSE:
            return f"unchanged within noise (band over ±{COARSE:.0%}: too coarse to tell; rerun quieter)"
        return "unchanged within noise"

    def cells(self) -> str:
        return (
            f"{self.ratio:.3f} [{self.low:.3f}, {self.high:.3f}] "
            f"| {self.aa_ratio:.3f} [{self.aa_low:.3f}, {self.aa_high:.3f}] | 1 ± {self.noise:.3f}"
        )


def compare(per_side: dict[str, list[float]], rng: random.Random) -> Verdict:
    """The per-round ratios new ÷ old and old2 ÷ old of one metric, with their intervals."""
    old = per_side["old"]
    ab = [n / o for n, o in zip(per_side["new"], old, strict=True)]
    aa = [a / o for a, o in zip(per_side["old2"], old, strict=True)]
    return Verdict(statistics.median(ab), *interval(ab, rng), statistics.median(aa), *interval(aa, rng))


# -- the run ---------------------------------------------------------------------------------


def measure(old: str, new: str | None, settings: Settings, say: IO[str] | None = None) -> list[Row]:
    """Start the three workers, run every operation's rounds, stop them."""
    with ExitStack() as stack:
        old_tree = stack.enter_context(revision_tree(old))
        new_tree = stack.enter_context(revision_tree(new))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="iii-worker-ab-run-")))
        timeout = max(120.0, settings.seconds * 40)
        sides = {}
        for label, tree in (("old", old_tree), ("new", new_tree), ("old2", old_tree)):
            sides[label] = Side(label, tree, workdir, timeout)
            stack.callback(sides[label].close)
        for side in sides.values():
            side.ready()
        order = list(sides)
        rows = []
        for operation, op in OPERATIONS.items():
            request = {"op": op, "seconds": settings.seconds, "calls": settings.in_flight_calls}
            for side in sides.values() if settings.warm_up else ():
                side.round(request)
            ops: dict[str, list[float]] = {label: [] for label in sides}
            cpu: dict[str, list[float]] = {label: [] for label in sides}
            for r in range(settings.rounds):
                for label in order[r % 3 :] + order[: r % 3]:
                    answer = sides[label].round(request)
                    ops[label].append(answer["ops_per_s"])
                    cpu[label].append(answer["cpu_us"])
            rows.append(Row(operation, ops, cpu))
            if say is not None:
                print(f"  {operation}: done", file=say, flush=True)
        return rows


DEFINITION = (
    "**Unchanged within noise** means: the 90 % bootstrap interval of the median per-round ratio "
    "new ÷ old reaches into the band 1 ± n, where n is how far the same interval of old2 ÷ old "
    "(a second process of the old code, measured in the same rounds, where nothing changed) reaches "
    "from 1. **Slower** / **faster** (**costlier** / **cheaper** for CPU per call): the whole "
    "interval lies below / above (above / below) that band. A band wider than 1 ± 0.10 is flagged: "
    "such a run cannot tell a 10 % change from noise (a loaded machine; rerun quieter or with more rounds)."
)


SIDES = ("old", "old2", "new")


def _section(
    unit: str, rows: list[tuple[str, dict[str, list[float]], Verdict]], digits: int, words: tuple[str, str]
) -> list[str]:
    """One table: each side's median per operation in ``unit``, then the ratio columns and verdict
    (``words``: what above / below the noise band is called)."""
    lines = [
        f"| operation | old {unit} | old2 {unit} | new {unit} | new ÷ old [90 % interval] "
        "| old2 ÷ old [90 % interval] | noise band | verdict |",
        "|---|---:|---:|---:|---|---|---|---|",
    ]
    for operation, values, verdict in rows:
        medians = " | ".join(f"{statistics.median(values[side]):,.{digits}f}" for side in SIDES)
        lines.append(f"| {operation} | {medians} | {verdict.cells()} | {verdict.word(*words)} |")
    return lines


def table(rows: list[Row], old: str, new: str, settings: Settings, seed: int, load_before: str) -> str:
    rng = random.Random(seed)
    verdicts = [(row, compare(row.ops, rng), compare(row.cpu, rng)) for row in rows]
    ops = [(row.operation, row.ops, verdict) for row, verdict, _ in verdicts]
    cpu = [(row.operation, row.cpu, verdict) for row, _, verdict in verdicts]
    return "\n".join(
        [
            f"### Worker invocations/s: {new} (new) vs {old} (old), same run",
            "",
            f"{settings.rounds} rounds per operation and side, the three sides (new, old, old2: a second "
            "process of the old code) taking turns in a rotating order; a one-at-a-time round lasts "
            f"{settings.seconds:g} s, a 200-in-flight round is {settings.in_flight_calls} calls. Medians "
            f"of the rounds; ratios are per round. Load average before: {load_before} (1/5/15 min).",
            "",
            *_section("ops/s", ops, 0, ("faster", "slower")),
            "",
            "Process CPU time per call (the fake engine, iii-sdk and the worker in one process; the same "
            "engine and SDK on every side, and time other processes take does not count):",
            "",
            *_section("µs", cpu, 1, ("costlier", "cheaper")),
            "",
            DEFINITION,
            "",
            f"Load average after: {load()}.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.worker_ab",
        description=(__doc__ or "").replace("**", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--old", default=OLD_REV,
        help=f"the old revision (default {OLD_REV[:10]}: the last commit before issue 15's work)",
    )  # fmt: skip
    parser.add_argument("--new", default=None, help="the new revision (default: this working tree)")
    parser.add_argument("--rounds", type=int, help=f"rounds per operation and side (default {FULL.rounds})")
    parser.add_argument(
        "--seconds", type=float, help=f"length of a one-at-a-time round (default {FULL.seconds:g})"
    )
    parser.add_argument(
        "--in-flight-calls", type=int,
        help=f"calls of a 200-in-flight round (default {FULL.in_flight_calls})",
    )  # fmt: skip
    parser.add_argument(
        "--smoke", action="store_true", help="seconds-long run (tests); figures not meaningful"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    args = parser.parse_args(argv)
    base = SMOKE if args.smoke else FULL
    settings = Settings(
        args.rounds if args.rounds is not None else base.rounds,
        args.seconds if args.seconds is not None else base.seconds,
        args.in_flight_calls if args.in_flight_calls is not None else base.in_flight_calls,
        base.warm_up,
    )
    if settings.rounds < 3:
        parser.error(f"--rounds must be at least 3 (an interval needs several rounds), not {settings.rounds}")
    if not settings.seconds > 0:
        parser.error(f"--seconds must be a positive number, not {settings.seconds}")
    if settings.in_flight_calls < 200:
        parser.error(f"--in-flight-calls must be at least 200 (one window), not {settings.in_flight_calls}")
    load_before = load()
    try:
        rows = measure(args.old, args.new, settings, say=sys.stderr)
    except BenchError as exc:
        print(f"python -m bench.worker_ab: {exc}", file=sys.stderr)
        return 1
    print(table(rows, revision_label(args.old), revision_label(args.new), settings, args.seed, load_before))
    return 0


if __name__ == "__main__":
    sys.exit(main())

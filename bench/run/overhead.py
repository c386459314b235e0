"""The core's own per-call cost over the in-memory adapter, for get and set (typed and ``trigger``).

Each core version is measured in a fresh process (so a baseline core from git can be put first
on ``sys.path``): per call, thread CPU time (immune to other processes taking the CPU) and wall
time, median of several rounds; optionally ``valgrind --tool=callgrind`` instruction counts,
which do not depend on load at all.

Run one measurement by hand: ``python -m bench.run.overhead [--rounds 9] [--calls 20000]``
(prints JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
#: The core before this benchmark's optimisations (issue 9): the "before" column.
BASELINE_REV = "fd94a33244100c908979ca125e00683bdd2194f5"
VARIANTS = ("read", "write", "get", "set", "trigger_get", "trigger_set")
#: (store variant, the adapter primitive it wraps)
OVERHEADS = {"get": "read", "set": "write", "trigger_get": "read", "trigger_set": "write"}


def _variants() -> dict[str, Callable[[], object]]:
    from iii_state_core import open_store
    from iii_state_core.values import encode

    store = open_store(adapter="kv", adapter_config={"store_method": "in_memory"})
    adapter = store.adapter
    value = {"n": 1, "name": "alice", "tags": ["a", "b"]}
    data = encode(value)
    store.set("bench", "k", value)
    get_request = {"function_id": "state::get", "payload": {"scope": "bench", "key": "k"}}
    set_request = {"function_id": "state::set", "payload": {"scope": "bench", "key": "k", "value": value}}
    return {
        "read": lambda: adapter.read("bench", "k"),
        "write": lambda: adapter.write("bench", "k", data),
        "get": lambda: store.get("bench", "k"),
        "set": lambda: store.set("bench", "k", value),
        "trigger_get": lambda: store.trigger(get_request),
        "trigger_set": lambda: store.trigger(set_request),
    }


def measure_here(rounds: int, calls: int) -> dict[str, Any]:
    """Per-call µs of every variant: rounds interleave the variants so load hits all alike."""
    variants = _variants()
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    wall: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        for _ in range(1000):
            fn()
    for _ in range(rounds):
        for name, fn in variants.items():
            c0, w0 = time.thread_time(), time.perf_counter()
            for _ in range(calls):
                fn()
            c1, w1 = time.thread_time(), time.perf_counter()
            cpu[name].append((c1 - c0) / calls * 1e6)
            wall[name].append((w1 - w0) / calls * 1e6)
    import iii_state_core

    return {
        "core": str(Path(iii_state_core.__file__).parent),
        "rounds": rounds,
        "calls": calls,
        "cpu_median": {n: statistics.median(v) for n, v in cpu.items()},
        "cpu_min": {n: min(v) for n, v in cpu.items()},
        "wall_median": {n: statistics.median(v) for n, v in wall.items()},
    }


def run_calls(variant: str, calls: int) -> None:
    """Set up, then call ``variant`` ``calls`` times: what a callgrind run counts."""
    fn = _variants()[variant] if calls else None
    for _ in range(calls):
        fn()  # type: ignore[misc]


# -- orchestration (in the parent process) -----------------------------------------------------


@contextmanager
def core_tree(rev: str | None) -> Iterator[Path]:
    """A directory whose ``iii_state_core`` is the working tree's (``None``) or ``rev``'s."""
    if rev is None:
        yield REPO
        return
    folder = Path(tempfile.mkdtemp(prefix="iii-bench-core-"))
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", rev, "iii_state_core"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _child(core: Path, args: list[str], *, valgrind: list[str] | None = None, timeout: float = 900) -> str:
    env = dict(os.environ)
    # the chosen core first, then this repo for the bench package; only the kv plugin loads
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([str(core), str(REPO)]))
    env["III_STATE_PLUGINS"] = "kv"
    command = [*(valgrind or []), sys.executable, "-m", "bench.run.overhead", *args]
    with tempfile.TemporaryDirectory() as cwd:  # not the repo: its core must not shadow `core`
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return done.stdout if valgrind is None else done.stderr


def timed(core: Path, rounds: int, calls: int) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(_child(core, ["--rounds", str(rounds), "--calls", str(calls)]))
    return result


def instructions(core: Path, calls: int) -> dict[str, float]:
    """Instructions per call of each variant: (Ir with ``calls`` calls - Ir with none) / calls."""
    tool = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]

    def total(variant: str, n: int) -> int:
        text = _child(core, ["--callgrind-variant", variant, "--calls", str(n)], valgrind=tool, timeout=1800)
        found = re.search(r"Collected\s*:\s*(\d+)", text)
        if found is None:
            raise RuntimeError(f"no callgrind total in: {text[-500:]}")
        return int(found.group(1))

    base = total("read", 0)
    return {variant: (total(variant, calls) - base) / calls for variant in VARIANTS}


@dataclass(frozen=True)
class CoreCost:
    label: str
    timing: dict[str, Any]
    instructions: dict[str, float] | None

    def overhead(self, metric: str) -> dict[str, float]:
        values = self.timing[metric]
        return {name: values[name] - values[base] for name, base in OVERHEADS.items()}

    def instruction_overhead(self) -> dict[str, float] | None:
        ir = self.instructions
        return None if ir is None else {name: ir[name] - ir[base] for name, base in OVERHEADS.items()}


def measure_core(label: str, rev: str | None, rounds: int, calls: int, callgrind_calls: int) -> CoreCost:
    with core_tree(rev) as core:
        timing = timed(core, rounds, calls)
        ir = instructions(core, callgrind_calls) if callgrind_calls and shutil.which("valgrind") else None
    return CoreCost(label, timing, ir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--callgrind-variant", choices=VARIANTS)
    args = parser.parse_args()
    if args.callgrind_variant:
        run_calls(args.callgrind_variant, args.calls)
    else:
        print(json.dumps(measure_here(args.rounds, args.calls)))


if __name__ == "__main__":
    main()

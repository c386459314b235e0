"""memcached first pages at three revisions in the same run, at rest and with deletes between them.

``python -m bench.memcached_pages [--rounds N] [--calls N] [--smoke]``

Issue 15 asks a ``list_entries`` page for at least 0.8 times its speed before issue 15's work.
A first page of a scope longer than the page also counts ``total``; decisions 0020 and 0022
keep that count cheap at rest and across deletes made through iii-state. Three child processes
(``bench/run/memcached_page_rounds.py``) page through a 1,000-key scope 100 entries at a time:
this tree, the commit before decision 0022, and the last commit before issue 15. Each takes its
core and memcached plugin from its revision (``git archive``) and has a memcached server of
its own, because server-wide counters must not see the other sides' deletes. The sides take
turns in rounds, in rotating order, so load from elsewhere hits each of them alike. The run
prints each side's median pages/s and the median per-round ratios, with the load average.
It runs twice: at rest, and with one untimed delete through the store (in another scope)
before each page.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import AbstractContextManager as ContextManager
from contextlib import ExitStack
from pathlib import Path

from iii_state_testsupport import ServerStartError, ServerUnavailable, memcached_server

from bench.run import revisions
from bench.run.revisions import BenchError
from bench.worker_ab import OLD_REV as BEFORE_ISSUE_15

REPO = Path(__file__).resolve().parents[1]
#: The last commit before decision 0022 (the counts of decision 0020 alone).
BEFORE_0022 = "3e5c200e61fe772fec78a82721bceb1fee0d1951"
PACKAGES = ("iii_state_core", "plugins/memcached/iii_state_memcached")
SIDES = {"this tree": None, "before 0022": BEFORE_0022, "before issue 15": BEFORE_ISSUE_15}


def revision_tree(rev: str | None) -> ContextManager[Path]:
    """A directory holding :data:`PACKAGES` as in ``rev``, or this working tree (``None``)."""
    return revisions.revision_tree(rev, PACKAGES, "iii-mc-pages-")


class Side:
    def __init__(self, label: str, tree: Path, server: str, mode: str) -> None:
        self.label = label
        paths = [tree, tree / "plugins" / "memcached", REPO]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths)), "III_STATE_PLUGINS": "memcached"}
        script = REPO / "bench" / "run" / "memcached_page_rounds.py"
        self.process = subprocess.Popen(
            [sys.executable, str(script), server, "pages:", mode],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tempfile.gettempdir(),
        )  # fmt: skip
        ready = self._line().split(" ", 1)
        if ready[0] != "ready" or not Path(ready[1]).resolve().is_relative_to(tree.resolve()):
            raise BenchError(f"the {label} side loaded {ready[-1]!r}, not its revision's core in {tree}")

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line:
            raise BenchError(f"the {self.label} side exited ({self.process.wait()})")
        return line

    def pages_per_second(self, calls: int) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{calls}\n")
        self.process.stdin.flush()
        return calls / float(self._line())

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def run(mode: str, rounds: int, calls: int) -> dict[str, list[float]]:
    """Per side, pages/s of each round."""
    with ExitStack() as stack:
        sides = []
        for label, rev in SIDES.items():
            tree = stack.enter_context(revision_tree(rev))
            server = stack.enter_context(memcached_server())
            side = Side(label, tree, server.address, mode)
            stack.callback(side.close)
            sides.append(side)
        rates: dict[str, list[float]] = {side.label: [] for side in sides}
        for r in range(rounds):
            for side in sides[r % 3 :] + sides[: r % 3]:
                rates[side.label].append(side.pages_per_second(calls))
        return rates


def report(mode: str, rates: dict[str, list[float]]) -> str:
    labels = list(rates)
    lines = [
        f"first pages of 100 from a 1,000-key scope, {mode} — load average "
        + ", ".join(f"{x:.1f}" for x in os.getloadavg()),
        *(f"  {label:16s} {statistics.median(rates[label]):8,.0f} pages/s" for label in labels),
    ]
    base = rates["before issue 15"]
    for label in labels[:-1]:
        ratios = [mine / old for mine, old in zip(rates[label], base, strict=True)]
        lines.append(f"  {label} ÷ before issue 15: {statistics.median(ratios):.2f} (median per-round ratio)")
    return "\n".join(lines)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memcached_pages", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=_positive, default=15)
    parser.add_argument("--calls", type=_positive, default=200, help="pages per side per round")
    parser.add_argument("--smoke", action="store_true", help="2 rounds of 5 pages (tests)")
    args = parser.parse_args(argv)
    rounds, calls = (2, 5) if args.smoke else (args.rounds, args.calls)
    try:
        for mode, title in (("rest", "at rest"), ("delete", "one delete through the store before each page")):
            print(report(title, run(mode, rounds, calls)), flush=True)
    except (BenchError, ServerUnavailable, ServerStartError) as exc:
        print(f"python -m bench.memcached_pages: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

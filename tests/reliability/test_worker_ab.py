"""``python -m bench.worker_ab``: the worker A/B runs end to end and its verdict rule holds.

The smoke run starts the three workers (this tree, and twice the old revision from ``git archive``)
and checks every row came out with sane figures; each child has already checked that it loaded
its own revision's core and kv plugin, or the run fails. No timing is asserted (shared machine).
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

from ab_cells import check_ab_cells

from bench.run.revisions import available
from bench.worker_ab import OLD_REV, OPERATIONS, compare

REPO = Path(__file__).resolve().parents[2]
VERDICTS = {"unchanged within noise", "slower", "faster", "costlier", "cheaper"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.worker_ab", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _tables(text: str) -> list[list[list[str]]]:
    tables: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if current is None:
                current = []
                tables.append(current)
            elif not set("".join(cells)) <= set("-: "):
                current.append(cells)
        else:
            current = None
    return tables


def test_smoke_run_gives_every_operation_both_metrics_and_a_verdict() -> None:
    done = _run("--smoke", "--old", available(OLD_REV))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    throughput, cpu = _tables(done.stdout)
    for rows in (throughput, cpu):
        assert [r[0] for r in rows] == list(OPERATIONS)
        for _, old, old2, new, ab, aa, band, verdict in rows:
            check_ab_cells((old, old2, new), (ab, aa), band)
            assert verdict.split(" (")[0] in VERDICTS
    assert "**Unchanged within noise** means" in done.stdout


def test_verdict_rule_calls_a_real_slowdown_and_not_noise() -> None:
    rng = random.Random(1)
    noise = [1.0 + d for d in (-0.02, 0.01, 0.0, 0.02, -0.01, 0.015, -0.015, 0.005, -0.005)]
    old = [1000.0] * len(noise)
    slower = compare({"old": old, "old2": [1000 * x for x in noise], "new": [800 * x for x in noise]}, rng)
    assert slower.high < 0.85 and slower.noise < 0.05
    assert slower.word("faster", "slower") == "slower"
    faster = compare({"old": old, "old2": [1000 * x for x in noise], "new": [1200 * x for x in noise]}, rng)
    assert faster.word("faster", "slower") == "faster"
    same = compare(
        {"old": old, "old2": [1000 * x for x in noise], "new": [1000 * x for x in noise[::-1]]}, rng
    )
    assert same.word("faster", "slower") == "unchanged within noise"
    # the same 20 % drop inside a ±50 % noise band is not called a slowdown
    wide = [1.0 + d for d in (-0.5, 0.5, -0.4, 0.4, 0.0, -0.3, 0.3, 0.45, -0.45)]
    noisy = compare({"old": old, "old2": [1000 * x for x in wide], "new": [800 * x for x in noise]}, rng)
    assert noisy.word("faster", "slower").startswith("unchanged within noise (band over ±10%")


def test_bad_input_is_one_line_without_a_traceback() -> None:
    missing = _run("--smoke", "--old", "no-such-revision")
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f"python -m bench.worker_ab: 'no-such-revision' is not a commit of {REPO}"
    )
    few = _run("--rounds", "2")
    assert few.returncode == 2 and "--rounds must be at least 3" in few.stderr
    assert "Traceback" not in missing.stderr + few.stderr
    helped = _run("--help")
    assert helped.returncode == 0 and "unchanged within noise when" in helped.stdout

"""``python -m bench.pages``: the page A/B runs end to end, and its verdict rule holds.

The smoke run starts three children per backend (this tree, and twice the old revision from
``git archive``), each of which has already checked that it loaded its own revision's core and
plugin, or the run fails. No timing is asserted (shared machine).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ab_cells import check_ab_cells

from bench.pages import BAR, END, START, verdict
from bench.run.revisions import available
from bench.worker_ab import OLD_REV, Verdict

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.pages", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_smoke_run_writes_every_row_into_the_report(tmp_path: Path) -> None:
    report = tmp_path / "PERFORMANCE.md"
    report.write_text(f"# before\n\n{START}\nstale table\n{END}\n\n# after\n")
    done = _run("--smoke", "--old", available(OLD_REV), "--update", str(report), "kv-memory", "memcached")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    text = report.read_text()
    assert text.startswith(f"# before\n\n{START}\n`python -m bench.pages`") and text.endswith(
        f"{END}\n\n# after\n"
    )
    assert "stale table" not in text
    rows = [
        line.strip("|").split("|")
        for line in text.splitlines()
        if line.startswith("| kv") or "memcached (" in line
    ]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [
        ("kv in_memory", "first page"),
        ("kv in_memory", "next page"),
        ("memcached (a server per side)", "first page"),
        ("memcached (a server per side)", "next page"),
        ("memcached (a server per side)", "first page, one delete before each"),
    ]
    for _, _, old, old2, new, ab, aa, band, cpu, word in (map(str.strip, r) for r in rows):
        check_ab_cells((old, old2, new, *cpu.split(" → ")), (ab, aa), band)
        assert word.split(";")[0] in {"met", "not met", f"undecided (interval straddles {BAR})"}


def test_verdict_is_the_interval_against_the_bar() -> None:
    def v(low: float, high: float, aa_low: float = 0.98, aa_high: float = 1.02) -> str:
        return verdict(Verdict((low + high) / 2, low, high, 1.0, aa_low, aa_high))

    assert v(0.80, 0.95) == "met"
    assert v(0.70, 0.79) == "not met"
    assert v(0.75, 0.85) == f"undecided (interval straddles {BAR})"
    assert v(0.9, 1.1, 0.85, 1.2) == "met; noise band over ±10%: rerun quieter"


def test_bad_input_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    unmarked = tmp_path / "plain.md"
    unmarked.write_text("# no block\n")
    for args, code, text in (
        (("--smoke", "--old", "no-such-revision", "kv-memory"), 1,
         f"python -m bench.pages: 'no-such-revision' is not a commit of {REPO}"),
        (("--smoke", "--update", str(unmarked), "kv-memory"), 1,
         f"python -m bench.pages: {unmarked} needs exactly one {START} … {END} block to update"),
        (("nosuch",), 2, "unknown adapter(s) nosuch; choose from kv, kv-memory"),
        (("--rounds", "2"), 2, "--rounds must be a number of at least 3, not '2'"),
    ):  # fmt: skip
        done = _run(*args)
        assert done.returncode == code, done.stderr
        assert text in done.stderr and "Traceback" not in done.stderr
    assert unmarked.read_text() == "# no block\n"
    helped = _run("--help")
    assert helped.returncode == 0 and "straddles 0.8" in helped.stdout

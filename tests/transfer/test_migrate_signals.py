"""``iii-state migrate`` in a subprocess, stopped half-way by SIGINT or SIGKILL, then re-run."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from transfer_data import cli_command, fill, kv_config_file, kv_store, make_entries, raw_entries

TOTAL = 10_000
COPY_LINE = re.compile(r"^copy: (\d+)/(\d+) entries")


class Migration:
    """A running ``iii-state migrate`` whose stderr lines arrive on a queue."""

    def __init__(self, tmp_path: Path, *extra: str) -> None:
        command = [
            *cli_command(), "migrate", "--from", str(tmp_path / "source.yaml"),
            "--to", str(tmp_path / "target.yaml"), "--state-file", str(tmp_path / "resume.json"),
            "--page-size", "50", "--progress-interval", "0", *extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8"
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for_copied(self, at_least: int, timeout: float = 60.0) -> int:
        """Block until a progress line reports ``at_least`` entries copied; return that count."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.seen.append(line)
            match = COPY_LINE.match(line)
            if match and int(match.group(1)) >= at_least:
                return int(match.group(1))
        pytest.fail(f"no progress line showed {at_least} copied entries; stderr so far: {self.seen[-5:]}")

    def finish(self, timeout: float = 120.0) -> tuple[int, str, str]:
        # not communicate(): it would read stderr too, racing the pump thread for its lines
        assert self.process.stdout is not None
        stdout = self.process.stdout.read()
        self.process.wait(timeout=timeout)
        rest = []
        while (line := self.lines.get(timeout=10)) is not None:
            rest.append(line)
        return self.process.returncode, stdout, "\n".join(self.seen + rest)


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    kv_config_file(tmp_path, "source")
    kv_config_file(tmp_path, "target")
    with kv_store(tmp_path / "source-data") as source:
        fill(source, make_entries(TOTAL))
    return tmp_path


def _interrupt_half_way(tmp_path: Path, signum: signal.Signals) -> tuple[int, str]:
    run = Migration(tmp_path)
    run.wait_for_copied(TOTAL * 3 // 10)
    # freeze it at once, so "half-way" is a fact we can check and not a race we hope to win
    os.kill(run.process.pid, signal.SIGSTOP)
    try:
        with kv_store(tmp_path / "target-data") as target:
            present = len(raw_entries(target))
        assert 0 < present < TOTAL, f"the copy was not half-way when stopped ({present} entries)"
        os.kill(run.process.pid, signum)
    finally:
        os.kill(run.process.pid, signal.SIGCONT)
    code, _, stderr = run.finish()
    return code, stderr


def _rerun_and_check(tmp_path: Path) -> str:
    code, stdout, stderr = Migration(tmp_path).finish()
    assert code == 0, stderr + stdout
    assert "(resumed)" in stdout and "verified: all 50 scopes match" in stdout
    written, unchanged = (int(n) for n in re.search(r"written (\d+), unchanged (\d+)", stdout).groups())  # type: ignore[union-attr]
    assert written + unchanged == TOTAL and written > 0
    with kv_store(tmp_path / "source-data") as source, kv_store(tmp_path / "target-data") as target:
        assert raw_entries(target) == raw_entries(source)  # every entry once, bytes identical
    assert not (tmp_path / "resume.json").exists()
    return stdout


def test_sigint_stops_cleanly_and_a_rerun_finishes(prepared: Path) -> None:
    code, stderr = _interrupt_half_way(prepared, signal.SIGINT)
    assert code == 130, stderr
    assert "stopping after the current entry" in stderr, stderr
    assert re.search(r"interrupted after \d+ of 10000 entries; run the same command again", stderr), stderr
    assert "iii-state migrate --from" in stderr and (prepared / "resume.json").exists()
    _rerun_and_check(prepared)


def test_sigkill_half_way_then_a_rerun_finishes(prepared: Path) -> None:
    code, _ = _interrupt_half_way(prepared, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert (prepared / "resume.json").exists()
    _rerun_and_check(prepared)

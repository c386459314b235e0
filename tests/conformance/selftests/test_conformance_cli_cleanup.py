"""``iii-state conformance`` says which store it writes to and leaves no ``iii-conf-`` scope
behind, even when the adapter is broken and tests fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from iii_state_core import StateStore, open_store

HERE = os.path.dirname(os.path.abspath(__file__))
EXE = os.path.join(os.path.dirname(sys.executable), "iii-state")


def _conformance(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [EXE, "conformance", "--plugin", "broken_adapters", "--quick", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def _kv(folder: Path) -> StateStore:
    return open_store(adapter="kv", adapter_config={"store_method": "file_based", "file_path": str(folder)})


def _left_behind(folder: Path) -> list[str]:
    with _kv(folder) as s:
        return [g for g in s.list_groups() if g.startswith("iii-conf-")] + [
            k for k in s.list_keys("") if k.startswith("iii-conf-")
        ]


def test_a_broken_listing_fails_the_run_and_leaves_nothing_behind(tmp_path: Path) -> None:
    with _kv(tmp_path) as s:
        s.set("users", "alice", 1)  # the owner's data, which the run must not touch
        s.set("", "", "owner's root entry")
    run = _conformance(
        "--adapter", "broken-file-hides-an-entry", "-o", f"file_path={tmp_path}",
        "-k", "hostile_keys or list_entries or empty_scope",
    )  # fmt: skip
    assert run.returncode == 1 and "conformance: FAIL" in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]
    first = run.stdout.splitlines()[:2]
    assert first[0] == f"conformance: testing kv (file_based at {tmp_path / 'state.sqlite3'})"
    assert "the suite writes to this store, only under scopes named iii-conf-…" in first[1]
    assert _left_behind(tmp_path) == []
    with _kv(tmp_path) as s:
        assert s.get("users", "alice") == 1 and s.get("", "") == "owner's root entry"

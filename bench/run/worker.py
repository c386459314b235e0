"""The iii worker's invocations/s over loopback: ``bench/run/worker_script.py`` run as it is.

That script serves the state functions through ``StateWorker`` to the fake engine of
``tests/worker/engine_peer.py`` and times each call from the engine's side, beside a bare
iii-sdk handler doing the same store call. It prints one table; we keep it whole.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "run" / "worker_script.py"


def worker_table(seconds: float, timeout: float = 600) -> tuple[str | None, str]:
    """:returns: ``(table, "")`` or ``(None, why it did not run)``."""
    if not SCRIPT.exists() or not (REPO / "iii_state_core" / "worker" / "__init__.py").exists():
        return None, "the worker or bench/run/worker_script.py does not exist in this tree"
    with tempfile.TemporaryDirectory() as home:
        # the SDK writes a marker under $HOME and would dial an OpenTelemetry collector
        env = {**os.environ, "HOME": home, "OTEL_ENABLED": "false"}
        try:
            done = subprocess.run(
                [sys.executable, str(SCRIPT), "--seconds", str(seconds)],
                cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return None, f"bench/run/worker_script.py did not finish within {timeout:.0f} s"
    if done.returncode != 0:
        return None, f"bench/run/worker_script.py failed: {done.stderr.strip().splitlines()[-1:]}"
    lines = done.stdout.strip().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("### ")), 0)
    return "\n".join(lines[start:]), ""


def worker_ab_table(timeout: float = 1800) -> tuple[str | None, str]:
    """``python -m bench.worker_ab`` with its defaults (this tree vs before issue 15), in a process
    of its own. :returns: ``(table, "")`` or ``(None, why it did not run)``."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.worker_ab"],
            cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None, f"python -m bench.worker_ab did not finish within {timeout:.0f} s"
    if done.returncode != 0:
        return None, f"python -m bench.worker_ab failed: {done.stderr.strip().splitlines()[-1:]}"
    return done.stdout.strip(), ""

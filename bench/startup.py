"""Start-up cost of one CLI call on the embedded store: all plugins installed vs only ``kv``.

``python -m bench.startup [RUNS]`` times ``iii-state get s k`` as whole processes (spawn to
exit, ``time.perf_counter`` around ``subprocess.run``), alternating the two settings so both
see the same machine load, and prints the median of each and their ratio.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("iii-state")
    if script.exists():
        return [str(script)]
    found = shutil.which("iii-state")
    return [found] if found else [sys.executable, "-c", "from iii_state_core.cli import main; main()"]


def _time(command: list[str], env: dict[str, str], cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure(runs: int = 20) -> tuple[float, float]:
    """:returns: median seconds of ``iii-state get s k`` with every plugin, and with only kv."""
    command = [*_cli(), "get", "s", "k"]
    base = {k: v for k, v in os.environ.items() if k not in ("III_CONFIG", "III_STATE_PLUGINS")}
    every, kv_only = dict(base), {**base, "III_STATE_PLUGINS": "kv"}
    with tempfile.TemporaryDirectory() as cwd:
        setup = [*_cli(), "set", "s", "k", "1"]
        subprocess.run(setup, env=every, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        _time(command, every, cwd)  # warm the OS file cache for both
        all_times, kv_times = [], []
        for _ in range(runs):
            all_times.append(_time(command, every, cwd))
            kv_times.append(_time(command, kv_only, cwd))
    return statistics.median(all_times), statistics.median(kv_times)


def section(runs: int) -> str:
    """The report section of ``python -m bench``: both medians, the ratio, and how they were taken."""
    every, kv_only = measure(runs)
    return "\n".join(
        [
            "## Start-up of one CLI call",
            "",
            f"`iii-state get s k` on the embedded store, timed as a whole process (spawn to exit), median "
            f"of {runs} runs each, the two settings alternating so both see the same load "
            "(`python -m bench.startup` measures this alone). Plugins import their client library "
            "(redis, boto3, pymemcache) only when a store of theirs opens, so having them installed "
            "costs little.",
            "",
            "| plugins | median ms |",
            "|---|---:|",
            f"| all installed | {every * 1000:,.1f} |",
            f"| `III_STATE_PLUGINS=kv` | {kv_only * 1000:,.1f} |",
            f"| ratio | {every / kv_only:.2f}× |",  # noqa: RUF001
        ]
    )


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    every, kv_only = measure(runs)
    print(f"iii-state get s k, median of {runs} runs each (whole process):")
    print(f"  all plugins installed     {every * 1000:7.1f} ms")
    print(f"  III_STATE_PLUGINS=kv      {kv_only * 1000:7.1f} ms")
    print(f"  ratio                     {every / kv_only:7.2f}x")


if __name__ == "__main__":
    main()

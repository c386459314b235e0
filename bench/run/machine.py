"""Facts about the machine and the software a benchmark ran on, for the report header."""

from __future__ import annotations

import datetime
import os
import platform
import re
import shutil
import sqlite3
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("redis", "pymemcache", "boto3", "moto", "hypothesis", "iii-sdk")


def _run(*command: str) -> str:
    if shutil.which(command[0]) is None:
        return "not installed"
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"? ({exc})"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else "?"


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "?"
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else platform.processor() or "?"


def load() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "?"
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def process_cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system, every thread) process ``pid`` has used so far; ``None`` when
    unknown (no pid, no /proc). Clock ticks, so sum it over many calls before dividing."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _dynalite() -> str:
    try:
        from iii_state_testsupport import find_dynalite

        path = Path(find_dynalite()).resolve()
    except Exception as exc:  # unavailable: say why in the table
        return f"not available ({exc.__class__.__name__})"
    for parent in path.parents:
        manifest = parent / "package.json"
        if manifest.exists() and '"name": "dynalite"' in manifest.read_text():
            found = re.search(r'"version":\s*"([^"]+)"', manifest.read_text())
            return found.group(1) if found else "?"
    return "?"


def facts() -> list[tuple[str, str]]:
    """``(name, value)`` rows: date, commit, CPU, cores, memory, Python, servers, client libraries."""
    commit = _run("git", "-C", str(REPO), "rev-parse", "--short", "HEAD")
    dirty = _run("git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no")
    try:
        memory = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB"
    except (ValueError, OSError, AttributeError):
        memory = "?"
    rows = [
        ("date (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")),
        # _run answers "?" for no output: a clean tree is not "uncommitted changes"
        ("commit", commit + (" (plus uncommitted changes)" if dirty.strip() not in ("", "?") else "")),
        ("CPU", cpu_model()),
        ("cores", str(os.cpu_count())),
        ("memory", memory),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("SQLite", sqlite3.sqlite_version),
        ("redis-server", _run("redis-server", "--version")),
        ("memcached", _run("memcached", "-V")),
        ("node", _run("node", "--version")),
        ("dynalite", _dynalite()),
        ("valgrind", _run("valgrind", "--version")),
    ]
    rows += [(f"{name} (Python)", _package(name)) for name in PACKAGES]
    return rows


def facts_table(rows: list[tuple[str, str]]) -> str:
    return "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])

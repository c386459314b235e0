"""Helpers the kv tests import: store configs and the helper process script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

WORKER_SCRIPT = Path(__file__).parent / "scripts" / "kv_worker.py"


def file_config(directory: Path, **extra: Any) -> dict[str, Any]:
    return {"store_method": "file_based", "file_path": str(directory), **extra}


def worker(mode: str, store_dir: Path, *args: str, **popen: Any) -> subprocess.Popen[str]:
    """Start ``scripts/kv_worker.py`` in its own process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("III_")}
    # only the kv plugin: loading every installed plugin would import redis, boto3, … (~0.5 s)
    env["III_STATE_PLUGINS"] = "kv"
    return subprocess.Popen(
        [sys.executable, str(WORKER_SCRIPT), mode, str(store_dir), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **popen,
    )

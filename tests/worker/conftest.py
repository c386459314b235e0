"""Shared set-up for the worker tests: the SDK kept away from the developer's
environment, and ``engine_peer`` importable under any pytest import mode."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # ``--import-mode=importlib`` does not add it
    sys.path.insert(0, _HERE)


@pytest.fixture(autouse=True)
def sdk_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The SDK writes a process marker under ``$HOME/.iii/run`` and reads
    ``III_URL``, ``III_NAMESPACE``, ``III_WORKER_NAME``, ``III_TOKEN`` and
    ``OTEL_ENABLED``: point ``HOME`` at a temporary directory, clear the rest,
    and turn OpenTelemetry off (it would dial ``<engine>/otel``). Subprocesses
    inherit the same environment."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("OTEL_ENABLED", "false")
    for name in ("III_URL", "III_NAMESPACE", "III_WORKER_NAME", "III_TOKEN"):
        monkeypatch.delenv(name, raising=False)

"""Quick versions of the benchmark and the fault campaign, for CI (``pytest tests/reliability``).

The full versions are ``python -m bench --out docs/PERFORMANCE.md`` and
``python -m bench.faults --out docs/RELIABILITY.md``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # ``bench`` lives at the repo root; importlib mode does not add it
    sys.path.insert(0, str(REPO))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("III_CONFIG", "III_STATE_PLUGINS", "III_STATE_DISABLE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def needs_server() -> Iterator[Callable[[Callable[[], Any]], Any]]:
    """Run a step that starts a test server: a missing server fails under CI=true, else skips."""

    def run(step: Callable[[], Any]) -> Any:
        from iii_state_testsupport import ServerUnavailable

        try:
            return step()
        except ServerUnavailable as exc:
            if os.environ.get("CI", "").lower() == "true":
                raise
            pytest.skip(str(exc))

    yield run

"""Shared fixtures of the core's unit tests: a clean environment and fresh kv stores."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iii_state_core import StateStore, open_store

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # ``--import-mode=importlib`` does not add it; tests import ``unit_helpers``
    sys.path.insert(0, _HERE)

#: Environment variables the core reads; a developer's shell must not leak into a test.
CORE_ENV = ("III_CONFIG", "III_STATE_PLUGINS", "III_STATE_DISABLE_PLUGINS")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CORE_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def memory_store() -> Iterator[StateStore]:
    with open_store(adapter="kv") as store:
        yield store


@pytest.fixture(params=["in_memory", "file_based"])
def kv_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    """The kv adapter in both its forms: results must not depend on which one."""
    config: dict[str, Any] = {"store_method": request.param}
    if request.param == "file_based":
        config["file_path"] = str(tmp_path / "kv")
    with open_store(adapter="kv", adapter_config=config) as store:
        yield store

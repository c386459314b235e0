"""Fixtures of the kv adapter's own tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from iii_state_core import StateStore, open_store

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # ``--import-mode=importlib`` does not add it; tests import ``kv_helpers``
    sys.path.insert(0, _HERE)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("III_CONFIG", "III_STATE_PLUGINS", "III_STATE_DISABLE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def file_store(store_dir: Path) -> Iterator[StateStore]:
    config = {"store_method": "file_based", "file_path": str(store_dir)}
    with open_store(adapter="kv", adapter_config=config) as store:
        yield store

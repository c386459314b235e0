"""Fixtures of the kv adapter's own tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kv_helpers import file_config

from iii_state_core import StateStore, open_store


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("III_CONFIG", "III_STATE_PLUGINS", "III_STATE_DISABLE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def file_store(store_dir: Path) -> Iterator[StateStore]:
    with open_store(adapter="kv", adapter_config=file_config(store_dir)) as store:
        yield store

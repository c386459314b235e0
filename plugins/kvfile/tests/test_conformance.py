"""The kv adapter against the whole contract, in both store methods."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from iii_state_conformance import StateStoreSuite

from iii_state_core import StateStore, open_store


class TestKvFileBased(StateStoreSuite):
    @pytest.fixture
    def store(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StateStore]:
        directory: Path = tmp_path_factory.getbasetemp() / "kv-conformance"
        config = {"store_method": "file_based", "file_path": str(directory)}
        with open_store(adapter="kv", adapter_config=config) as store:
            yield store


class TestKvInMemory(StateStoreSuite):
    @pytest.fixture
    def store(self) -> Iterator[StateStore]:
        with open_store(adapter="kv", adapter_config={"store_method": "in_memory"}) as store:
            yield store

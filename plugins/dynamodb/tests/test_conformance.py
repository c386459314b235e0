"""The dynamodb adapter against the whole contract, on dynalite and on moto."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from iii_state_conformance import StateStoreSuite

from iii_state_core import StateStore, open_store


class TestDynamoDB(StateStoreSuite):  # type: ignore[misc]  # the suite is typed Any
    @pytest.fixture
    def store(self, config: dict[str, Any]) -> Iterator[StateStore]:
        with open_store(adapter="dynamodb", adapter_config=config) as store:
            yield store

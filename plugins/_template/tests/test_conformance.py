"""The whole contract against the adapter: this file is all a third party needs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from iii_state_conformance import StateStoreSuite

from iii_state_core import StateStore, open_store


class TestTemplateAdapter(StateStoreSuite):
    @pytest.fixture
    def store(self) -> Iterator[StateStore]:
        # <REPLACE ME>: your adapter name and config (a server fixture can give you its URL)
        with open_store(adapter="template", adapter_config={"label": "tests"}) as store:
            yield store

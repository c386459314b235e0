"""The memcached adapter against the whole contract: one server, and two with rendezvous hashing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from iii_state_conformance import StateStoreSuite

from iii_state_core import StateStore, open_store


class TestMemcached(StateStoreSuite):  # type: ignore[misc]  # the suite is imported lazily
    @pytest.fixture
    def store(self, memcached_config: dict[str, Any]) -> Iterator[StateStore]:
        with open_store(adapter="memcached", adapter_config=memcached_config) as store:
            yield store

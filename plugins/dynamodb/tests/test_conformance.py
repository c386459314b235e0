"""The dynamodb adapter against the whole contract: full sizes on dynalite, quick sizes on moto.

Both servers answer the same adapter code through the same API, so the full sizes (more racing
threads and rounds, longer listings, more Hypothesis examples) run once, on dynalite. moto, the
slower one (one request at a time: decision 0005), runs every test of every area, the processes
ones included, on the sizes of ``iii-state conformance --quick``: each request shape the adapter
sends is still checked against moto's answers, in a fraction of the full suite's time there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dynamodb_test_helpers import adapter_config, new_table_name
from iii_state_conformance import StateStoreSuite
from iii_state_dynamodb import DynamoDBAdapter

from iii_state_core import StateStore, open_store


def _new_table(endpoint: str) -> dict[str, Any]:
    """The config of a table made for this module on that server (tests keep to their scopes)."""
    name = new_table_name()
    DynamoDBAdapter.open(adapter_config(endpoint, name, create_table=True)).close()
    return adapter_config(endpoint, name)


@pytest.fixture(scope="module")
def dynalite_table(dynalite_endpoint: str) -> dict[str, Any]:
    return _new_table(dynalite_endpoint)


@pytest.fixture(scope="module")
def moto_table(moto_endpoint: str) -> dict[str, Any]:
    return _new_table(moto_endpoint)


class TestDynamoDBOnDynalite(StateStoreSuite):  # type: ignore[misc]  # the suite is typed Any
    @pytest.fixture
    def store(self, dynalite_table: dict[str, Any]) -> Iterator[StateStore]:
        with open_store(adapter="dynamodb", adapter_config=dynalite_table) as store:
            yield store


class TestDynamoDBOnMotoQuick(StateStoreSuite):  # type: ignore[misc]
    quick = True

    @pytest.fixture
    def store(self, moto_table: dict[str, Any]) -> Iterator[StateStore]:
        with open_store(adapter="dynamodb", adapter_config=moto_table) as store:
            yield store

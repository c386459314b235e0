"""Fixtures for the dynamodb adapter's tests: the shared dynalite and moto servers, dummy
credentials, and a fresh table per test session and server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dynamodb_test_helpers import DUMMY_ENV, adapter_config, new_table_name
from iii_state_dynamodb import DynamoDBAdapter
from iii_state_testsupport import DYNAMODB_URL_ENV, external_url

# ``dynalite_endpoint`` and ``moto_endpoint`` (moto behind its request-serialising runner) are
# fixtures of the unpublished test-support package's pytest plugin (tests/support).
from iii_state_core import StateStore, open_store


@pytest.fixture(scope="session", autouse=True)
def dummy_aws_credentials() -> Iterator[None]:
    """Dummy credentials, unless the user points the tests at a real endpoint of their own."""
    if external_url(DYNAMODB_URL_ENV) is not None:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        for name, value in DUMMY_ENV.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        yield


@pytest.fixture(scope="session", params=["dynalite", "moto"])
def endpoint(request: pytest.FixtureRequest) -> str:
    """Each test that takes this runs once against dynalite and once against moto."""
    url: str = request.getfixturevalue(f"{request.param}_endpoint")
    return url


@pytest.fixture(scope="session")
def session_table(endpoint: str) -> str:
    """A table created once per server for the session; tests keep to their own random scopes."""
    name = new_table_name()
    DynamoDBAdapter.open(adapter_config(endpoint, name, create_table=True)).close()
    return name


@pytest.fixture
def config(endpoint: str, session_table: str) -> dict[str, Any]:
    """The adapter config of the session table on this test's server."""
    return adapter_config(endpoint, session_table)


#: A store on the session table of this test's server, and its adapter (test files that need
#: another store, e.g. behind a fault proxy, define their own ``store``).
@pytest.fixture
def store(config: dict[str, Any]) -> Iterator[StateStore]:
    with open_store(adapter="dynamodb", adapter_config=config) as opened:
        yield opened


@pytest.fixture
def adapter(store: StateStore) -> DynamoDBAdapter:
    assert isinstance(store.adapter, DynamoDBAdapter)
    return store.adapter

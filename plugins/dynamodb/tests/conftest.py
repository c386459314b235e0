"""Fixtures for the dynamodb adapter's tests: the shared dynalite and moto servers, dummy
credentials, and a fresh table per test session and server."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

# The shared server fixtures (dynalite from npm, moto through its request-serialising runner).
from iii_state_conformance.fixtures import dynalite_endpoint, moto_endpoint
from iii_state_conformance.servers import DYNAMODB_URL_ENV, external_url

__all__ = ["dynalite_endpoint", "moto_endpoint"]

#: Neither dynalite nor moto checks signatures, but botocore will not sign without credentials.
#: Set for the whole session (child processes of the concurrency tests inherit them) so that no
#: real credential is ever sent to a test server, and boto3 never asks an instance-metadata service.
DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


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


def new_table_name(tag: str = "") -> str:
    return f"iii-state-test-{tag}{secrets.token_hex(4)}"


@pytest.fixture(scope="session", params=["dynalite", "moto"])
def endpoint(request: pytest.FixtureRequest) -> str:
    """Each test that takes this runs once against dynalite and once against moto."""
    url: str = request.getfixturevalue(f"{request.param}_endpoint")
    return url


@pytest.fixture(scope="session")
def session_table(endpoint: str) -> str:
    """A table created once per server for the session; tests keep to their own random scopes."""
    name = new_table_name()
    config = adapter_config(endpoint, name, create_table=True)
    from iii_state_dynamodb import DynamoDBAdapter

    DynamoDBAdapter.open(config).close()
    return name


def adapter_config(endpoint: str, table: str, **extra: Any) -> dict[str, Any]:
    return {"table_name": table, "endpoint_url": endpoint, **extra}


@pytest.fixture
def config(endpoint: str, session_table: str) -> dict[str, Any]:
    """The adapter config of the session table on this test's server."""
    return adapter_config(endpoint, session_table)


def env_has_dummy_credentials() -> bool:
    return os.environ.get("AWS_ACCESS_KEY_ID") == DUMMY_ENV["AWS_ACCESS_KEY_ID"]

"""The table at open: created on request (on-demand, waited for), a missing or foreign table is a
clear error, and a table deleted while open says so."""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
import pytest
from dynamodb_test_helpers import adapter_config, new_table_name
from iii_state_dynamodb import DynamoDBAdapter

from iii_state_core import BackendError, ConfigError, open_store


@pytest.fixture
def raw(endpoint: str) -> Any:
    return boto3.session.Session().client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")


def delete_table(raw: Any, name: str) -> None:
    """Delete a test table, once it is no longer CREATING (dynalite refuses that until then)."""
    for _ in range(200):
        if raw.describe_table(TableName=name)["Table"]["TableStatus"] != "CREATING":
            break
        time.sleep(0.02)
    raw.delete_table(TableName=name)


def test_a_missing_table_says_how_to_get_one(endpoint: str) -> None:
    name = new_table_name("missing-")
    with pytest.raises(ConfigError) as info:
        open_store(adapter="dynamodb", adapter_config=adapter_config(endpoint, name))
    message = str(info.value)
    assert repr(name) in message and endpoint in message
    assert "create_table: true" in message and "'pk'" in message and "'sk'" in message


def test_create_table_makes_an_on_demand_table_and_waits_for_it(endpoint: str, raw: Any) -> None:
    name = new_table_name("create-")
    config = adapter_config(endpoint, name, create_table=True)
    try:
        with open_store(adapter="dynamodb", adapter_config=config) as store:
            store.set("", "", "works at once")  # the table is ACTIVE when open returns
            assert store.get("", "") == "works at once"
        table = raw.describe_table(TableName=name)["Table"]
        assert table["TableStatus"] == "ACTIVE"
        assert table.get("BillingModeSummary", {}).get("BillingMode") == "PAY_PER_REQUEST"
        assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}
        with open_store(adapter="dynamodb", adapter_config=config) as store:  # exists now: reused
            assert store.get("", "") == "works at once"
    finally:
        delete_table(raw, name)


def test_processes_racing_to_create_the_table_all_succeed(endpoint: str, raw: Any) -> None:
    name = new_table_name("race-")
    config = adapter_config(endpoint, name, create_table=True)
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            DynamoDBAdapter.open(config).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
    finally:
        delete_table(raw, name)


def test_a_table_with_another_key_schema_is_refused(endpoint: str, raw: Any) -> None:
    name = new_table_name("schema-")
    raw.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        with pytest.raises(ConfigError, match=r"key schema id \(S, HASH\).*needs partition key 'pk'"):
            DynamoDBAdapter.open(adapter_config(endpoint, name, create_table=True))
    finally:
        delete_table(raw, name)


def test_a_table_deleted_while_open_is_a_clear_error(endpoint: str, raw: Any) -> None:
    name = new_table_name("deleted-")
    with open_store(
        adapter="dynamodb", adapter_config=adapter_config(endpoint, name, create_table=True)
    ) as store:
        store.set("s", "k", 1)
        delete_table(raw, name)
        with pytest.raises(BackendError) as info:
            # dynalite answers for a table being deleted until it is gone: ask until it is
            for _ in range(200):
                store.get("s", "k")
        assert info.value.code == "GET_ERROR"
        assert f"{name!r} does not exist" in str(info.value) and "create_table: true" in str(info.value)

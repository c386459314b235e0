"""The exact requests the adapter sends, checked offline with botocore's Stubber."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from iii_state_dynamodb import DynamoDBAdapter, parse_settings
from iii_state_dynamodb.adapter import ReadToken
from iii_state_dynamodb.client import make_client, make_session

from iii_state_core.expiry import now_ms

TABLE = "stubbed"
KEY = {"pk": {"S": "#s"}, "sk": {"S": "#k"}}
DESCRIBED = {
    "Table": {
        "TableName": TABLE,
        "TableStatus": "ACTIVE",
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
    }
}


@pytest.fixture
def stubbed() -> Iterator[tuple[DynamoDBAdapter, Stubber]]:
    settings = parse_settings({"table_name": TABLE, "endpoint_url": "http://127.0.0.1:9"})
    client = make_client(settings, make_session(settings), "us-east-1")
    with Stubber(client) as stubber:
        stubber.add_response("describe_table", DESCRIBED, {"TableName": TABLE})
        stubber.add_response("transact_write_items", {}, {"TransactItems": ANY})  # the probe at open
        adapter = DynamoDBAdapter(settings, client=client, sleep=lambda _: None)
        yield adapter, stubber
        stubber.assert_no_pending_responses()


def item(value: str, version: str | None = "7") -> dict[str, Any]:
    found: dict[str, Any] = {**KEY, "val": {"S": value}}
    if version is not None:
        found["ver"] = {"N": version}
    return found


def put_request(value: str, deadline: tuple[str, str] | None = None, **rest: Any) -> dict[str, Any]:
    """The put_item request writing ``value`` with a new version; ``deadline``: its ``exp`` (ms)
    and ``ttl`` (s) as sent, with the deadline index's shard ``xsh``."""
    written: dict[str, Any] = {**KEY, "val": {"S": value}, "ver": {"N": ANY}}
    if deadline is not None:
        written["exp"], written["ttl"] = {"N": deadline[0]}, {"N": deadline[1]}
        written["xsh"] = {"N": ANY}
    return {"TableName": TABLE, "Item": written, **rest}


def test_set_is_one_put_returning_the_old_item(stubbed: tuple[DynamoDBAdapter, Stubber]) -> None:
    adapter, stub = stubbed
    stub.add_response("put_item", {"Attributes": item("{}")}, put_request("[1]", ReturnValues="ALL_OLD"))
    assert adapter.write("s", "k", b"[1]") == b"{}"


def test_delete_is_one_delete_returning_the_old_item(stubbed: tuple[DynamoDBAdapter, Stubber]) -> None:
    adapter, stub = stubbed
    stub.add_response("delete_item", {}, {"TableName": TABLE, "Key": KEY, "ReturnValues": "ALL_OLD"})
    assert adapter.remove("s", "k") is None


def test_reads_are_strongly_consistent(stubbed: tuple[DynamoDBAdapter, Stubber]) -> None:
    adapter, stub = stubbed
    stub.add_response(
        "get_item", {"Item": item('"x"')}, {"TableName": TABLE, "Key": KEY, "ConsistentRead": True}
    )
    assert adapter.read_versioned("s", "k") == (b'"x"', ("version", "7", None))


@pytest.mark.parametrize(
    ("token", "condition"),
    [
        (
            None,
            {
                "ConditionExpression": "attribute_not_exists(#p) OR #e <= :now",
                "ExpressionAttributeNames": {"#p": "pk", "#e": "exp"},
                "ExpressionAttributeValues": {":now": {"N": ANY}},
            },
        ),
        (
            ReadToken("version", "7", None),
            {
                "ConditionExpression": "#n = :n",
                "ExpressionAttributeNames": {"#n": "ver"},
                "ExpressionAttributeValues": {":n": {"N": "7"}},
            },
        ),
        (
            ReadToken("value", "{}", None),
            {
                "ConditionExpression": "#v = :v AND attribute_not_exists(#n)",
                "ExpressionAttributeNames": {"#v": "val", "#n": "ver"},
                "ExpressionAttributeValues": {":v": {"S": "{}"}},
            },
        ),
    ],
    ids=["missing", "versioned", "foreign-item"],
)
def test_write_if_conditions_on_what_was_read(
    stubbed: tuple[DynamoDBAdapter, Stubber], token: Any, condition: dict[str, Any]
) -> None:
    adapter, stub = stubbed
    expected = put_request("1", **condition)
    stub.add_response("put_item", {}, expected)
    assert adapter.write_if("s", "k", b"1", token) is True
    stub.add_client_error("put_item", "ConditionalCheckFailedException", expected_params=expected)
    assert adapter.write_if("s", "k", b"1", token) is False


def test_a_foreign_token_is_refused(stubbed: tuple[DynamoDBAdapter, Stubber]) -> None:
    adapter, _ = stubbed
    with pytest.raises(TypeError):
        adapter.write_if("s", "k", b"1", b"raw bytes")


def test_scan_pages_by_exclusive_start_key_and_drops_expired_items_itself(
    stubbed: tuple[DynamoDBAdapter, Stubber],
) -> None:
    """No FilterExpression (it would read and bill the same items, and cost the server an
    evaluation each): the deadline comes back and an expired item is dropped here; a page left
    short by it is filled by the next Query."""
    adapter, stub = stubbed
    query = {
        "TableName": TABLE,
        "KeyConditionExpression": "#p = :p",
        "ProjectionExpression": "#k, #v, #e",
        "ExpressionAttributeNames": {"#p": "pk", "#k": "sk", "#v": "val", "#e": "exp"},
        "ExpressionAttributeValues": {":p": {"S": "#s"}},
        "ConsistentRead": True,
        "Limit": 2,
    }
    later, gone = str(now_ms() + 60_000), str(now_ms() - 1)
    page = [
        {"sk": {"S": "#a"}, "val": {"S": "1"}},
        {"sk": {"S": "#b"}, "val": {"S": "2"}, "exp": {"N": later}},
    ]
    stub.add_response(
        "query", {"Items": page, "LastEvaluatedKey": {"pk": {"S": "#s"}, "sk": {"S": "#b"}}}, query
    )
    stub.add_response(
        "query", {"Items": []}, {**query, "ExclusiveStartKey": {"pk": {"S": "#s"}, "sk": {"S": "#b"}}}
    )
    entries, cursor = adapter.scan("s", None, 2)
    assert entries == [("a", b"1"), ("b", b"2")] and cursor == "#b"
    assert adapter.scan("s", cursor, 2) == ([], None)
    expired = [
        {"sk": {"S": "#a"}, "val": {"S": "1"}, "exp": {"N": gone}},
        {"sk": {"S": "#b"}, "val": {"S": "2"}},
    ]
    stub.add_response(
        "query", {"Items": expired, "LastEvaluatedKey": {"pk": {"S": "#s"}, "sk": {"S": "#b"}}}, query
    )
    stub.add_response(
        "query",
        {"Items": [{"sk": {"S": "#c"}, "val": {"S": "3"}}]},
        {**query, "ExclusiveStartKey": {"pk": {"S": "#s"}, "sk": {"S": "#b"}}},
    )
    assert adapter.scan("s", None, 2) == ([("b", b"2"), ("c", b"3")], None)


def test_list_scopes_scans_the_partition_keys(stubbed: tuple[DynamoDBAdapter, Stubber]) -> None:
    adapter, stub = stubbed
    scan = {
        "TableName": TABLE,
        "ProjectionExpression": "#p",
        "FilterExpression": "(attribute_not_exists(#e) OR #e > :now)",
        "ExpressionAttributeNames": {"#p": "pk", "#e": "exp"},
        "ExpressionAttributeValues": {":now": {"N": ANY}},
        "ConsistentRead": True,
    }
    start = {"pk": {"S": "#b"}, "sk": {"S": "#x"}}
    stub.add_response(
        "scan", {"Items": [{"pk": {"S": "#a"}}, {"pk": {"S": "#b"}}], "LastEvaluatedKey": start}, scan
    )
    stub.add_response(
        "scan", {"Items": [{"pk": {"S": "#a"}}, {"pk": {"S": "other"}}]}, {**scan, "ExclusiveStartKey": start}
    )
    assert sorted(adapter.list_scopes()) == ["a", "b"]


def test_batch_reads_are_one_batch_get_retrying_unprocessed_keys(
    stubbed: tuple[DynamoDBAdapter, Stubber],
) -> None:
    adapter, stub = stubbed
    other = {"pk": {"S": "#s"}, "sk": {"S": "#other"}}
    missing = {"pk": {"S": "#s"}, "sk": {"S": "#gone"}}
    stub.add_response(
        "batch_get_item",
        {
            "Responses": {TABLE: [item("[1]")]},
            "UnprocessedKeys": {TABLE: {"Keys": [other], "ConsistentRead": True}},
        },
        {"RequestItems": {TABLE: {"Keys": [KEY, other, missing], "ConsistentRead": True}}},
    )
    stub.add_response(
        "batch_get_item",
        {"Responses": {TABLE: [{**other, "val": {"S": '"o"'}}]}},
        {"RequestItems": {TABLE: {"Keys": [other], "ConsistentRead": True}}},
    )
    stub.add_response("put_item", {}, {"TableName": TABLE, "Item": ANY, "ReturnValues": "ALL_OLD"})
    calls = [("read", ("s", "k")), ("read_versioned", ("s", "other")), ("read", ("s", "gone")),
             ("read", ("s", "k")), ("write", ("s", "new", b"2"))]  # fmt: skip
    assert adapter.run_many(calls) == [b"[1]", (b'"o"', ("value", '"o"', None)), None, b"[1]", None]


def test_a_deadline_is_written_in_milliseconds_and_in_seconds_rounded_up(
    stubbed: tuple[DynamoDBAdapter, Stubber],
) -> None:
    adapter, stub = stubbed
    expected = put_request("1", ("1700000000001", "1700000001"), ReturnValues="ALL_OLD")
    stub.add_response("put_item", {}, expected)
    assert adapter.write("s", "k", b"1", 1_700_000_000_001) is None


def test_an_expired_item_is_missing_for_reads_and_no_old_value_for_writes(
    stubbed: tuple[DynamoDBAdapter, Stubber],
) -> None:
    adapter, stub = stubbed
    past, future = {"exp": {"N": str(now_ms() - 1)}}, {"exp": {"N": str(now_ms() + 60_000)}}
    get = {"TableName": TABLE, "Key": KEY, "ConsistentRead": True}
    stub.add_response("get_item", {"Item": {**item("1"), **past}}, get)
    assert adapter.read("s", "k") is None
    stub.add_response("get_item", {"Item": {**item("1"), **past}}, get)
    assert adapter.read_versioned("s", "k") == (None, None)
    stub.add_response("get_item", {"Item": {**item("1"), **future}}, get)
    assert adapter.read_versioned("s", "k") == (b"1", ("version", "7", int(future["exp"]["N"])))
    stub.add_response("put_item", {"Attributes": {**item("1"), **past}})
    assert adapter.write("s", "k", b"2") is None
    stub.add_response("delete_item", {"Attributes": {**item("1"), **past}})
    assert adapter.remove("s", "k") is None
    stub.add_response("delete_item", {"Attributes": {**item("1"), **future}})
    assert adapter.remove("s", "k") == b"1"


def test_write_if_keeps_the_deadline_read_and_checks_it_has_not_passed(
    stubbed: tuple[DynamoDBAdapter, Stubber],
) -> None:
    adapter, stub = stubbed
    condition = {
        "ConditionExpression": "#n = :n AND #e > :now",
        "ExpressionAttributeNames": {"#n": "ver", "#e": "exp"},
        "ExpressionAttributeValues": {":n": {"N": "7"}, ":now": {"N": ANY}},
    }
    stub.add_response("put_item", {}, put_request("2", ("9000000000000", "9000000000"), **condition))
    assert adapter.write_if("s", "k", b"2", ReadToken("version", "7", 9_000_000_000_000)) is True
    # a given deadline replaces it; None clears it
    stub.add_response("put_item", {}, put_request("2", **condition))
    assert adapter.write_if("s", "k", b"2", ReadToken("version", "7", 9_000_000_000_000), None) is True


def test_set_expiry_is_one_conditional_update_that_draws_a_new_version(
    stubbed: tuple[DynamoDBAdapter, Stubber],
) -> None:
    adapter, stub = stubbed
    common = {
        "TableName": TABLE,
        "Key": KEY,
        "ConditionExpression": "attribute_exists(#p) AND (attribute_not_exists(#e) OR #e > :now)",
        "ExpressionAttributeNames": {"#p": "pk", "#e": "exp", "#t": "ttl", "#n": "ver", "#s": "xsh"},
    }
    stub.add_response(
        "update_item",
        {},
        {
            **common,
            "UpdateExpression": "SET #e = :e, #t = :t, #s = :s, #n = :nv",
            "ExpressionAttributeValues": {
                ":now": {"N": ANY},
                ":nv": {"N": ANY},
                ":e": {"N": "1500"},
                ":t": {"N": "2"},
                ":s": {"N": ANY},
            },
        },
    )
    assert adapter.set_expiry("s", "k", 1500) is True
    stub.add_client_error(
        "update_item",
        "ConditionalCheckFailedException",
        expected_params={
            **common,
            "UpdateExpression": "SET #n = :nv REMOVE #e, #t, #s",
            "ExpressionAttributeValues": {":now": {"N": ANY}, ":nv": {"N": ANY}},
        },
    )
    assert adapter.set_expiry("s", "k", None) is False


def test_batch_reads_drop_expired_items(stubbed: tuple[DynamoDBAdapter, Stubber]) -> None:
    adapter, stub = stubbed
    past = {"exp": {"N": str(now_ms() - 1)}}
    stub.add_response(
        "batch_get_item",
        {"Responses": {TABLE: [{**item("[1]"), **past}]}},
        {"RequestItems": {TABLE: {"Keys": [KEY], "ConsistentRead": True}}},
    )
    assert adapter.run_many([("read", ("s", "k")), ("read_versioned", ("s", "k"))]) == [None, (None, None)]

"""``state::transact`` on DynamoDB: the capability decided at open, and how a cancelled
``TransactWriteItems`` is read (decision 0012)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from dynamodb_test_helpers import adapter_config
from iii_state_dynamodb import DynamoDBAdapter, parse_settings
from iii_state_dynamodb.client import make_client, make_session
from test_requests import DESCRIBED, TABLE

from iii_state_core import BackendError, open_store
from iii_state_core.errors import StateError
from iii_state_core.expiry import KEEP


def test_the_capability_says_what_the_server_serves(endpoint: str, session_table: str, request: Any) -> None:
    """moto serves TransactWriteItems, dynalite does not: each store says so, and is refused or served."""
    server = request.node.callspec.params["endpoint"]
    scope = f"probe-{secrets.token_hex(4)}"
    with open_store(adapter="dynamodb", adapter_config=adapter_config(endpoint, session_table)) as store:
        assert store.capabilities.transactions is (server == "moto")
        ops = [{"op": "set", "scope": scope, "key": k, "value": 1} for k in ("a", "b")]
        if server == "moto":
            assert store.transact(ops).committed
            assert store.get_many(scope, ["a", "b"]) == {"a": 1, "b": 1}
        else:
            with pytest.raises(StateError, match="capability transactions is false") as refused:
                store.transact(ops)
            assert refused.value.code == "UNSUPPORTED" and store.get_many(scope, ["a", "b"]) == {
                "a": None,
                "b": None,
            }
        assert scope in store.list_groups() if server == "moto" else store.list_groups() is not None
        assert not any(g.startswith("!") for g in store.list_groups())  # the probe wrote nothing


@pytest.fixture
def stubbed() -> Iterator[tuple[DynamoDBAdapter, Stubber]]:
    settings = parse_settings({"table_name": TABLE, "endpoint_url": "http://127.0.0.1:9", "max_attempts": 3})
    client = make_client(settings, make_session(settings), "us-east-1")
    with Stubber(client) as stubber:
        stubber.add_response("describe_table", DESCRIBED, {"TableName": TABLE})
        stubber.add_response("transact_write_items", {}, {"TransactItems": ANY})
        adapter = DynamoDBAdapter(settings, client=client, sleep=lambda _: None)
        yield adapter, stubber
        stubber.assert_no_pending_responses()


def _cancel(stub: Stubber, *codes: str) -> None:
    stub.add_client_error(
        "transact_write_items",
        service_error_code="TransactionCanceledException",
        service_message="Transaction cancelled",
        modeled_fields={"CancellationReasons": [{"Code": c, "Message": f"{c} here"} for c in codes]},
    )


def test_a_cancelled_transaction_is_read_through_its_reasons(
    stubbed: tuple[DynamoDBAdapter, Stubber],
) -> None:
    adapter, stub = stubbed
    checks = [("s", "a", None), ("s", "b", None)]
    writes = [("s", "a", b"1", None), ("s", "b", b"2", None)]
    _cancel(stub, "None", "ConditionalCheckFailed")  # another writer got there first: read again
    assert adapter.write_many_if(checks, writes) is False
    _cancel(stub, "TransactionConflict", "None")
    assert adapter.write_many_if(checks, writes) is False
    _cancel(stub, "ThrottlingError", "None")  # refused whole: sent again
    stub.add_response("transact_write_items", {}, {"TransactItems": ANY})
    assert adapter.write_many_if(checks, writes) is True
    _cancel(stub, "None", "ValidationError")  # anything else fails naming the item
    with pytest.raises(BackendError, match=r"write 1 \(scope 's', key 'b'\): ValidationError") as failed:
        adapter.write_many_if(checks, writes)
    assert "nothing applied" in str(failed.value)


def test_the_request_conditions_every_item_on_what_was_read(stubbed: tuple[DynamoDBAdapter, Stubber]) -> None:
    from iii_state_dynamodb.tokens import ReadToken

    adapter, stub = stubbed
    stub.add_response("transact_write_items", {}, {"TransactItems": ANY})
    sent: list[Any] = []
    stub.client.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems", lambda params, **_: sent.append(params)
    )
    later = int(time.time() * 1000) + 60_000
    checks = [
        ("s", "a", ReadToken("version", "7", later)),
        ("s", "b", None),
        ("s", "c", ReadToken("value", "3", None)),
    ]
    assert adapter.write_many_if(checks, [("s", "a", b"1", KEEP), ("s", "b", None, None)]) is True
    put, delete, check = sent[0]["TransactItems"]
    assert put["Put"]["ConditionExpression"] == "#n = :n AND #e > :now" and put["Put"]["Item"]["exp"] == {
        "N": str(later)
    }
    assert delete["Delete"]["ConditionExpression"] == "attribute_not_exists(#p) OR #e <= :now"
    assert check["ConditionCheck"]["ConditionExpression"] == "#v = :v AND attribute_not_exists(#n)"


def test_more_than_4_mb_is_refused_before_sending(stubbed: tuple[DynamoDBAdapter, Stubber]) -> None:
    adapter, _stub = stubbed  # no response queued: a request sent would fail the test
    big = b'"' + b"x" * 390_000 + b'"'
    writes = [("s", f"k{i}", big, None) for i in range(11)]
    with pytest.raises(StateError, match="at most 4 MB") as refused:
        adapter.write_many_if([(s, k, None) for s, k, _, _ in writes], writes)
    assert refused.value.code == "UNSUPPORTED"


def test_a_transaction_of_sets_on_entries_it_wrote_last_skips_its_read(moto_endpoint: str) -> None:
    """The remembered guess (decision 0018) saves the read, and is only ever checked: another
    writer, our own single write, a failed condition and a delete each still give exact old
    values, results and conditions, and nothing half-applied."""
    from collections import Counter

    from dynamodb_test_helpers import new_table_name

    config = adapter_config(moto_endpoint, new_table_name(), create_table=True)
    scope = f"tx-{secrets.token_hex(4)}"
    sent: Counter[str] = Counter()
    with open_store(adapter="dynamodb", adapter_config=config) as store, open_store(
        adapter="dynamodb", adapter_config=config
    ) as other:
        store.adapter._client.meta.events.register(  # type: ignore[attr-defined]
            "before-call.dynamodb", lambda model, **_: sent.update([model.name])
        )

        def transact(ops: list[dict[str, Any]], **kw: Any) -> tuple[Any, dict[str, int]]:
            sent.clear()
            return store.transact(ops, **kw), dict(sent)

        def sets(value: int) -> list[dict[str, Any]]:
            return [{"op": "set", "scope": scope, "key": k, "value": value} for k in ("a", "b")]

        done, requests = transact(sets(1))  # not remembered yet: read, then write
        assert [r.old_value for r in done.results] == [None, None]
        assert requests == {"BatchGetItem": 1, "TransactWriteItems": 1}
        done, requests = transact(sets(2))  # remembered: one request, the old values exact
        assert [r.old_value for r in done.results] == [1, 1] and requests == {"TransactWriteItems": 1}

        other.set(scope, "b", "theirs")  # another writer: the guess fails, nothing applied, read again
        done, requests = transact(sets(3))
        assert [r.old_value for r in done.results] == [2, "theirs"]
        assert requests == {"TransactWriteItems": 2, "BatchGetItem": 1}
        store.set(scope, "a", "mine")  # our own single write forgets the entry: no wasted request
        done, requests = transact(sets(4))
        assert [r.old_value for r in done.results] == ["mine", 3]
        assert requests == {"BatchGetItem": 1, "TransactWriteItems": 1}

        wrong = [{"scope": scope, "key": "a", "expected": 3}]
        done, requests = transact(sets(5), conditions=wrong)  # a failed condition: read, report it
        assert (done.committed, done.failed_condition, done.current) == (False, 0, 4)
        assert other.get_many(scope, ["a", "b"]) == {"a": 4, "b": 4}
        right = [{"scope": scope, "key": "a", "expected": 4}, {"scope": scope, "key": "c", "expected": None}]
        done, requests = transact(sets(6), conditions=right)  # holding, on remembered entries: one request
        assert done.committed and [r.old_value for r in done.results] == [4, 4]
        assert requests == {"TransactWriteItems": 1}

        gone = [{"op": "delete", "scope": scope, "key": k} for k in ("a", "b")]
        done, requests = transact(gone)
        assert done.results == [6, 6] and requests == {"TransactWriteItems": 1}
        done, requests = transact(sets(7))  # deleted entries are not remembered: read first
        assert [r.old_value for r in done.results] == [None, None]
        assert requests == {"BatchGetItem": 1, "TransactWriteItems": 1}
        assert other.get_many(scope, ["a", "b", "c"]) == {"a": 7, "b": 7, "c": None}

"""The lean client on dynalite and moto: the same answers and the same exceptions as the botocore
client it sits beside, signatures botocore computes the same way on the wire, keep-alive
connections that survive a server closing them, and a batch round's faults (lost replies,
throttling, corrupted replies) handled exactly as the botocore path handles them."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import ssl
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError
from faulty_proxy import CORRUPT, CUT_REPLY, DROP, THROTTLE, faulty_proxy
from iii_state_dynamodb import DynamoDBAdapter
from iii_state_dynamodb.lean import LeanClient

from iii_state_core import BackendError, open_store


def _lean(adapter: DynamoDBAdapter) -> LeanClient:
    assert isinstance(adapter._lean, LeanClient)
    return adapter._lean


def _key(scope: str, key: str) -> dict[str, Any]:
    return {"pk": {"S": "#" + scope}, "sk": {"S": "#" + key}}


def _without_metadata(reply: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in reply.items() if k != "ResponseMetadata"}


def test_replies_and_errors_are_botocores(adapter: DynamoDBAdapter, endpoint: str) -> None:
    """Each operation through both clients on twin items: equal replies, equal exceptions."""
    client, lean, table = adapter._client, _lean(adapter), adapter.table
    scope = f"lean-{secrets.token_hex(3)}"
    blob = {
        "M": {"b": {"B": b"\x00\xff"}, "bs": {"BS": [b"a", b"\x01"]}, "l": {"L": [{"B": b"z"}, {"N": "1"}]}}
    }
    twins: list[dict[str, Any]] = []
    for via, key in ((client, "boto"), (lean, "lean")):
        item = {**_key(scope, key), "val": {"S": '{"n":1}'}, "ver": {"N": "7"}}
        first = via.put_item(TableName=table, Item=item, ReturnValues="ALL_OLD")
        second = via.put_item(TableName=table, Item={**item, "ver": {"N": "8"}}, ReturnValues="ALL_OLD")
        got = via.get_item(TableName=table, Key=_key(scope, key), ConsistentRead=True)
        # a foreign item holding blobs (written by botocore, which encodes them): read back as bytes
        client.put_item(TableName=table, Item={**_key(scope, key + "-b"), **{"val": {"S": "1"}}, "bin": blob})
        blobs = via.get_item(TableName=table, Key=_key(scope, key + "-b"), ConsistentRead=True)
        updated = via.update_item(
            TableName=table,
            Key=_key(scope, key),
            UpdateExpression="SET #v = :v",
            ExpressionAttributeNames={"#v": "ver"},
            ExpressionAttributeValues={":v": {"N": "9"}},
            ReturnValues="ALL_NEW",
        )
        errors = []
        calls: list[dict[str, Any]] = [
            {
                "TableName": table,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(pk)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            },
            {"TableName": "no-such-table-" + secrets.token_hex(3), "Item": item},
            {"TableName": table, "Item": {"pk": {"S": "#only-pk"}}},  # ValidationException
        ]
        for params in calls:
            with pytest.raises(ClientError) as info:
                via.put_item(**params)
            errors.append(
                (type(info.value), info.value.operation_name, _without_metadata(info.value.response))
            )
        gone = via.delete_item(TableName=table, Key=_key(scope, key), ReturnValues="ALL_OLD")
        client.delete_item(TableName=table, Key=_key(scope, key + "-b"))
        twins.append(
            {
                "replies": [_without_metadata(r) for r in (first, second, got, blobs, updated, gone)],
                "errors": errors,
                "status": second["ResponseMetadata"]["HTTPStatusCode"],
            }
        )
    boto, ours = twins
    for side in (boto, ours):  # the twins' own keys differ: compare what the keys hold
        for reply in side["replies"]:
            for field in ("Attributes", "Item"):
                reply.get(field, {}).pop("sk", None)
        for _kind, _op, response in side["errors"]:
            response.get("Item", {}).pop("sk", None)
    assert ours == boto
    assert ours["replies"][3]["Item"]["bin"] == blob
    codes = [response["Error"]["Code"] for _kind, _op, response in ours["errors"]]
    assert codes == ["ConditionalCheckFailedException", "ResourceNotFoundException", "ValidationException"]
    assert ours["errors"][0][0] is client.exceptions.ConditionalCheckFailedException


def test_reads_and_batch_requests_are_botocores(adapter: DynamoDBAdapter) -> None:
    """A listing's Queries through both clients (pages with their ``LastEvaluatedKey``, counts,
    items holding blobs, a Query's error reply) and the sweeper's Scan, BatchGetItem and
    BatchWriteItem: all equal."""
    client, lean, table = adapter._client, _lean(adapter), adapter.table
    scope = f"lean-q-{secrets.token_hex(3)}"
    for n in range(5):
        item = {**_key(scope, f"k{n}"), "val": {"S": f"{n}"}, "bin": {"B": b"\x00%d" % n}}
        client.put_item(TableName=table, Item=item)
    missing = "no-such-table-" + secrets.token_hex(3)
    partition = {":p": {"S": "#" + scope}}
    pages = {"TableName": table, "KeyConditionExpression": "pk = :p", "ConsistentRead": True, "Limit": 2}
    counted = {**pages, "Select": "COUNT", "FilterExpression": "attribute_exists(val)"}
    del counted["Limit"]
    replies: list[list[dict[str, Any]]] = []
    for via in (client, lean):
        got: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while True:
            params = {**pages, "ExpressionAttributeValues": partition}
            if start is not None:
                params["ExclusiveStartKey"] = start
            reply = via.query(**params)
            got.append(_without_metadata(reply))
            start = reply.get("LastEvaluatedKey")
            if not start:
                break
        got.append(_without_metadata(via.query(**counted, ExpressionAttributeValues=partition)))
        with pytest.raises(ClientError) as info:
            via.query(**{**pages, "TableName": missing}, ExpressionAttributeValues=partition)
        got.append({"error": type(info.value).__name__, **_without_metadata(info.value.response)})
        replies.append(got)
    for via in (client, lean):  # the sweeper's requests: a Scan, a BatchGetItem, a BatchWriteItem
        got = replies[0 if via is client else 1]
        scanned = via.scan(TableName=table, FilterExpression="pk = :p AND attribute_exists(bin)",
                           ExpressionAttributeValues=partition,
                           ConsistentRead=True)  # fmt: skip
        got.append(sorted((item["sk"]["S"], item["bin"]["B"]) for item in scanned["Items"]))
        keys = [_key(scope, f"k{n}") for n in range(5)]
        fetched = via.batch_get_item(RequestItems={table: {"Keys": keys, "ConsistentRead": True}})
        got.append(sorted((item["sk"]["S"], item["bin"]["B"]) for item in fetched["Responses"][table]))
        marker = {"PutRequest": {"Item": {**_key(scope, "marker"), "ttl": {"N": "1"}}}}
        got.append(_without_metadata(via.batch_write_item(RequestItems={table: [marker]})))
    boto, ours = replies
    assert ours == boto
    assert len(ours) == 3 + 2 + 3  # three pages, the count, the error; a scan, a batch get, a batch write
    assert ours[5] == ours[6] == [(f"#k{n}", b"\x00%d" % n) for n in range(5)]
    blobs = [item["bin"]["B"] for page in ours[:3] for item in page["Items"]]
    assert blobs == [b"\x00%d" % n for n in range(5)]
    assert ours[3]["Count"] == 5


def test_requests_on_the_wire_are_signed_as_botocore_signs_them(
    endpoint: str, session_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy re-signs each lean request it receives with botocore's SigV4Auth (the request's
    own X-Amz-Date as the clock): the Authorization headers match, token included."""
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session/token+" + secrets.token_hex(8))
    with (
        faulty_proxy(endpoint) as proxy,
        open_store(
            adapter="dynamodb", adapter_config={"table_name": session_table, "endpoint_url": proxy.url}
        ) as store,
    ):
        scope = f"signed-{secrets.token_hex(3)}"
        store.set_many(scope, {"a": 1, "b": "é中😀"})
        store.delete_many(scope, ["a", "b"])
        adapter = store.adapter
        assert isinstance(adapter, DynamoDBAdapter)
        frozen = adapter._session.get_credentials().get_frozen_credentials()
        lean = [r for r in proxy.received if "lean" in r[1].get("User-Agent", "")]
        assert len(lean) == 4
        for _operation, headers, body in lean:
            assert headers["X-Amz-Security-Token"] == frozen.token
            request = AWSRequest(
                method="POST",
                url=proxy.url + "/",
                data=body,
                headers={k: headers[k] for k in ("Content-Type", "X-Amz-Target")},
            )
            when = datetime.datetime.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
            with mock.patch("botocore.auth.get_current_datetime", return_value=when):
                SigV4Auth(frozen, "dynamodb", "us-east-1").add_auth(request)
            assert headers["Authorization"] == request.headers["Authorization"]


def test_a_batch_rounds_lost_replies_are_handled_as_on_the_botocore_path(
    endpoint: str, session_table: str
) -> None:
    """Throttled: retried. A set whose reply is cut: that one an unknown outcome, never resent,
    the others answered. An update whose put is dropped: settled (read, resent once). A corrupted
    reply: an unknown outcome. The connection cut each time is replaced for the next request."""
    with (
        faulty_proxy(endpoint) as proxy,
        open_store(
            adapter="dynamodb", adapter_config={"table_name": session_table, "endpoint_url": proxy.url}
        ) as store,
    ):
        assert isinstance(_lean(store.adapter), LeanClient)  # type: ignore[arg-type]
        scope = f"lean-faults-{secrets.token_hex(3)}"
        keys = [f"k{i}" for i in range(6)]
        assert {
            k: r.old_value for k, r in store.set_many(scope, {key: {"n": 0} for key in keys}).items()
        } == dict.fromkeys(keys, None)
        sent = proxy.seen["PutItem"]
        proxy.fail("PutItem", THROTTLE, 2)
        assert all(
            r.old_value == {"n": 0} for r in store.set_many(scope, {key: {"n": 1} for key in keys}).values()
        )
        assert proxy.seen["PutItem"] == sent + 6 + 2

        sent = proxy.seen["PutItem"]
        proxy.fail("PutItem", CUT_REPLY)
        answer = store.trigger(
            {
                "function_id": "state::batch",
                "payload": {
                    "ops": [{"op": "set", "scope": scope, "key": k, "value": {"n": 2}} for k in keys]
                },
            }
        )
        assert isinstance(answer, list)
        lost = [a for a in answer if isinstance(a, dict) and "error" in a]
        assert len(lost) == 1 and lost[0]["error"]["code"] == "SET_ERROR"
        assert "may or may not have been applied" in lost[0]["error"]["message"]
        assert sum(1 for a in answer if a == {"old_value": {"n": 1}, "new_value": {"n": 2}}) == 5
        assert proxy.seen["PutItem"] == sent + 6  # the cut one was not resent
        assert store.get_many(scope, keys) == {key: {"n": 2} for key in keys}  # it was applied, once

        sent = proxy.seen["PutItem"]
        proxy.fail("PutItem", DROP)
        ops = [
            {"op": "update", "scope": scope, "key": k, "ops": [{"type": "increment", "path": "n", "by": 1}]}
            for k in keys
        ]
        answer = store.trigger({"function_id": "state::batch", "payload": {"ops": ops}})
        assert answer == [{"old_value": {"n": 2}, "new_value": {"n": 3}}] * 6
        assert proxy.seen["PutItem"] == sent + 6 + 1  # the dropped put was resent once, after a read

        store.set_many(scope, {"m1": "marker", "m2": "marker"})
        proxy.fail("PutItem", CORRUPT)  # whichever put comes first: its old value "marker" comes back changed
        ops = [{"op": "set", "scope": scope, "key": k, "value": "x"} for k in ("m1", "m2")]
        answer = store.trigger({"function_id": "state::batch", "payload": {"ops": ops}})
        assert isinstance(answer, list)
        corrupted = [a for a in answer if isinstance(a, dict) and "error" in a]
        assert len(corrupted) == 1 and corrupted[0]["error"]["code"] == "SET_ERROR", answer
        assert "may or may not have been applied" in corrupted[0]["error"]["message"]
        assert {"old_value": "marker", "new_value": "x"} in answer


def test_a_keep_alive_connection_the_server_closed_is_replaced(adapter: DynamoDBAdapter) -> None:
    lean, table = _lean(adapter), adapter.table
    lean.get_item(TableName=table, Key=_key("ka", "k"))
    if lean._local.held is None:  # moto answers "Connection: close": a new connection each time
        assert lean._open == set()
        assert lean.get_item(TableName=table, Key=_key("ka", "k")) is not None
        return
    conn = lean._local.held[1]
    assert lean.get_item(TableName=table, Key=_key("ka", "k")) is not None
    assert lean._local.held[1] is conn  # kept alive
    assert conn.sock is not None
    conn.sock.shutdown(2)  # as a server closing an idle connection leaves it: readable at EOF
    assert lean.get_item(TableName=table, Key=_key("ka", "k")) is not None
    assert lean._local.held[1] is not conn


def test_connection_refused_and_no_credentials_are_botocores_errors(
    adapter: DynamoDBAdapter, session_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lean = _lean(adapter)
    dead = LeanClient(adapter._client, None)
    with pytest.raises(NoCredentialsError):
        dead.put_item(TableName=session_table, Item=_key("x", "y"))
    monkeypatch.setattr(dead, "_credentials", lean._credentials)
    monkeypatch.setattr(dead, "_port", 1)  # nothing listens on port 1
    with pytest.raises(EndpointConnectionError):
        dead.put_item(TableName=session_table, Item=_key("x", "y"))
    assert issubclass(EndpointConnectionError, BotoCoreError)


def test_lean_requests_false_sends_everything_with_botocore(config: dict[str, Any]) -> None:
    with open_store(adapter="dynamodb", adapter_config={**config, "lean_requests": False}) as store:
        adapter = store.adapter
        assert isinstance(adapter, DynamoDBAdapter) and adapter._lean is adapter._client
        assert store.set_many("lean-off", {"a": 1})["a"].new_value == 1


def test_no_credentials_in_a_batch_is_a_clear_error(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(adapter="dynamodb", adapter_config=config) as store:
        adapter = store.adapter
        assert isinstance(adapter, DynamoDBAdapter)
        monkeypatch.setattr(_lean(adapter), "_credentials", None)
        with pytest.raises(BackendError, match="Unable to locate credentials"):
            store.set_many("lean-nocreds", {"a": 1, "b": 2})


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (cryptography comes with moto)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def test_https_with_the_ca_bundle_botocore_uses(
    endpoint: str, session_table: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An https endpoint whose certificate only ``AWS_CA_BUNDLE`` trusts: botocore (opening,
    single calls) and the lean client (the batch's writes) both verify it and both get through."""
    cert, key = _self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
    with (
        faulty_proxy(endpoint, tls=tls) as proxy,
        open_store(
            adapter="dynamodb", adapter_config={"table_name": session_table, "endpoint_url": proxy.url}
        ) as store,
    ):
        assert proxy.url.startswith("https://")
        assert isinstance(_lean(store.adapter), LeanClient)  # type: ignore[arg-type]
        scope = f"tls-{secrets.token_hex(3)}"
        assert [r.new_value for r in store.set_many(scope, {"a": 1, "b": 2}).values()] == [1, 2]
        assert store.get(scope, "b") == 2
        assert sum("lean" in headers.get("User-Agent", "") for _op, headers, _body in proxy.received) == 2


@pytest.mark.parametrize(
    ("endpoint_url", "env", "why"),
    [
        ("http://127.0.0.1:8000", {}, None),
        ("https://dynamodb.eu-west-1.amazonaws.com/", {}, None),
        ("http://127.0.0.1:8000/prefix", {}, "the endpoint has a path"),
        ("http://127.0.0.1:8000", {"HTTP_PROXY": "http://127.0.0.1:3128"}, "requests go through a proxy"),
        ("http://127.0.0.1:8000", {"HTTP_PROXY": "http://127.0.0.1:3128", "NO_PROXY": "127.0.0.1"}, None),
    ],
)
def test_endpoints_only_botocore_can_serve_keep_botocore(
    endpoint_url: str, env: dict[str, str], why: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path in the URL or a proxy: the adapter's batch writes stay on botocore (no server needed)."""
    from iii_state_dynamodb.client import make_client, make_lean, make_session
    from iii_state_dynamodb.config import parse_settings
    from iii_state_dynamodb.lean import lean_unsupported

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = parse_settings({"table_name": "t-lean", "endpoint_url": endpoint_url})
    session = make_session(settings)
    client = make_client(settings, session, "us-east-1")
    assert lean_unsupported(client) == why
    assert isinstance(make_lean(settings, session, client), LeanClient) is (why is None)
    off = parse_settings({"table_name": "t-lean", "endpoint_url": endpoint_url, "lean_requests": False})
    assert make_lean(off, session, client) is None

"""Raw boto3 beside the dynamodb adapter: the same minimum work, written directly against a client."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from importlib.metadata import version
from typing import Any, ClassVar

import boto3  # type: ignore[import-untyped, unused-ignore]
from botocore.exceptions import ClientError  # type: ignore[import-untyped, unused-ignore]

from . import workload as w
from .raw import RawSide


class RawCalls:
    """The same work as the adapter, written directly against a boto3 client."""

    def __init__(self, client: Any, table: str, scope: str) -> None:
        self.client, self.table, self.pk = client, table, "#" + scope

    def key(self, i: int) -> dict[str, Any]:
        """Items 0..w.KEYS-1 are the working set; index -1 is the compare-and-set counter."""
        name = "cas" if i < 0 else f"r{i % w.KEYS}"
        return {"pk": {"S": self.pk}, "sk": {"S": "#" + name}}

    def get(self, i: int) -> object:
        item = self.client.get_item(TableName=self.table, Key=self.key(i), ConsistentRead=True)["Item"]
        return json.loads(item["val"]["S"])

    def put(self, i: int, value: Any, **condition: Any) -> dict[str, Any]:
        item = {**self.key(i), "val": {"S": json.dumps(value, separators=(",", ":"))},
                "ver": {"N": str(int.from_bytes(os.urandom(8), "big") >> 1)}}  # fmt: skip
        reply: dict[str, Any] = self.client.put_item(TableName=self.table, Item=item, **condition)
        return reply

    def set(self, i: int, value: Any) -> object:
        old = self.put(i, value, ReturnValues="ALL_OLD").get("Attributes")
        return json.loads(old["val"]["S"]) if old else None

    def update(self, i: int) -> object:
        while True:
            item = self.client.get_item(TableName=self.table, Key=self.key(i), ConsistentRead=True)["Item"]
            value = json.loads(item["val"]["S"])
            value["n"] += 1
            try:
                self.put(i, value, ConditionExpression="#n = :n", ExpressionAttributeNames={"#n": "ver"},
                         ExpressionAttributeValues={":n": item["ver"]})  # fmt: skip
                return value
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise

    def compare_and_set(self, i: int, expected: Any, new: Any) -> object:
        item = self.client.get_item(TableName=self.table, Key=self.key(i), ConsistentRead=True)["Item"]
        if json.loads(item["val"]["S"]) != expected:
            return False
        try:
            self.put(
                i, new, ConditionExpression="#n = :n", ExpressionAttributeNames={"#n": "ver"},
                ExpressionAttributeValues={":n": item["ver"]},
            )  # fmt: skip
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def list_entries(self, _: int) -> object:
        reply = self.client.query(
            TableName=self.table, KeyConditionExpression="pk = :p", ConsistentRead=True, Limit=w.PAGE,
            ExpressionAttributeValues={":p": {"S": self.pk}}, ProjectionExpression="sk, val",
        )  # fmt: skip
        return [(item["sk"]["S"][1:], json.loads(item["val"]["S"])) for item in reply["Items"]]


#: Dummy credentials for the local endpoints (neither dynalite nor moto checks them).
DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def server_facts(kind: str) -> str:
    if kind == "moto":
        return f"moto {version('moto')} (serialised runner)"
    from iii_state_testsupport import DYNALITE_VERSION, find_dynalite

    try:
        node = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        find_dynalite()
    except (OSError, subprocess.SubprocessError):
        node = "?"
    return f"dynalite {DYNALITE_VERSION} on node {node}"


class RawDynamo(RawSide):
    described: ClassVar[dict[str, str]] = {
        "get": "get_item (ConsistentRead) + json.loads",
        "set": "put_item ReturnValues=ALL_OLD + json.loads(old)",
        "delete": "delete_item ReturnValues=ALL_OLD + json.loads(old)",
        "update1": "get_item; change; put_item conditional on the version, looped",
        "update10": "as update (1 op), ten changes in Python",
        "compare_and_set": "get_item; compare; conditional put_item",
        "list_entries": "query Limit=100 (ConsistentRead) + json.loads each",
    }

    def __init__(self, endpoint: str, table: str) -> None:
        self.client = boto3.session.Session().client(
            "dynamodb", endpoint_url=endpoint, region_name="us-east-1"
        )
        self.base = RawCalls(self.client, table, f"raw-{secrets.token_hex(3)}")

    def populate(self) -> None:
        for i in range(w.KEYS):
            self.base.set(i, w.VALUE if i != w.KEYS - 1 else {"v": 0})

    def _pool_key(self, j: int) -> dict[str, Any]:
        return {"pk": {"S": self.base.pk}, "sk": {"S": f"#d{j}"}}

    def fill_deletes(self, start: int, count: int) -> None:
        text = w.dumps(w.VALUE).decode()
        for first in range(start, start + count, 25):
            requests = [
                {"PutRequest": {"Item": {**self._pool_key(j), "val": {"S": text}, "ver": {"N": "1"}}}}
                for j in range(first, min(first + 25, start + count))
            ]
            reply = self.client.batch_write_item(RequestItems={self.base.table: requests})
            while reply.get("UnprocessedItems"):
                reply = self.client.batch_write_item(RequestItems=reply["UnprocessedItems"])

    def get(self, i: int) -> Any:
        return self.base.get(i % (w.KEYS - 1))

    def set(self, i: int) -> Any:
        return self.base.set(i % (w.KEYS - 1), w.VALUE)

    def delete(self, j: int) -> Any:
        reply = self.client.delete_item(
            TableName=self.base.table, Key=self._pool_key(j), ReturnValues="ALL_OLD"
        )
        old = reply.get("Attributes")
        return json.loads(old["val"]["S"]) if old else None

    def update1(self, i: int) -> Any:
        return self.base.update(i % (w.KEYS - 1))

    def update10(self, i: int) -> Any:
        index = i % (w.KEYS - 1)
        while True:
            item = self.client.get_item(
                TableName=self.base.table, Key=self.base.key(index), ConsistentRead=True
            )
            value = json.loads(item["Item"]["val"]["S"])
            try:
                self.base.put(
                    index, w.ten_changes(value), ConditionExpression="#n = :n",
                    ExpressionAttributeNames={"#n": "ver"},
                    ExpressionAttributeValues={":n": item["Item"]["ver"]},
                )  # fmt: skip
                return value
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise

    def compare_and_set(self, n: int) -> bool:
        return bool(self.base.compare_and_set(w.KEYS - 1, {"v": n}, {"v": n + 1}))

    def list_entries(self) -> Any:
        return self.base.list_entries(0)

    def close(self) -> None:
        self.client.close()

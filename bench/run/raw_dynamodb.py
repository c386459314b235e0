"""Raw boto3 beside the dynamodb adapter: ``bench.bench_dynamodb.Raw`` plus the operations it lacks."""

from __future__ import annotations

import json
import secrets
import subprocess
from importlib.metadata import version
from typing import Any, ClassVar

import boto3  # type: ignore[import-untyped, unused-ignore]
from botocore.exceptions import ClientError  # type: ignore[import-untyped, unused-ignore]

from bench.bench_dynamodb import KEYS as RAW_KEYS
from bench.bench_dynamodb import Raw

from . import workload as w
from .raw import RawSide

assert RAW_KEYS == w.KEYS, "bench_dynamodb.Raw cycles through a different number of keys"


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
        "get": "get_item (ConsistentRead) + json.loads (bench_dynamodb.Raw)",
        "set": "put_item ReturnValues=ALL_OLD + json.loads(old) (bench_dynamodb.Raw)",
        "delete": "delete_item ReturnValues=ALL_OLD + json.loads(old)",
        "update1": "get_item; change; put_item conditional on the version, looped (bench_dynamodb.Raw)",
        "update10": "as update (1 op), ten changes in Python",
        "compare_and_set": "get_item; compare; conditional put_item (bench_dynamodb.Raw)",
        "list_entries": "query Limit=100 (ConsistentRead) + json.loads each (bench_dynamodb.Raw)",
    }

    def __init__(self, endpoint: str, table: str) -> None:
        self.client = boto3.session.Session().client(
            "dynamodb", endpoint_url=endpoint, region_name="us-east-1"
        )
        self.base = Raw(self.client, table, f"raw-{secrets.token_hex(3)}")

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

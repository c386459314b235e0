"""DynamoDB get/set/update/compare_and_set/list_entries through iii-state beside raw boto3 doing
the same work, on the same server, in the same run.

Raw boto3 (a plain ``boto3`` client, default config), per operation:
- get: ``get_item`` (ConsistentRead) + ``json.loads`` of the value;
- set: ``put_item`` of the same item (value, random version) with ``ReturnValues=ALL_OLD`` +
  ``json.loads`` of the old value;
- update: ``get_item`` → decode → increment → encode → conditional ``put_item`` on the version,
  looped until it sticks;
- compare_and_set: ``get_item`` → compare → conditional ``put_item``;
- list_entries: ``query`` of 100 items (ConsistentRead, the same projection) + ``json.loads``
  of each value.

Each operation alternates ours and raw for ``--rounds`` short rounds and keeps each side's best
round, so load from other processes skews both sides alike (short rounds follow load changes).

Run: python -m bench.bench_dynamodb [--server dynalite|moto|both] [--endpoint-url URL]
                                    [--seconds 0.5] [--rounds 8]
Without ``--endpoint-url`` it starts dynalite and/or moto on free loopback ports (the shared
``iii_state_testsupport`` module) with dummy credentials, and stops them after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import boto3  # type: ignore[import-untyped, unused-ignore]
from botocore.exceptions import ClientError  # type: ignore[import-untyped, unused-ignore]

from bench.harness import Measurement, Pair, measure, table
from iii_state_core import open_store

KEYS = 200
PAGE = 100
Op = Callable[[int], object]
DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@contextlib.contextmanager
def _endpoint(kind: str, given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    from iii_state_testsupport import dynalite_server, moto_server

    for name, value in DUMMY_ENV.items():
        os.environ.setdefault(name, value)
    starter = dynalite_server if kind == "dynalite" else moto_server
    with starter() as server:
        yield server.url


def _best(runs: list[Measurement]) -> Measurement:
    return max(runs, key=lambda m: m.ops_per_s)


def _pair(name: str, ours: Op, raw: Op | None, seconds: float, rounds: int) -> Pair:
    mine: list[Measurement] = []
    theirs: list[Measurement] = []
    for _ in range(rounds):
        mine.append(measure(name, ours, seconds=seconds))
        if raw is not None:
            theirs.append(measure(f"raw {name}", raw, seconds=seconds))
    return Pair(name, _best(mine), _best(theirs) if theirs else None)


class Raw:
    """The same work as the adapter, written directly against a boto3 client."""

    def __init__(self, client: Any, table: str, scope: str) -> None:
        self.client, self.table, self.pk = client, table, "#" + scope

    def key(self, i: int) -> dict[str, Any]:
        """Items 0..KEYS-1 are the working set; index -1 is the compare-and-set counter."""
        name = "cas" if i < 0 else f"r{i % KEYS}"
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
            TableName=self.table, KeyConditionExpression="pk = :p", ConsistentRead=True, Limit=PAGE,
            ExpressionAttributeValues={":p": {"S": self.pk}}, ProjectionExpression="sk, val",
        )  # fmt: skip
        return [(item["sk"]["S"][1:], json.loads(item["val"]["S"])) for item in reply["Items"]]


def run(kind: str, endpoint: str, seconds: float, rounds: int) -> str:
    table_name = f"iii-state-bench-{secrets.token_hex(4)}"
    config = {"table_name": table_name, "endpoint_url": endpoint, "create_table": True}
    store = open_store(adapter="dynamodb", adapter_config=config)
    client = boto3.session.Session().client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    scope = "bench"
    raw = Raw(client, table_name, "raw")
    value = {"n": 1, "name": "alice", "tags": ["a", "b"]}
    for i in range(KEYS):
        store.set(scope, f"k{i}", value)
        raw.set(i, value)
    increment = [{"type": "increment", "path": "n", "by": 1}]
    # Each side counts up its own entry: every compare_and_set finds what it expects and applies.
    counters = {"ours": 0, "raw": 0}

    def ours_cas(_: int) -> object:
        n = counters["ours"]
        assert store.compare_and_set(scope, "cas", {"v": n}, {"v": n + 1}).outcome == "applied"
        counters["ours"] = n + 1
        return n

    def raw_cas(_: int) -> object:
        n = counters["raw"]
        assert raw.compare_and_set(-1, {"v": n}, {"v": n + 1})
        counters["raw"] = n + 1
        return n

    store.set(scope, "cas", {"v": 0})
    raw.set(-1, {"v": 0})
    ops: list[tuple[str, Op, Op | None]] = [
        ("get", lambda i: store.get(scope, f"k{i % KEYS}"), raw.get),
        ("set", lambda i: store.set(scope, f"k{i % KEYS}", value), lambda i: raw.set(i, value)),
        ("update (1 increment)", lambda i: store.update(scope, f"k{i % KEYS}", increment), raw.update),
        ("compare_and_set", ours_cas, raw_cas),
        (f"list_entries (page of {PAGE})", lambda i: store.list_entries(scope, None, PAGE), raw.list_entries),
    ]  # fmt: skip
    try:
        pairs = [_pair(name, ours, theirs, seconds, rounds) for name, ours, theirs in ops]
    finally:
        store.close()
        client.delete_table(TableName=table_name)
    return table(f"DynamoDB on {kind} ({endpoint}) via iii-state vs raw boto3", pairs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", choices=("dynalite", "moto", "both"), default="both")
    parser.add_argument("--endpoint-url", help="use this DynamoDB endpoint instead of starting a server")
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds per operation")
    args = parser.parse_args()
    kinds = (
        ["endpoint"]
        if args.endpoint_url
        else (["dynalite", "moto"] if args.server == "both" else [args.server])
    )
    for kind in kinds:
        with _endpoint(kind, args.endpoint_url) as endpoint:
            print(run(kind, endpoint, args.seconds, args.rounds))
            print()


if __name__ == "__main__":
    main()

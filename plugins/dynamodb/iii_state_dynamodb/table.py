"""Checking the table at open: it exists, has our key schema, is usable; or creating it on request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from iii_state_core import BackendError, ConfigError

from .calls import TABLE_MISSING, AwsError, Caller
from .layout import DEADLINE, EXPIRY_INDEX, PK, SHARD, SK, STASH_KEY, STASH_SCOPE, TTL, VERSION

log = logging.getLogger("iii_state.dynamodb")
#: Statuses in which items can be read and written.
USABLE = frozenset({"ACTIVE", "UPDATING"})
_POLL_FIRST = 0.02
_POLL_CAP = 1.0


def _describe(client: Any, caller: Caller) -> dict[str, Any] | None:
    """The table's description, or ``None`` when it does not exist."""
    try:
        reply = caller("DescribeTable", client.describe_table, write=False, TableName=caller.table)
    except AwsError as exc:
        if exc.aws_code == TABLE_MISSING:
            return None
        raise
    table: dict[str, Any] = reply["Table"]
    return table


def _check_schema(table: dict[str, Any], name: str) -> None:
    keys = {k["AttributeName"]: k["KeyType"] for k in table.get("KeySchema", [])}
    types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    if keys != {PK: "HASH", SK: "RANGE"} or types.get(PK) != "S" or types.get(SK) != "S":
        found = ", ".join(f"{n} ({types.get(n, '?')}, {t})" for n, t in keys.items()) or "none"
        raise ConfigError(
            f"DynamoDB table {name!r} has key schema {found}; the dynamodb adapter needs partition "
            f"key '{PK}' (S, HASH) and sort key '{SK}' (S, RANGE). Use another `table_name`, or "
            "let the adapter create a new table with `create_table: true`"
        )


#: The sparse deadline index (decision 0013): shard + deadline, carrying what a take needs.
_INDEX: dict[str, Any] = {
    "IndexName": EXPIRY_INDEX,
    "KeySchema": [
        {"AttributeName": SHARD, "KeyType": "HASH"},
        {"AttributeName": DEADLINE, "KeyType": "RANGE"},
    ],
    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": [VERSION, STASH_SCOPE, STASH_KEY]},
}
_INDEX_ATTRIBUTES = [
    {"AttributeName": SHARD, "AttributeType": "N"},
    {"AttributeName": DEADLINE, "AttributeType": "N"},
]


def _index_state(client: Any, caller: Caller, table: dict[str, Any], add: bool) -> str | None:
    """``None`` when the table's deadline index is ACTIVE; else why ``take_expired`` scans,
    after asking DynamoDB to add the index when ``add`` (a table the adapter may manage)."""
    status = next(
        (
            i.get("IndexStatus", "ACTIVE")
            for i in table.get("GlobalSecondaryIndexes", [])
            if i["IndexName"] == EXPIRY_INDEX
        ),
        None,
    )
    if status == "ACTIVE":
        return None
    scan = "take_expired scans the whole table (consistent reads of every item, each sweep)"
    table_index = f"DynamoDB table {caller.table!r}: index {EXPIRY_INDEX!r}"
    until = "until a process opens the table with the index ACTIVE"
    if status is not None:
        return f"{table_index} is {status}; {until}, {scan}"
    if not add:
        return (
            f"DynamoDB table {caller.table!r} has no index {EXPIRY_INDEX!r}, so {scan}; "
            "`create_table: true` lets the adapter add it (see the README)"
        )
    try:
        reply = caller(
            "UpdateTable",
            client.update_table,
            write=False,  # a repeat is refused (the index exists): handled below
            TableName=caller.table,
            # the table's own with the index's: moto replaces the definitions with what is sent
            AttributeDefinitions=[
                *(
                    a
                    for a in table.get("AttributeDefinitions", [])
                    if a["AttributeName"] not in (SHARD, DEADLINE)
                ),
                *_INDEX_ATTRIBUTES,
            ],
            GlobalSecondaryIndexUpdates=[{"Create": _INDEX}],
        )
    except AwsError as exc:
        return f"{table_index} was not added (UpdateTable: {exc.aws_code or exc}), so {scan}"
    described = reply.get("TableDescription", {}).get("GlobalSecondaryIndexes", [])
    if not any(i.get("IndexName") == EXPIRY_INDEX for i in described):  # dynalite: accepted, ignored
        return f"{table_index} was asked for and not added by the server, so {scan}"
    return f"{table_index} is being added; {until}, {scan}"


def _create(client: Any, caller: Caller) -> bool:
    """Create the table; ``False`` when another process created it first."""
    try:
        caller(
            "CreateTable",
            client.create_table,
            write=False,  # idempotent here: a repeat answers ResourceInUseException, handled below
            TableName=caller.table,
            AttributeDefinitions=[
                {"AttributeName": PK, "AttributeType": "S"},
                {"AttributeName": SK, "AttributeType": "S"},
                *_INDEX_ATTRIBUTES,
            ],
            KeySchema=[{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[_INDEX],
            BillingMode="PAY_PER_REQUEST",
        )
    except AwsError as exc:
        # Another process created it first: fine, wait for it like for our own.
        if exc.aws_code != "ResourceInUseException":
            raise
        return False
    return True


def enable_native_ttl(client: Any, caller: Caller) -> bool:
    """Turn on DynamoDB's TimeToLive on the ``ttl`` attribute, so the table deletes expired
    entries itself (late: the adapter hides them from their deadline on, deleted or not).

    Not fatal when refused: expiry stays exact without it, only the table keeps expired items
    until ``take_expired`` (the expiry sweeper) or a write removes them. A warning says so.

    :returns: whether DynamoDB accepted it.
    """
    try:
        caller(
            "UpdateTimeToLive",
            client.update_time_to_live,
            write=False,  # idempotent: a repeat is refused as "already enabled", handled below
            TableName=caller.table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL},
        )
    except AwsError as exc:
        if "already enabled" in str(exc).lower():
            return True
        # dynalite answers UnknownOperationException; a role may lack dynamodb:UpdateTimeToLive.
        log.warning(
            "DynamoDB table %r: TimeToLive could not be enabled on attribute %r (%s); expired "
            "entries stay hidden but are only deleted by the expiry sweeper or by writes",
            caller.table,
            TTL,
            exc.aws_code or exc,
        )
        return False
    return True


def ensure_table(
    client: Any,
    caller: Caller,
    *,
    create: bool,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """Make sure the table exists with our key schema and is usable; create it when asked.

    :returns: ``None`` when the sparse deadline index is ACTIVE, else why ``take_expired`` must
        scan (the index was just asked for with ``create``, or is missing).

    :raises ConfigError: when the table is missing (and ``create`` is false) or has another schema.
    :raises BackendError: when DynamoDB fails, or the table does not become ACTIVE within ``timeout``.
    """
    table = _describe(client, caller)
    created = False
    if table is None:
        if not create:
            raise ConfigError(
                f"DynamoDB table {caller.table!r} does not exist ({caller.where}): create it with "
                f"partition key '{PK}' and sort key '{SK}', both of type S (see the "
                "iii-state-dynamodb README), or set `create_table: true` in the adapter config"
            )
        created = _create(client, caller)
    deadline = time.monotonic() + timeout
    delay = _POLL_FIRST
    while True:
        if table is not None:
            _check_schema(table, caller.table)
            status = table.get("TableStatus", "ACTIVE")
            if status in USABLE:
                if created:  # DynamoDB takes it only once the table is ACTIVE
                    enable_native_ttl(client, caller)
                return _index_state(client, caller, table, add=create)
            if status != "CREATING":
                raise BackendError(f"DynamoDB table {caller.table!r} is {status}; it cannot be used")
        if time.monotonic() >= deadline:
            raise BackendError(
                f"DynamoDB table {caller.table!r} did not become ACTIVE within {timeout:g} s "
                "(`create_timeout` sets the wait)"
            )
        sleep(delay)
        delay = min(_POLL_CAP, delay * 2)
        table = _describe(client, caller)

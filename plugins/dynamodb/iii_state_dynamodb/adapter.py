"""The ``dynamodb`` adapter: the core's primitives as single DynamoDB requests on one table.

* ``write`` / ``remove``: one ``PutItem`` / ``DeleteItem`` with ``ReturnValues=ALL_OLD``, so the
  replaced value comes back atomically with the write.
* ``read`` / ``read_versioned``: ``GetItem`` with ``ConsistentRead``; the token is the item's
  ``ver`` attribute (``None`` = missing).
* ``write_if``: ``PutItem`` with a condition on ``ver`` (``attribute_not_exists`` for missing).
  The core's update and compare-and-set loops run on these two.
* ``scan``: ``Query`` of one partition in sort-key order from an ``ExclusiveStartKey``.
* ``list_scopes``: a consistent ``Scan`` projecting the partition key (see the README for cost).
* ``run_many`` (``state::batch``): reads as ``BatchGetItem``; writes one request each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from iii_state_core import Adapter, BackendError, Capabilities, InvalidCursorError
from iii_state_core.adapter import Page, Token

from .batching import batch_get, run_calls
from .calls import Caller, ConditionFailed
from .client import make_client, make_session, region_of
from .config import Settings, parse_settings
from .layout import (
    MAX_KEY_BYTES,
    MAX_SCOPE_BYTES,
    PK,
    PREFIX,
    SK,
    VALUE,
    VERSION,
    decode_name,
    encode_name,
    item_key,
    new_version,
    value_text,
)
from .plugin import CAPABILITIES, DynamoDBDeclaration
from .table import ensure_table

Item = dict[str, dict[str, Any]]

#: The token ``read_versioned`` gives for an item written without a ``ver`` (by another tool):
#: ``write_if`` then conditions on the exact stored text instead.
_BY_VALUE = "value"
_BY_VERSION = "version"


def _text(item: Item, scope: str, key: str) -> str:
    attribute = item.get(VALUE)
    if attribute is None or "S" not in attribute:
        raise BackendError(
            f"the item for scope {scope!r}, key {key!r} has no string attribute {VALUE!r}: "
            "it was not written by iii-state"
        )
    text: str = attribute["S"]
    return text


class DynamoDBAdapter(Adapter):
    """Scoped JSON state in one DynamoDB table (``pk`` = scope, ``sk`` = key)."""

    name: ClassVar[str] = DynamoDBDeclaration.name
    distribution: ClassVar[str] = DynamoDBDeclaration.distribution
    capabilities: ClassVar[Capabilities] = CAPABILITIES

    @classmethod
    def open(cls, config: Mapping[str, Any]) -> Adapter:
        """:raises ConfigError: on bad options, a missing table (without ``create_table``) or a
        table with another key schema."""
        return cls(parse_settings(config))

    def __init__(
        self,
        settings: Settings,
        *,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Build the client and check the table (one ``DescribeTable``; ``CreateTable`` on request).

        :param client: a ready DynamoDB client (tests); built from ``settings`` when ``None``.
        :param sleep: how retries wait (tests pass a fake).
        """
        self.settings = settings
        self._session = make_session(settings) if client is None else None
        region = settings.region or "injected"
        if self._session is not None:
            region = region_of(settings, self._session)
            client = make_client(settings, self._session, region)
        self._client = client
        self.table = settings.table_name
        where = f"endpoint {settings.endpoint_url}" if settings.endpoint_url else f"region {region}"
        self._where = where
        self._call = Caller(self.table, where, max_attempts=settings.max_attempts, sleep=sleep)
        self._closed = False
        self._close_lock = threading.Lock()
        try:
            ensure_table(
                client, self._call, create=settings.create_table, timeout=settings.create_timeout, sleep=sleep
            )
        except BaseException:
            self.close()
            raise

    def describe(self) -> str:
        return f"dynamodb table {self.table!r} ({self._where})"

    def secrets(self) -> list[str]:
        """The resolved secret key and session token (botocore never prints them; belt and braces)."""
        if self._session is None:
            return []
        try:
            credentials = self._session.get_credentials()
            if credentials is None:
                return []
            frozen = credentials.get_frozen_credentials()
        except Exception:  # resolving failed: nothing was resolved, so nothing can leak
            return []
        return [s for s in (frozen.secret_key, frozen.token) if s]

    # -- reads ---------------------------------------------------------------------------------
    def _get(self, scope: str, key: str) -> Item | None:
        reply = self._call(
            "GetItem",
            self._client.get_item,
            write=False,
            TableName=self.table,
            Key=item_key(scope, key),
            ConsistentRead=True,
        )
        item: Item | None = reply.get("Item")
        return item

    def read(self, scope: str, key: str) -> bytes | None:
        item = self._get(scope, key)
        return None if item is None else _text(item, scope, key).encode("utf-8")

    def read_versioned(self, scope: str, key: str) -> tuple[bytes | None, Token]:
        return self._versioned(scope, key, self._get(scope, key))

    def _versioned(self, scope: str, key: str, item: Item | None) -> tuple[bytes | None, Token]:
        if item is None:
            return None, None
        text = _text(item, scope, key)
        version = item.get(VERSION, {}).get("N")
        token = (_BY_VALUE, text) if version is None else (_BY_VERSION, version)
        return text.encode("utf-8"), token

    # -- many at once (state::batch) ----------------------------------------------------------
    def run_many(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Reads as ``BatchGetItem`` (100 keys a request); writes stay one conditional request each."""
        return run_calls(
            calls,
            lambda name, args: getattr(self, name)(*args),
            lambda keys: batch_get(self._client, self._call, self.table, keys),
            self._answer,
        )

    def _answer(self, name: str, args: tuple[Any, ...], item: Item | None) -> Any:
        scope, key = args
        if name == "read_versioned":
            return self._versioned(scope, key, item)
        return None if item is None else _text(item, scope, key).encode("utf-8")

    # -- writes --------------------------------------------------------------------------------
    def _item(self, scope: str, key: str, data: bytes) -> Item:
        item: Item = item_key(scope, key)
        item[VALUE] = {"S": value_text(data)}
        item[VERSION] = {"N": new_version()}
        return item

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        reply = self._call(
            "PutItem",
            self._client.put_item,
            write=True,
            TableName=self.table,
            Item=self._item(scope, key, data),
            ReturnValues="ALL_OLD",
        )
        old: Item | None = reply.get("Attributes")
        return _text(old, scope, key).encode("utf-8") if old else None

    def remove(self, scope: str, key: str) -> bytes | None:
        reply = self._call(
            "DeleteItem",
            self._client.delete_item,
            write=True,
            TableName=self.table,
            Key=item_key(scope, key),
            ReturnValues="ALL_OLD",
        )
        old: Item | None = reply.get("Attributes")
        return _text(old, scope, key).encode("utf-8") if old else None

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        condition: dict[str, Any]
        if token is None:
            condition = {
                "ConditionExpression": "attribute_not_exists(#p)",
                "ExpressionAttributeNames": {"#p": PK},
            }
        elif isinstance(token, tuple) and token[0] == _BY_VERSION:
            condition = {
                "ConditionExpression": "#n = :n",
                "ExpressionAttributeNames": {"#n": VERSION},
                "ExpressionAttributeValues": {":n": {"N": token[1]}},
            }
        elif isinstance(token, tuple) and token[0] == _BY_VALUE:
            condition = {
                "ConditionExpression": "#v = :v AND attribute_not_exists(#n)",
                "ExpressionAttributeNames": {"#v": VALUE, "#n": VERSION},
                "ExpressionAttributeValues": {":v": {"S": token[1]}},
            }
        else:
            raise TypeError(f"write_if got a token read_versioned did not make: {token!r}")
        try:
            self._call(
                "PutItem",
                self._client.put_item,
                write=True,
                TableName=self.table,
                Item=self._item(scope, key, data),
                **condition,
            )
        except ConditionFailed:
            return False
        return True

    # -- listing -------------------------------------------------------------------------------
    def list_scopes(self) -> list[str]:
        scopes: set[str] = set()
        params: dict[str, Any] = {
            "TableName": self.table,
            "ProjectionExpression": "#p",
            "ExpressionAttributeNames": {"#p": PK},
            "ConsistentRead": True,
        }
        while True:
            reply = self._call("Scan", self._client.scan, write=False, **params)
            for item in reply.get("Items", []):
                scope = decode_name(item[PK]["S"])
                if scope is not None:
                    scopes.add(scope)
            start = reply.get("LastEvaluatedKey")
            if not start:
                return list(scopes)
            params["ExclusiveStartKey"] = start

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#p = :p",
            "ProjectionExpression": "#k, #v",
            "ExpressionAttributeNames": {"#p": PK, "#k": SK, "#v": VALUE},
            "ExpressionAttributeValues": {":p": {"S": encode_name("scope", scope, MAX_SCOPE_BYTES)}},
            "ConsistentRead": True,
            "Limit": limit,
        }
        if cursor is not None:
            params["ExclusiveStartKey"] = self._start_key(scope, cursor)
        reply = self._call("Query", self._client.query, write=False, **params)
        page: list[tuple[str, bytes]] = []
        for item in reply.get("Items", []):
            key = decode_name(item[SK]["S"])
            if key is not None:
                page.append((key, _text(item, scope, key).encode("utf-8")))
        start = reply.get("LastEvaluatedKey")
        # The cursor is the last sort key read: a position, so it stays valid if that key is deleted.
        return page, (str(start[SK]["S"]) if start else None)

    def _start_key(self, scope: str, cursor: str) -> Item:
        try:
            size = len(cursor.encode("utf-8"))
        except UnicodeError:
            size = 0
        if not 0 < size <= MAX_KEY_BYTES + len(PREFIX):
            raise InvalidCursorError(
                "cursor is not one this store handed out; pass the next_cursor of the previous page"
            )
        return {PK: {"S": encode_name("scope", scope, MAX_SCOPE_BYTES)}, SK: {"S": cursor}}

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        close = getattr(self._client, "close", None)
        if close is not None:
            close()

"""The ``dynamodb`` adapter: the core's primitives as single DynamoDB requests on one table.

* ``write`` / ``remove``: one ``PutItem`` / ``DeleteItem`` with ``ReturnValues=ALL_OLD``, so the
  replaced value comes back atomically with the write.
* ``read`` / ``read_versioned``: ``GetItem`` with ``ConsistentRead``; the token is the item's
  ``ver`` attribute (``None`` = missing).
* ``write_if``: ``PutItem`` with a condition on ``ver`` (``attribute_not_exists`` for missing).
  The core's update and compare-and-set loops run on these two. A lost reply is settled by a
  read (and, while the item is unchanged, the same put again; see :mod:`.settle`).
* ``scan``: ``Query`` of one partition in sort-key order from an ``ExclusiveStartKey``;
  ``scan_counted`` (a walk's first page) sends the scope's ``Select=COUNT`` Query beside it. Both
  go through the lean client (decision 0025).
* ``list_scopes``: a consistent ``Scan`` projecting the partition key (see the README for cost).
* ``run_many`` (``state::batch``): reads as ``BatchGetItem``; writes one request each, sent
  concurrently from a small pool of threads through the lean client (:mod:`.lean`, the same
  requests at a fraction of botocore's CPU; ``lean_requests: false`` sends them with botocore).

Expiry (decision 0010): an entry with a deadline carries it as ``exp`` (epoch ms) and ``ttl``
(epoch s, for DynamoDB's own late clean-up). Every read drops an item whose ``exp`` has passed,
listings filter them out on the server, and every conditional write counts such an item as
missing, so whenever DynamoDB really deletes it, no caller sees it after its deadline.
``take_expired`` deletes expired items one conditional ``DeleteItem`` each, so each is taken once.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, ClassVar, cast

from iii_state_core import Adapter, Capabilities, InvalidCursorError, UnknownOutcomeError
from iii_state_core.adapter import ByteCondition, Missed, Page, PlannedWrite, Token
from iii_state_core.expiry import KEEP, ExpiresAt, now_ms
from iii_state_core.retry import LOST, Lost, retry

from .batching import MAX_GET_KEYS, batch_get, run_calls
from .calls import Caller, ConditionFailed
from .client import make_client, make_lean, make_session, region_of
from .config import Settings, parse_settings
from .layout import (
    DEADLINE,
    MAX_KEY_BYTES,
    MAX_SCOPE_BYTES,
    PK,
    PREFIX,
    SHARD,
    SK,
    TTL,
    VALUE,
    VERSION,
    Item,
    deadline_of,
    decode_name,
    encode_name,
    expiry_attributes,
    is_live,
    item_key,
    new_version,
    text_of,
    value_text,
)
from .plugin import CAPABILITIES, DynamoDBDeclaration
from .remembered import Remembered
from .settle import settle_lost_put
from .sweep import Sweep, ack_leases, lease_expired, stash, take_expired
from .table import ensure_table
from .tokens import BY_VALUE, BY_VERSION, LIVE, ReadToken, holds, unchanged
from .transactions import (
    check_size,
    conditioned_items,
    deadline_after,
    request_items,
    send,
    serves_transactions,
)

__all__ = ["DynamoDBAdapter", "ReadToken"]

#: Requests of one batch round in flight at once (bounded by ``max_pool_connections`` too): enough
#: to hide the round trips, few enough not to crowd out other threads' requests.
BATCH_THREADS = 16
#: Scopes remembered as fitting one page (``scan_counted``).
ONE_PAGE_SCOPES = 10_000
#: The primitives a batch round may send through the lean client: name -> the method taking it first.
LEAN_WRITES = {"write": "_write", "remove": "_remove", "write_if": "_write_if", "set_expiry": "_set_expiry"}

class DynamoDBAdapter(Adapter):
    """Scoped JSON state in one DynamoDB table (``pk`` = scope, ``sk`` = key)."""

    name: ClassVar[str] = DynamoDBDeclaration.name
    distribution: ClassVar[str] = DynamoDBDeclaration.distribution
    state_options: ClassVar[tuple[str, ...]] = DynamoDBDeclaration.state_options
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
        #: what a batch round's writes, the listings' Queries and the sweeper's requests are sent
        #: through: the lean client, or the botocore one (``lean_requests: false``, or an
        #: endpoint it cannot serve; decisions 0021, 0025)
        self._lean: Any = client
        if self._session is not None:
            self._lean = make_lean(settings, self._session, client) or client
        self.table = settings.table_name
        where = f"endpoint {settings.endpoint_url}" if settings.endpoint_url else f"region {region}"
        self._where = where
        self._call = Caller(self.table, where, max_attempts=settings.max_attempts, sleep=sleep)
        self._closed = False
        self._close_lock = threading.Lock()
        #: the threads a batch round's writes are sent from, made on first use
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()
        #: scopes whose last first page held the whole scope: their next one is read without a
        #: count beside it (cleared when it reaches ONE_PAGE_SCOPES names: a bound, not an LRU)
        self._one_page_scopes: set[str] = set()
        #: whether ``take_expired`` may query the sparse deadline index (else it scans)
        self._sweep = Sweep()
        #: entries ``take_expired`` leased, by entry: their stash's sort key (for ``ack_expired``)
        self._leases: dict[tuple[str, str, bytes, int], str] = {}
        self._leases_lock = threading.Lock()
        #: what this adapter's transactions last wrote, so the next one on them skips its read
        self._remembered = Remembered()
        try:
            no_index = ensure_table(
                client, self._call, create=settings.create_table, timeout=settings.create_timeout, sleep=sleep
            )
            if settings.endpoint_url and not serves_transactions(client, self._call):
                # decided once per store object: the core reads capabilities from the class
                self.__class__ = DynamoDBAdapterWithoutTransactions
        except BaseException:
            self.close()
            raise
        self._sweep.indexed, self._sweep.fallback = no_index is None, no_index

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

    def _get_live(self, scope: str, key: str) -> Item | None:
        """The item, or ``None`` when it is missing or past its deadline (checked once the
        reply is in, so nothing is returned after its deadline)."""
        item = self._get(scope, key)
        return item if item is not None and is_live(item, now_ms()) else None

    def read(self, scope: str, key: str) -> bytes | None:
        item = self._get_live(scope, key)
        return None if item is None else text_of(item, scope, key).encode("utf-8")

    def read_versioned(self, scope: str, key: str) -> tuple[bytes | None, Token]:
        return self._versioned(scope, key, self._get_live(scope, key))

    def _versioned(self, scope: str, key: str, item: Item | None) -> tuple[bytes | None, Token]:
        if item is None:
            return None, None
        text = text_of(item, scope, key)
        version = item.get(VERSION, {}).get("N")
        deadline = deadline_of(item)
        token = (
            ReadToken(BY_VALUE, text, deadline)
            if version is None
            else ReadToken(BY_VERSION, version, deadline)
        )
        return text.encode("utf-8"), token

    def read_expiry(self, scope: str, key: str) -> tuple[bool, int | None]:
        item = self._get_live(scope, key)
        return (False, None) if item is None else (True, deadline_of(item))

    # -- many at once (state::batch) ----------------------------------------------------------
    def run_many(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Reads as ``BatchGetItem`` (100 keys a request); writes stay one conditional request each."""
        return run_calls(
            calls,
            self._one_of_batch,
            lambda keys: batch_get(self._client, self._call, self.table, keys),
            self._answer,
            self._together,
        )

    def _one_of_batch(self, name: str, args: tuple[Any, ...]) -> Any:
        lean = LEAN_WRITES.get(name)
        if lean is None:
            return getattr(self, name)(*args)
        return getattr(self, lean)(self._lean, *args)

    def _together(self, thunks: list[Callable[[], Any]]) -> list[Any]:
        """Run ``thunks`` on the adapter's pool (at most ``BATCH_THREADS`` in flight)."""
        return list(self._pool_now().map(lambda thunk: thunk(), thunks))

    def _pool_now(self) -> ThreadPoolExecutor:
        """The adapter's pool, made on first use."""
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():  # a forked child makes its own
                threads = min(BATCH_THREADS, self.settings.max_pool_connections)
                self._pool = ThreadPoolExecutor(threads, thread_name_prefix="iii-state-dynamodb")
                self._pool_pid = os.getpid()
            return self._pool

    def _answer(self, name: str, args: tuple[Any, ...], item: Item | None) -> Any:
        scope, key = args
        if item is not None and not is_live(item, now_ms()):
            item = None
        if name == "read_versioned":
            return self._versioned(scope, key, item)
        return None if item is None else text_of(item, scope, key).encode("utf-8")

    # -- writes --------------------------------------------------------------------------------
    def _item(self, scope: str, key: str, data: bytes, deadline: int | None = None) -> Item:
        item: Item = item_key(scope, key)
        item[VALUE] = {"S": value_text(data)}
        item[VERSION] = {"N": new_version()}
        item.update(expiry_attributes(deadline))
        return item

    def _replaced(self, old: Item | None, scope: str, key: str, before: int) -> bytes | None:
        """The bytes an unconditional write replaced: ``None`` for an item already past its
        deadline when the request left (it was missing then, whatever was still stored; with
        expiry events on it is stashed for ``take_expired``, as nothing else holds it now)."""
        if not old:
            return None
        if not is_live(old, before):
            if self.settings.expiry_events:
                stash(self._client, self._call, old)
            return None
        return text_of(old, scope, key).encode("utf-8")

    def write(self, scope: str, key: str, data: bytes, expires_at: int | None = None) -> bytes | None:
        return self._write(self._client, scope, key, data, expires_at)

    def _write(
        self, via: Any, scope: str, key: str, data: bytes, expires_at: int | None = None
    ) -> bytes | None:
        """``write`` sent through ``via`` (the botocore client or the lean one: same requests)."""
        self._remembered.forget(scope, key)
        before = now_ms()
        reply = self._call(
            "PutItem",
            via.put_item,
            write=True,
            TableName=self.table,
            Item=self._item(scope, key, data, expires_at),
            ReturnValues="ALL_OLD",
        )
        return self._replaced(reply.get("Attributes"), scope, key, before)

    def remove(self, scope: str, key: str) -> bytes | None:
        return self._remove(self._client, scope, key)

    def _remove(self, via: Any, scope: str, key: str) -> bytes | None:
        self._remembered.forget(scope, key)
        before = now_ms()
        reply = self._call(
            "DeleteItem",
            via.delete_item,
            write=True,
            TableName=self.table,
            Key=item_key(scope, key),
            ReturnValues="ALL_OLD",
        )
        return self._replaced(reply.get("Attributes"), scope, key, before)

    def write_if(self, scope: str, key: str, data: bytes, token: Token, expires_at: ExpiresAt = KEEP) -> bool:
        return self._write_if(self._client, scope, key, data, token, expires_at)

    def _write_if(
        self, via: Any, scope: str, key: str, data: bytes, token: Token, expires_at: ExpiresAt = KEEP
    ) -> bool:
        self._remembered.forget(scope, key)
        condition = unchanged(token, now_ms())
        deadline = None if token is None else cast(ReadToken, token).deadline  # missing: none to keep
        if expires_at is not KEEP:
            deadline = expires_at  # type: ignore[assignment]  # KEEP ruled out above
        wants_old = token is None and self.settings.expiry_events
        if wants_old:  # it may replace an expired item: keep it
            condition["ReturnValues"] = "ALL_OLD"
        item = self._item(scope, key, data, deadline)

        def put(condition: dict[str, Any]) -> dict[str, Any]:
            return self._call(
                "PutItem", via.put_item, write=True, TableName=self.table, Item=item, **condition
            )

        try:
            reply = put(condition)
        except ConditionFailed:
            return False
        except UnknownOutcomeError as lost:
            if wants_old:  # the old item it replaced, if any, came back in the lost reply
                raise
            reply = settle_lost_put(
                lost, item, cast(ReadToken | None, token), lambda: self._get(scope, key), put
            )
        if reply.get("Attributes"):  # the condition held, so it was past its deadline
            stash(self._client, self._call, reply["Attributes"])
        return True

    # -- state::transact -------------------------------------------------------------------------
    def write_many_if(
        self, checks: Sequence[tuple[str, str, Token]], writes: Sequence[PlannedWrite]
    ) -> bool:
        """Every write in one ``TransactWriteItems``, each item conditioned on its token (see
        :mod:`.transactions`); ``False`` when an entry changed since it was read."""
        tokens = {(scope, key): token for scope, key, token in checks}
        items = self._planned_items(writes, tokens)
        request, names = request_items(self.table, checks, items)
        check_size(request)
        if self.settings.expiry_events:
            for scope, key, _item in items:
                if tokens.get((scope, key)) is None:
                    self._take_expired_at(scope, key)
        if not send(self._client, self._call, request, names):
            return False
        self._remember(writes, items)
        return True

    def write_many_when(
        self, conditions: Sequence[ByteCondition], writes: Sequence[PlannedWrite]
    ) -> list[bytes | None] | Missed:
        """Sets and deletes under byte conditions, answering the bytes each replaced: one
        ``TransactWriteItems`` when every entry written is one this adapter's transactions wrote
        last (:mod:`.remembered`), else, or when that guess was stale, read first (one
        ``BatchGetItem``) and then ``write_many_if``, looping while other writers win."""
        guessed = self._without_reading(conditions, writes)
        if guessed is not None:
            return guessed

        def attempt() -> list[bytes | None] | Missed | Lost:
            return self._read_then_write(conditions, writes)

        return cast("list[bytes | None] | Missed", retry(attempt, sleep=self._call.sleep))

    def _without_reading(
        self, conditions: Sequence[ByteCondition], writes: Sequence[PlannedWrite]
    ) -> list[bytes | None] | None:
        """The old values when the remembered guesses held and so did every condition; ``None``
        when not tried (an entry written not remembered, an entry conditioned twice) or when any
        condition failed (nothing applied: the caller reads and decides)."""
        expected = {(scope, key): data for scope, key, data in conditions}
        if len(expected) < len(conditions) or any(write[3] is KEEP for write in writes):
            return None
        now = now_ms()
        where: dict[tuple[str, str], dict[str, Any]] = {}
        olds: list[bytes | None] = []
        for scope, key, _data, _expires in writes:
            if (scope, key) in expected:  # the caller's condition pins the old value itself
                olds.append(expected[(scope, key)])
                where[(scope, key)] = holds(expected[(scope, key)], now)
                continue
            guess = self._remembered.get(scope, key)
            if guess is None:
                return None
            olds.append(guess[0])
            where[(scope, key)] = unchanged(guess[1], now)
        for entry, data in expected.items():
            where.setdefault(entry, holds(data, now))
        items = self._planned_items(writes, {})
        request, names = conditioned_items(self.table, where, items)
        check_size(request)
        if self.settings.expiry_events:  # only an entry expected missing may hold an expired item
            for scope, key, _item in items:
                if (scope, key) in expected and expected[(scope, key)] is None:
                    self._take_expired_at(scope, key)
        if not send(self._client, self._call, request, names):
            for scope, key, *_ in writes:
                self._remembered.forget(scope, key)
            return None
        self._remember(writes, items)
        return olds

    def _read_then_write(
        self, conditions: Sequence[ByteCondition], writes: Sequence[PlannedWrite]
    ) -> list[bytes | None] | Missed | Lost:
        entries = list(dict.fromkeys([(s, k) for s, k, _ in conditions] + [(s, k) for s, k, *_ in writes]))
        read = self._read_many(entries)
        for scope, key, *_ in writes:  # as good a guess as a write (a failed condition writes nothing)
            self._remembered.wrote(scope, key, *read[(scope, key)])
        for i, (scope, key, data) in enumerate(conditions):
            if read[(scope, key)][0] != data:
                return Missed(i, read[(scope, key)][0])
        if not self.write_many_if([(s, k, read[(s, k)][1]) for s, k in entries], writes):
            return LOST
        return [read[(scope, key)][0] for scope, key, *_ in writes]

    def _read_many(self, entries: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[bytes | None, Token]]:
        """``read_versioned`` of each entry, ``MAX_GET_KEYS`` to a ``BatchGetItem``."""
        read: dict[tuple[str, str], tuple[bytes | None, Token]] = {}
        for at in range(0, len(entries), MAX_GET_KEYS):
            chunk = [(entry, item_key(*entry)) for entry in entries[at : at + MAX_GET_KEYS]]
            found = batch_get(self._client, self._call, self.table, [key for _, key in chunk])
            for (scope, key), item in chunk:
                stored = found.get((item[PK]["S"], item[SK]["S"]))
                read[(scope, key)] = self._answer("read_versioned", (scope, key), stored)
        return read

    def _planned_items(
        self, writes: Sequence[PlannedWrite], tokens: Mapping[tuple[str, str], Token]
    ) -> list[tuple[str, str, Item | None]]:
        """``(scope, key, item to put or None to delete)`` per write, a ``KEEP`` deadline taken
        from the entry's token."""
        items: list[tuple[str, str, Item | None]] = []
        for scope, key, data, expires in writes:
            deadline = deadline_after(tokens.get((scope, key)), expires)
            items.append((scope, key, None if data is None else self._item(scope, key, data, deadline)))
        return items

    def _remember(self, writes: Sequence[PlannedWrite], items: list[tuple[str, str, Item | None]]) -> None:
        for (scope, key, data, _expires), (_, _, item) in zip(writes, items, strict=True):
            token = None if item is None else ReadToken(BY_VERSION, item[VERSION]["N"], deadline_of(item))
            self._remembered.wrote(scope, key, data, token)

    def _take_expired_at(self, scope: str, key: str) -> None:
        """With expiry events on, stash an expired item a transaction may replace (its one event
        would be lost otherwise: a transaction returns no old items)."""
        try:
            reply = self._call(
                "DeleteItem",
                self._client.delete_item,
                write=True,
                TableName=self.table,
                Key=item_key(scope, key),
                ConditionExpression="#e <= :now",
                ExpressionAttributeNames={"#e": DEADLINE},
                ExpressionAttributeValues={":now": {"N": str(now_ms())}},
                ReturnValues="ALL_OLD",
            )
        except ConditionFailed:  # missing, or live: nothing to keep
            return
        if reply.get("Attributes"):
            stash(self._client, self._call, reply["Attributes"])

    def modify(
        self, scope: str, key: str, change: Callable[[bytes | None], bytes], expires_at: ExpiresAt = KEEP
    ) -> tuple[bytes | None, bytes] | None:
        """No native read-modify-write: the core loops over ``read_versioned`` + ``write_if``."""
        return None

    def set_expiry(self, scope: str, key: str, expires_at: int | None) -> bool:
        """One ``UpdateItem`` of ``exp``/``ttl`` and a new ``ver``, only on a live item."""
        return self._set_expiry(self._client, scope, key, expires_at)

    def _set_expiry(self, via: Any, scope: str, key: str, expires_at: int | None) -> bool:
        self._remembered.forget(scope, key)
        names = {"#p": PK, "#e": DEADLINE, "#t": TTL, "#n": VERSION, "#s": SHARD}
        values: dict[str, dict[str, str]] = {":now": {"N": str(now_ms())}, ":nv": {"N": new_version()}}
        if expires_at is None:
            update = "SET #n = :nv REMOVE #e, #t, #s"
        else:
            attributes = expiry_attributes(expires_at)
            values[":e"], values[":t"], values[":s"] = (
                attributes[DEADLINE],
                attributes[TTL],
                attributes[SHARD],
            )
            update = "SET #e = :e, #t = :t, #s = :s, #n = :nv"
        try:
            self._call(
                "UpdateItem",
                via.update_item,
                write=True,
                TableName=self.table,
                Key=item_key(scope, key),
                UpdateExpression=update,
                ConditionExpression=f"attribute_exists(#p) AND {LIVE}",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ConditionFailed:
            return False
        return True

    def take_expired(self, limit: int = 1000) -> list[tuple[str, str, bytes, int]]:
        """Claim up to ``limit`` entries past their deadline and return them as
        ``(scope, key, value, deadline)``, each once across processes while its claim holds (see
        :mod:`.sweep`): with expiry events on, a lease until :meth:`ack_expired`; else a delete."""
        if not self.settings.expiry_events:
            return take_expired(self._lean, self._call, limit, self._sweep, self._together)
        lease_ms = self.settings.expiry_lease_ms
        leased = lease_expired(self._lean, self._call, limit, self._sweep, lease_ms, self._together)
        with self._leases_lock:
            self._leases.update(leased)
        return [entry for entry, _stash in leased]

    def ack_expired(self, taken: Sequence[tuple[str, str, bytes, int]]) -> None:
        """Mark the leased stashes of delivered entries (one ``UpdateItem`` each, see :mod:`.sweep`)."""
        with self._leases_lock:
            held = [self._leases[entry] for entry in taken if entry in self._leases]
        if held:
            ack_leases(self._lean, self._call, held, self._together)
        with self._leases_lock:
            for entry in taken:
                self._leases.pop(entry, None)

    # -- listing -------------------------------------------------------------------------------
    def list_scopes(self) -> list[str]:
        scopes: set[str] = set()
        # The filter drops expired items on the server: a scope listed has a live entry. It
        # costs no extra request (a Scan page is cut by the bytes read, before the filter).
        params: dict[str, Any] = {
            "TableName": self.table,
            "ProjectionExpression": "#p",
            "FilterExpression": LIVE,
            "ExpressionAttributeNames": {"#p": PK, "#e": DEADLINE},
            "ConsistentRead": True,
        }
        while True:
            params["ExpressionAttributeValues"] = {":now": {"N": str(now_ms())}}
            reply = self._call("Scan", self._client.scan, write=False, **params)
            for item in reply.get("Items", []):
                scope = decode_name(item[PK]["S"])
                if scope is not None:
                    scopes.add(scope)
            start = reply.get("LastEvaluatedKey")
            if not start:
                return list(scopes)
            params["ExclusiveStartKey"] = start

    def count(self, scope: str) -> int | None:
        """The scope's live entries: ``Select=COUNT`` Queries, so the server sends counts, not
        items (the core would otherwise read and parse every item of the scope). ``begins_with``
        leaves out what ``scan`` leaves out: items whose key is not one of ours."""
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#p = :p AND begins_with(#k, :ours)",
            "FilterExpression": LIVE,
            "ExpressionAttributeNames": {"#p": PK, "#k": SK, "#e": DEADLINE},
            "ConsistentRead": True,
            "Select": "COUNT",
        }
        partition = encode_name("scope", scope, MAX_SCOPE_BYTES)
        total = 0
        while True:
            params["ExpressionAttributeValues"] = {
                ":p": {"S": partition}, ":ours": {"S": PREFIX}, ":now": {"N": str(now_ms())}
            }  # fmt: skip
            reply = self._call("Query", self._lean.query, write=False, **params)
            total += int(reply.get("Count", 0))
            start = reply.get("LastEvaluatedKey")
            if not start:
                return total
            params["ExclusiveStartKey"] = start

    def scan_counted(self, scope: str, limit: int) -> tuple[list[tuple[str, bytes]], str | None, int | None]:
        """A walk's first page and the scope's count, the two Queries at once: the count on the
        adapter's pool while this thread reads the page (DynamoDB has no count but reading the
        scope, decision 0019; sent one after the other, a first page took the time of both).
        A scope whose last first page held all of it is read alone, as before: its page counts
        itself, and a count sent beside it would only be paid for."""
        if scope in self._one_page_scopes:
            rows, after = self.scan(scope, None, limit)
            if after is None:
                return rows, None, None
            self._one_page_scopes.discard(scope)
            return rows, after, self.count(scope)
        counting = self._pool_now().submit(self.count, scope)
        try:
            rows, after = self.scan(scope, None, limit)
        except BaseException:
            counting.cancel()
            raise
        if after is None:  # the page is the scope: its own rows are the count
            counting.cancel()  # if it started, it ends on its own and nobody reads it
            if len(self._one_page_scopes) >= ONE_PAGE_SCOPES:
                self._one_page_scopes.clear()
            self._one_page_scopes.add(scope)
            return rows, None, None
        return rows, after, counting.result()

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        """Up to ``limit`` live entries after ``cursor``.

        Expired items are dropped here, not by a ``FilterExpression``: a filter reads and bills
        the same items (it applies after ``Limit``) and costs the server an evaluation per item
        (dynalite: a Query of 100 took 1.2 times as long with it). So a Query can come back
        short while the scope goes on: query again until the page is full or the scope ends.
        Without expired items that is one Query, as before.
        """
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#p = :p",
            "ProjectionExpression": "#k, #v, #e",
            "ExpressionAttributeNames": {"#p": PK, "#k": SK, "#v": VALUE, "#e": DEADLINE},
            "ExpressionAttributeValues": {":p": {"S": encode_name("scope", scope, MAX_SCOPE_BYTES)}},
            "ConsistentRead": True,
            "Limit": limit,
        }
        if cursor is not None:
            params["ExclusiveStartKey"] = self._start_key(scope, cursor)
        rows: list[tuple[str, str, bytes]] = []
        while True:
            reply = self._call("Query", self._lean.query, write=False, **params)
            now = now_ms()
            for item in reply.get("Items", []):
                key = decode_name(item[SK]["S"])
                if key is not None and (DEADLINE not in item or is_live(item, now)):
                    rows.append((item[SK]["S"], key, text_of(item, scope, key).encode("utf-8")))
            start = reply.get("LastEvaluatedKey")
            if len(rows) >= limit or not start:
                break
            params["ExclusiveStartKey"] = start
        # The cursor is the last sort key read: a position, so it stays valid if that key is deleted.
        if len(rows) > limit:
            rows = rows[:limit]
            after: str | None = rows[-1][0]
        else:
            after = str(start[SK]["S"]) if start else None
        return [(key, raw) for _, key, raw in rows], after

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
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
        if self._lean is not self._client:
            self._lean.close()
        close = getattr(self._client, "close", None)
        if close is not None:
            close()


class DynamoDBAdapterWithoutTransactions(DynamoDBAdapter):
    """The adapter on a server without ``TransactWriteItems`` (dynalite): ``state::transact`` is
    refused with ``UNSUPPORTED``, everything else as on DynamoDB."""

    capabilities: ClassVar[Capabilities] = replace(CAPABILITIES, transactions=False)

    def write_many_if(
        self, checks: Sequence[tuple[str, str, Token]], writes: Sequence[PlannedWrite]
    ) -> bool:
        raise NotImplementedError(f"{self.describe()}: the server does not serve TransactWriteItems")

    def write_many_when(
        self, conditions: Sequence[ByteCondition], writes: Sequence[PlannedWrite]
    ) -> list[bytes | None] | Missed:
        raise NotImplementedError(f"{self.describe()}: the server does not serve TransactWriteItems")

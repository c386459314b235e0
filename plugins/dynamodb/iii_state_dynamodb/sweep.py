r"""Taking expired entries out of the table, each exactly once across processes.

DynamoDB's own TimeToLive deletes expired items days late and tells no one what they held; the
expiry sweeper needs each expired entry once, with its value. Two steps:

1. find: a ``Query`` of the sparse index ``iii-expiry`` per shard, ``xsh = n AND exp <= now``,
   which reads only expired items (only items with a deadline are in it; decision 0013). A
   table without the index (made before it, or by hand) is read with a consistent ``Scan``
   filtered on ``exp <= now`` instead, the whole table per call (said once in the log), and so
   is each process's first sweep, which also finds items written before the index existed;
2. take: one ``DeleteItem`` per item found, conditioned on the version and deadline the scan saw
   and returning the old item. Of several processes deleting the same item, one succeeds and
   the others fail the condition; an item written again since the scan fails it too.

With expiry events on, a write that replaces an item already past its deadline holds the only
copy of it (its ``ReturnValues``): it :func:`stash`\ es it as an item of its own, which step 1
finds like any other expired item, so that expiry still gets its one event.

With expiry events on, step 2 is a *lease* instead (:func:`lease_expired`), so a sweeper killed
before its handlers ran, or a lost reply, loses nothing:

- an entry's item: read it (one consistent ``BatchGetItem`` for the batch), put its stash with
  ``exp`` = the lease's end (``xd`` keeps the entry's deadline), only if that stash does not
  exist, then delete the item if unchanged. The stash's sort key is derived from the item and its
  version (:func:`stash_id`), so whoever stashes one expiry first (a sweeper or a write replacing
  it) holds the only stash; the others' puts fail their condition;
- a stash (a write's, or a lease that lapsed: the index lists it once ``exp`` passed): an
  ``UpdateItem`` conditioned on the version and ``exp`` the query saw moves ``exp`` to the end of a
  new lease;
- :func:`ack_leases` (after the handlers ran) replaces each leased stash by a marker (no
  ``val``, ``exp`` or index shard; ``ttl`` a day on, for DynamoDB's own clean-up), so a late
  stash of the same expiry fails its condition instead of delivering it twice.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from iii_state_core import BackendError
from iii_state_core.expiry import now_ms

from .batching import MAX_GET_KEYS, batch_get
from .calls import Caller, ConditionFailed
from .layout import (
    DEADLINE,
    EXPIRY_INDEX,
    PK,
    SHARD,
    SHARDS,
    SK,
    STASH_DEADLINE,
    STASH_KEY,
    STASH_PARTITION,
    STASH_SCOPE,
    TTL,
    VALUE,
    VERSION,
    Item,
    deadline_of,
    decode_name,
    new_version,
    text_of,
    ttl_seconds,
)

log = logging.getLogger("iii_state.dynamodb")

Taken = tuple[str, str, bytes, int]
#: A leasing sweep sends its claims in rounds of ``4 * TAKERS``, each round at once on the
#: adapter's pool, and checks its time budget between rounds.
TAKERS: Final = 8


@dataclass
class Sweep:
    """How this adapter finds expired items: through the index once it is known to be ACTIVE,
    after one first Scan (items written before the index have no shard, so it cannot list them)."""

    indexed: bool = False
    scanned: bool = False
    #: why there is no index, logged once at the first sweep (``None``: nothing to say)
    fallback: str | None = None


def indexed_expired_items(client: Any, call: Caller, limit: int) -> list[Item]:
    """Up to ``limit`` items whose deadline has passed, from the sparse index (eventually
    consistent: an item just past its deadline may show a poll later; the delete checks it)."""
    found: list[Item] = []
    now = str(now_ms())
    for shard in range(SHARDS):
        params: dict[str, Any] = {
            "TableName": call.table,
            "IndexName": EXPIRY_INDEX,
            "KeyConditionExpression": "#s = :s AND #e <= :now",
            "ExpressionAttributeNames": {"#s": SHARD, "#e": DEADLINE},
            "ExpressionAttributeValues": {":s": {"N": str(shard)}, ":now": {"N": now}},
        }
        _read_pages(
            call, "Query", client.query, params, found, limit, lambda p: p.update(Limit=limit - len(found))
        )
        if len(found) >= limit:
            break
    return found[:limit]


def expired_items(client: Any, call: Caller, limit: int) -> list[Item]:
    """Up to ``limit`` items (keys, version, deadline) whose deadline has passed, by a Scan of
    the whole table."""
    found: list[Item] = []
    params: dict[str, Any] = {
        "TableName": call.table,
        "ProjectionExpression": "#p, #k, #n, #e, #xs, #xk",
        "FilterExpression": "#e <= :now AND attribute_exists(#v)",
        "ExpressionAttributeNames": {
            "#p": PK,
            "#k": SK,
            "#n": VERSION,
            "#e": DEADLINE,
            "#v": VALUE,
            "#xs": STASH_SCOPE,
            "#xk": STASH_KEY,
        },
        "ConsistentRead": True,
    }

    def fresh_now(page: dict[str, Any]) -> None:  # each page filters against the clock of its request
        page["ExpressionAttributeValues"] = {":now": {"N": str(now_ms())}}

    _read_pages(call, "Scan", client.scan, params, found, limit, fresh_now)
    return found[:limit]


def _read_pages(
    call: Caller,
    operation: str,
    method: Any,
    params: dict[str, Any],
    found: list[Item],
    limit: int,
    prepare: Callable[[dict[str, Any]], None],
) -> None:
    """Append the items of ``operation``'s pages to ``found`` until it holds ``limit`` or the
    last page was read; ``prepare`` adjusts ``params`` before each request."""
    while len(found) < limit:
        prepare(params)
        reply = call(operation, method, write=False, **params)
        found.extend(reply.get("Items", []))
        start = reply.get("LastEvaluatedKey")
        if not start:
            return
        params["ExclusiveStartKey"] = start


def take(client: Any, call: Caller, item: Item) -> Taken | None:
    """Delete one expired item found by :func:`expired_items` if it is still what was found.

    :returns: ``(scope, key, value, deadline)``, or ``None`` when another process took it first,
        it was written again meanwhile, or it is not an item of ours.
    """
    scope, key, deadline = decode_name(item[PK]["S"]), decode_name(item[SK]["S"]), deadline_of(item)
    if item[PK]["S"] == STASH_PARTITION:
        scope, key = item.get(STASH_SCOPE, {}).get("S"), item.get(STASH_KEY, {}).get("S")
    if scope is None or key is None or deadline is None:
        return None
    try:
        old = _delete_unchanged(client, call, item, holding_value=True)
    except ConditionFailed:
        return None
    return scope, key, text_of(old, scope, key).encode("utf-8"), deadline


def _delete_unchanged(client: Any, call: Caller, item: Item, *, holding_value: bool) -> Item:
    """Delete ``item`` if it still has the version and deadline it was read with (and, with
    ``holding_value``, still holds a value); its old attributes. A change since: ConditionFailed."""
    version = item.get(VERSION, {}).get("N")
    values: dict[str, dict[str, str]] = {":e": {"N": item[DEADLINE]["N"]}}
    names = {"#n": VERSION, "#e": DEADLINE}
    if version is None:
        condition = "attribute_not_exists(#n) AND #e = :e"
    else:
        condition, values[":n"] = "#n = :n AND #e = :e", {"N": version}
    if holding_value:
        condition, names["#v"] = condition + " AND attribute_exists(#v)", VALUE
    reply = call(
        "DeleteItem",
        client.delete_item,
        write=True,
        TableName=call.table,
        Key={PK: item[PK], SK: item[SK]},
        ConditionExpression=condition,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        ReturnValues="ALL_OLD",
    )
    old: Item = reply.get("Attributes") or {}
    return old


def _find(client: Any, call: Caller, limit: int, sweep: Sweep) -> list[Item]:
    """Up to ``limit`` expired items, from the index once it is usable, else by a Scan."""
    if sweep.indexed and sweep.scanned:
        return indexed_expired_items(client, call, limit)
    if sweep.fallback is not None:
        log.warning("%s", sweep.fallback)
        sweep.fallback = None
    found = expired_items(client, call, limit)
    sweep.scanned = len(found) < limit  # a full batch: the next call scans on
    return found


#: Runs thunks at once and answers their results in order: the adapter's pool (``_together``),
#: whose threads live as long as the adapter, so the lean client's per-thread keep-alive
#: connections are reused from one sweep to the next (threads made per sweep opened new ones).
Together = Callable[[list[Callable[[], Any]]], list[Any]]


def _run(work: Callable[[Any], Any], items: list[Any], together: Together) -> list[Any]:
    """``work`` on each item, all at once on ``together`` (one round trip each, so a sweep of
    many expired entries is not one long queue)."""
    if len(items) <= 1:
        return [work(item) for item in items]
    return together([functools.partial(work, item) for item in items])


def _claimed(outcomes: list[Any], tried: int, what: str) -> list[Any]:
    """The entries the claims got. A failure after some were claimed returns those (logged; the
    next call meets the failure again), so no claimed entry is dropped; a failure before any raises."""
    got = [one for one in outcomes if one is not None and not isinstance(one, Exception)]
    failures = [one for one in outcomes if isinstance(one, Exception)]
    if failures:
        if not got:
            raise failures[0]
        log.warning("take_expired: %d of %d %s failed: %s", len(failures), tried, what, failures[0])
    return got


def take_expired(client: Any, call: Caller, limit: int, sweep: Sweep, together: Together) -> list[Taken]:
    """Delete up to ``limit`` expired entries and return them, each once across processes
    (without expiry events; with them the sweeper leases: :func:`lease_expired`).

    A failure after some were taken returns those (logged; the next call meets the failure
    again), so no taken entry is dropped; a failure before any raises.
    """
    found = _find(client, call, limit, sweep)
    return _claimed(_run(lambda item: _attempt(client, call, item), found, together), len(found), "deletes")


def _attempt(client: Any, call: Caller, item: Item) -> Taken | Exception | None:
    try:
        return take(client, call, item)
    except Exception as exc:
        return exc


def stash_id(old: Item) -> str:
    """The stash sort key of one expiry: the item's keys, version and deadline, hashed."""
    version, deadline = old.get(VERSION, {}).get("N", ""), old.get(DEADLINE, {}).get("N", "")
    parts = (old[PK]["S"], old[SK]["S"], version, deadline)
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:32]


def _stash_item(old: Item, scope: str, key: str, claimable_at: str) -> Item:
    """The stash of expired item ``old``, claimable from ``claimable_at`` (its deadline, or the
    end of a lease), with the entry's deadline in ``xd``."""
    item: Item = {
        PK: {"S": STASH_PARTITION},
        SK: {"S": stash_id(old)},
        STASH_SCOPE: {"S": scope},
        STASH_KEY: {"S": key},
        VALUE: old[VALUE],
        VERSION: {"N": new_version()},
        DEADLINE: {"N": claimable_at},
        STASH_DEADLINE: old[DEADLINE],
        SHARD: {"N": str(secrets.randbelow(SHARDS))},
    }
    if TTL in old:
        item[TTL] = old[TTL]
    return item


def _put_new(client: Any, call: Caller, item: Item) -> bool:
    """Put ``item`` only if no item has its key: ``False`` when one does."""
    try:
        call(
            "PutItem",
            client.put_item,
            write=True,
            TableName=call.table,
            Item=item,
            ConditionExpression="attribute_not_exists(#p)",
            ExpressionAttributeNames={"#p": PK},
        )
    except ConditionFailed:
        return False
    return True


def stash(client: Any, call: Caller, old: Item) -> None:
    """Keep an expired item a write just replaced (``old``, its ``ReturnValues``) for
    :func:`take_expired`, unless a sweeper stashed (leased) that expiry first. A failure is
    logged, not raised: the caller's write was applied, and only that one expiry's event is lost."""
    scope, key = decode_name(old.get(PK, {}).get("S", "")), decode_name(old.get(SK, {}).get("S", ""))
    if scope is None or key is None or VALUE not in old or DEADLINE not in old:
        return
    try:
        _put_new(client, call, _stash_item(old, scope, key, old[DEADLINE]["N"]))
    except Exception as exc:
        log.warning(
            "an expired entry (scope %r, key %r) replaced by a write could not be kept for its "
            "state:expired event: %s", scope, key, exc,
        )  # fmt: skip


#: A leased entry and its stash's sort key (what :func:`ack_leases` marks delivered).
Leased = tuple[Taken, str]


def lease_expired(
    client: Any, call: Caller, limit: int, sweep: Sweep, lease_ms: int, together: Together
) -> list[Leased]:
    """Lease up to ``limit`` expired entries (see the module docstring), each to one caller
    until ``lease_ms`` from now. A failure after some were leased returns those (logged); a
    failure before any raises."""
    found = _find(client, call, limit, sweep)
    until = str(now_ms() + lease_ms)
    stashes = [item for item in found if item[PK]["S"] == STASH_PARTITION]
    entries = [item for item in found if item[PK]["S"] != STASH_PARTITION]
    current: dict[tuple[str, str], Item] = {}
    for at in range(0, len(entries), MAX_GET_KEYS):
        keys = {(i[PK]["S"], i[SK]["S"]): {PK: i[PK], SK: i[SK]} for i in entries[at : at + MAX_GET_KEYS]}
        current.update(batch_get(client, call, call.table, list(keys.values())))

    def attempt(item: Item) -> Leased | Exception | None:
        try:
            if item[PK]["S"] == STASH_PARTITION:
                return _lease_stash(client, call, item, until)
            full = current.get((item[PK]["S"], item[SK]["S"]))
            return None if full is None else _lease_entry(client, call, item, full, until)
        except Exception as exc:
            return exc

    # stop after a quarter of the lease, so the batch is delivered and acknowledged long before
    # its first lease ends (another sweeper would claim it again); the rest waits for the next call
    budget_end, items, outcomes = now_ms() + lease_ms // 4, stashes + entries, []
    for at in range(0, len(items), 4 * TAKERS):
        if at and now_ms() > budget_end:
            break
        outcomes += _run(attempt, items[at : at + 4 * TAKERS], together)
    return _claimed(outcomes, len(found), "claims")


def _lease_entry(client: Any, call: Caller, found: Item, full: Item, until: str) -> Leased | None:
    """Stash entry item ``full`` leased until ``until`` and delete it, if it is still the
    expired item the index listed (``found``) and nobody stashed this expiry first."""
    scope, key, deadline = decode_name(full[PK]["S"]), decode_name(full[SK]["S"]), deadline_of(full)
    if (
        scope is None
        or key is None
        or deadline is None
        or deadline > now_ms()
        or VALUE not in full
        or full.get(VERSION) != found.get(VERSION)
        or full.get(DEADLINE) != found.get(DEADLINE)
    ):
        return None
    stashed = _stash_item(full, scope, key, until)
    mine = _put_new(client, call, stashed)
    try:  # stashed (by us or another): the item itself goes
        _delete_unchanged(client, call, full, holding_value=False)
    except ConditionFailed:
        pass  # written again since: the write found the stash and left it alone
    if not mine:
        return None
    return (scope, key, text_of(full, scope, key).encode("utf-8"), deadline), stashed[SK]["S"]


def _lease_stash(client: Any, call: Caller, found: Item, until: str) -> Leased | None:
    """Lease a stash the index listed (a write's, or a lease that lapsed) if it is unchanged."""
    version = found.get(VERSION, {}).get("N")
    if version is None or DEADLINE not in found:
        return None
    try:
        reply = call(
            "UpdateItem",
            client.update_item,
            write=True,
            TableName=call.table,
            Key={PK: found[PK], SK: found[SK]},
            UpdateExpression="SET #e = :until, #n = :nv, #d = if_not_exists(#d, :e)",
            ConditionExpression="#n = :n AND #e = :e AND attribute_exists(#v)",
            ExpressionAttributeNames={"#e": DEADLINE, "#n": VERSION, "#d": STASH_DEADLINE, "#v": VALUE},
            ExpressionAttributeValues={
                ":until": {"N": until},
                ":nv": {"N": new_version()},
                ":e": found[DEADLINE],
                ":n": {"N": version},
            },
            ReturnValues="ALL_NEW",
        )
    except ConditionFailed:
        return None
    item: Item = reply.get("Attributes") or {}
    scope, key = item.get(STASH_SCOPE, {}).get("S"), item.get(STASH_KEY, {}).get("S")
    deadline = deadline_of({DEADLINE: item[STASH_DEADLINE]}) if STASH_DEADLINE in item else None
    if scope is None or key is None or deadline is None:
        return None
    return (scope, key, text_of(item, scope, key).encode("utf-8"), deadline), found[SK]["S"]


#: How long a delivered lease's marker stays before DynamoDB's TimeToLive may remove it.
MARKER_S: Final = 86_400


#: DynamoDB's own limit of requests in one BatchWriteItem.
MAX_WRITE_ITEMS: Final = 25


def ack_leases(client: Any, call: Caller, stash_keys: list[str], together: Together) -> None:
    """Mark leased stashes delivered: each replaced by a marker (the key and a ``ttl`` a day on:
    no ``val``, ``exp`` or shard, so no sweep finds it and a late stash of that expiry fails its
    condition), ``BatchWriteItem`` of 25 at a time, all in flight at once: a few round
    trips for a full batch, so the window in which a kill delivers twice stays short."""
    ttl = {"N": str(ttl_seconds(now_ms()) + MARKER_S)}
    chunks = [stash_keys[at : at + MAX_WRITE_ITEMS] for at in range(0, len(stash_keys), MAX_WRITE_ITEMS)]

    def send(chunk: list[str]) -> Exception | None:
        pending = [
            {"PutRequest": {"Item": {PK: {"S": STASH_PARTITION}, SK: {"S": key}, TTL: ttl}}} for key in chunk
        ]
        try:
            for _ in call.tries():
                requests = {call.table: pending}
                reply = call("BatchWriteItem", client.batch_write_item, write=True, RequestItems=requests)
                pending = reply.get("UnprocessedItems", {}).get(call.table) or []
                if not pending:
                    return None
        except Exception as exc:
            return exc
        return BackendError(
            f"DynamoDB BatchWriteItem on table {call.table!r}: {len(pending)} markers still unprocessed "
            f"after {call.max_attempts} attempts (throttled)"
        )

    failures = [got for got in _run(send, chunks, together) if got is not None]
    if failures:
        raise failures[0]

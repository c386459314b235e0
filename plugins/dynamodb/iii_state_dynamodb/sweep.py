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
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from iii_state_core.expiry import now_ms

from .calls import Caller, ConditionFailed
from .layout import (
    DEADLINE,
    EXPIRY_INDEX,
    PK,
    SHARD,
    SHARDS,
    SK,
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
)

log = logging.getLogger("iii_state.dynamodb")

Taken = tuple[str, str, bytes, int]
#: Conditional deletes of one ``take_expired`` call in flight at once.
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
    version = item.get(VERSION, {}).get("N")
    values: dict[str, dict[str, str]] = {":e": {"N": item[DEADLINE]["N"]}}
    if version is None:
        condition = "attribute_not_exists(#n) AND #e = :e AND attribute_exists(#v)"
    else:
        condition, values[":n"] = "#n = :n AND #e = :e AND attribute_exists(#v)", {"N": version}
    try:
        reply = call(
            "DeleteItem",
            client.delete_item,
            write=True,
            TableName=call.table,
            Key={PK: item[PK], SK: item[SK]},
            ConditionExpression=condition,
            ExpressionAttributeNames={"#n": VERSION, "#e": DEADLINE, "#v": VALUE},
            ExpressionAttributeValues=values,
            ReturnValues="ALL_OLD",
        )
    except ConditionFailed:
        return None
    old: Item = reply.get("Attributes") or {}
    return scope, key, text_of(old, scope, key).encode("utf-8"), deadline


def take_expired(client: Any, call: Caller, limit: int, sweep: Sweep | None = None) -> list[Taken]:
    """Delete up to ``limit`` expired entries and return them, each once across processes.

    The deletes go out ``TAKERS`` at a time (one round trip each, so a sweep of many expired
    entries is not one long queue). A failure after some were taken returns those (logged; the
    next call meets the failure again), so no taken entry is dropped; a failure before any raises.
    """
    sweep = Sweep() if sweep is None else sweep
    if sweep.indexed and sweep.scanned:
        found = indexed_expired_items(client, call, limit)
    else:
        if sweep.fallback is not None:
            log.warning("%s", sweep.fallback)
            sweep.fallback = None
        found = expired_items(client, call, limit)
        sweep.scanned = len(found) < limit  # a full batch: the next call scans on
    if len(found) <= 1:
        outcomes = [_attempt(client, call, item) for item in found]
    else:
        with ThreadPoolExecutor(min(TAKERS, len(found)), thread_name_prefix="iii-state-take") as pool:
            outcomes = list(pool.map(lambda item: _attempt(client, call, item), found))
    taken = [got for got in outcomes if got is not None and not isinstance(got, Exception)]
    failures = [got for got in outcomes if isinstance(got, Exception)]
    if failures:
        if not taken:
            raise failures[0]
        log.warning("take_expired: %d of %d deletes failed: %s", len(failures), len(found), failures[0])
    return taken


def _attempt(client: Any, call: Caller, item: Item) -> Taken | Exception | None:
    try:
        return take(client, call, item)
    except Exception as exc:
        return exc


def stash(client: Any, call: Caller, old: Item) -> None:
    """Keep an expired item a write just replaced (``old``, its ``ReturnValues``) for
    :func:`take_expired`. A failure is logged, not raised: the caller's write was applied, and
    only that one expiry's event is lost."""
    scope, key = decode_name(old.get(PK, {}).get("S", "")), decode_name(old.get(SK, {}).get("S", ""))
    if scope is None or key is None or VALUE not in old or DEADLINE not in old:
        return
    item: Item = {
        PK: {"S": STASH_PARTITION},
        SK: {"S": secrets.token_hex(16)},
        STASH_SCOPE: {"S": scope},
        STASH_KEY: {"S": key},
        VALUE: old[VALUE],
        VERSION: {"N": new_version()},
        DEADLINE: old[DEADLINE],
    }
    if TTL in old:
        item[TTL] = old[TTL]
    item[SHARD] = {"N": str(secrets.randbelow(SHARDS))}
    try:
        call("PutItem", client.put_item, write=True, TableName=call.table, Item=item)
    except Exception as exc:
        log.warning(
            "an expired entry (scope %r, key %r) replaced by a write could not be kept for its "
            "state:expired event: %s", scope, key, exc,
        )  # fmt: skip

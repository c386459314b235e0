"""``state::transact`` on DynamoDB: one ``TransactWriteItems`` (decision 0012).

The core has read every entry involved (consistent reads) and planned the writes; this module
sends them as one request in which every item carries the condition "still what was read" — the
version (or, for an item another tool wrote, its text), with an expired item counting as missing.
A ``Put``/``Delete`` per write, a ``ConditionCheck`` per entry only checked. DynamoDB applies all
or none; a condition that failed or a conflicting transaction means another writer got there
first, so the answer is ``False`` and the core reads again.

Not every server has the operation (dynalite does not): :func:`serves_transactions` asks once,
when the adapter opens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from iii_state_core import BackendError
from iii_state_core.adapter import Token
from iii_state_core.errors import UnsupportedError
from iii_state_core.expiry import KEEP, ExpiresAt, now_ms

from .calls import Caller
from .layout import PK, SK, Item, item_key
from .tokens import unchanged

#: DynamoDB's own limits of one TransactWriteItems: items, and bytes of the whole request.
MAX_ITEMS: Final = 100
MAX_REQUEST_BYTES: Final = 4_000_000
#: Cancellation reasons that mean "another writer changed an entry": read again and retry.
LOST_RACE: Final = frozenset({"ConditionalCheckFailed", "TransactionConflict"})
#: Cancellation reasons that mean "refused before anything was applied, try the same again".
THROTTLED: Final = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"})
#: What servers without the operation answer (dynalite: UnknownOperationException).
NOT_SERVED: Final = frozenset({"UnknownOperationException", "UnrecognizedClientException", "InvalidAction"})
#: The item :func:`serves_transactions` checks: a partition no scope can have (scopes start with ``#``).
PROBE_PARTITION: Final = "!probe"


def deadline_after(token: Token, expires_at: ExpiresAt) -> int | None:
    """The deadline a written item gets: the one read (``KEEP``), none, or a new one."""
    if expires_at is KEEP:
        return getattr(token, "deadline", None)
    return expires_at  # type: ignore[return-value]  # KEEP ruled out above


def request_items(
    table: str,
    checks: Sequence[tuple[str, str, Token]],
    writes: Sequence[tuple[str, str, Item | None]],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The ``TransactItems`` and, per item, what it is (for error messages): every entry
    conditioned on its token (a write without one: on being missing).

    :param writes: ``(scope, key, item)``: the full item to put, or ``None`` to delete.
    """
    now = now_ms()
    conditions = {(scope, key): unchanged(None, now) for scope, key, _ in writes}
    conditions.update({(scope, key): unchanged(token, now) for scope, key, token in checks})
    return conditioned_items(table, conditions, writes)


def conditioned_items(
    table: str,
    conditions: dict[tuple[str, str], dict[str, Any]],
    writes: Sequence[tuple[str, str, Item | None]],
) -> tuple[list[dict[str, Any]], list[str]]:
    """As :func:`request_items`, from each entry's condition (``ConditionExpression`` and its
    names and values): a ``Put``/``Delete`` per write, a ``ConditionCheck`` per other entry."""
    left = dict(conditions)
    items: list[dict[str, Any]] = []
    names: list[str] = []
    for i, (scope, key, item) in enumerate(writes):
        where = {"TableName": table, **left.pop((scope, key), {})}
        if item is None:
            items.append({"Delete": {"Key": item_key(scope, key), **where}})
        else:
            items.append({"Put": {"Item": item, **where}})
        names.append(f"write {i} (scope {scope!r}, key {key!r})")
    for (scope, key), condition in left.items():
        check = {"Key": item_key(scope, key), "TableName": table, **condition}
        items.append({"ConditionCheck": check})
        names.append(f"the check of scope {scope!r}, key {key!r}")
    return items, names


def check_size(items: list[dict[str, Any]]) -> None:
    """Refuse before sending what DynamoDB would refuse: over 100 items or 4 MB of items.

    :raises UnsupportedError: naming the limit; nothing is sent, so nothing is written.
    """
    if len(items) > MAX_ITEMS:
        raise UnsupportedError(
            f"a DynamoDB transaction holds at most {MAX_ITEMS} entries (writes plus entries only "
            f"checked), this one {len(items)}; nothing was written"
        )
    size = sum(len(str(item)) for item in items)  # an upper bound of the attribute bytes
    if size > MAX_REQUEST_BYTES:
        exact = sum(_item_bytes(item) for item in items)
        if exact > MAX_REQUEST_BYTES:
            raise UnsupportedError(
                f"a DynamoDB transaction carries at most 4 MB of items, this one about {exact:,} bytes; "
                "nothing was written. Split it, or store the large values apart"
            )


def _item_bytes(request: dict[str, Any]) -> int:
    (body,) = request.values()
    item = body.get("Item") or body.get("Key") or {}
    return sum(
        len(name.encode()) + sum(len(str(v).encode()) for v in value.values()) for name, value in item.items()
    )


def send(client: Any, call: Caller, items: list[dict[str, Any]], names: list[str]) -> bool:
    """One ``TransactWriteItems``: ``True`` when applied, ``False`` when an entry changed (nothing
    applied). Throttled attempts are retried by ``call``'s policy and here.

    :raises BackendError: for any other refusal, naming the item DynamoDB refused.
    """
    for _ in call.tries():
        try:
            call("TransactWriteItems", client.transact_write_items, write=True, TransactItems=items)
            return True
        except BackendError as exc:
            reasons = _reasons(exc)
            if reasons is None:
                raise
        codes = {r.get("Code", "None") for r in reasons} - {"None"}
        if codes & LOST_RACE:
            return False
        if codes and codes <= THROTTLED:
            continue
        refused = [
            f"{names[i] if i < len(names) else f'item {i}'}: {r.get('Code')} {r.get('Message', '')}".rstrip()
            for i, r in enumerate(reasons)
            if r.get("Code", "None") != "None"
        ]
        raise BackendError(
            f"DynamoDB TransactWriteItems on table {call.table!r} was refused, nothing applied: "
            + "; ".join(refused)
        )
    raise BackendError(
        f"DynamoDB TransactWriteItems on table {call.table!r} was throttled {call.max_attempts} times; "
        "nothing applied. `max_attempts` sets the number of tries"
    )


def _reasons(exc: BackendError) -> list[dict[str, Any]] | None:
    """The ``CancellationReasons`` of a cancelled transaction, one per item; ``None`` for other errors."""
    if getattr(exc, "aws_code", "") != "TransactionCanceledException":
        return None
    response = getattr(exc.__cause__, "response", {}) or {}
    reasons = response.get("CancellationReasons")
    if isinstance(reasons, list):
        return reasons
    # a server that gives none: the message lists them as [Code, Code, ...]
    message = str(response.get("Error", {}).get("Message", ""))
    listed = message.partition("[")[2].partition("]")[0]
    return [{"Code": part.strip()} for part in listed.split(",")] if listed else [{"Code": "Unknown"}]


def serves_transactions(client: Any, call: Caller) -> bool:
    """Whether the server runs ``TransactWriteItems``: one request that only checks an item no
    scope can hold is missing, so nothing is written either way.

    :raises BackendError: when the server fails for another reason (the table is checked before).
    """
    probe = {PK: {"S": PROBE_PARTITION}, SK: {"S": PROBE_PARTITION}}
    try:
        call(
            "TransactWriteItems",
            client.transact_write_items,
            write=False,
            TransactItems=[
                {
                    "ConditionCheck": {
                        "TableName": call.table,
                        "Key": probe,
                        "ConditionExpression": "attribute_not_exists(#p)",
                        "ExpressionAttributeNames": {"#p": PK},
                    }
                }
            ],
        )
    except BackendError as exc:
        code = getattr(exc, "aws_code", "")
        if code in NOT_SERVED:
            return False
        if code == "TransactionCanceledException":  # an item is there: still, the server has it
            return True
        raise
    return True

"""Version tokens and the condition "the item is still what was read", for ``write_if`` and
``state::transact``.

A token is the item's ``ver`` (or, for an item another tool wrote without one, its text) and the
deadline read with it; ``None`` means the item was missing (or past its deadline). An item past
its deadline counts as missing in every condition.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from iii_state_core.adapter import Token

from .layout import DEADLINE, PK, VALUE, VERSION

#: The token ``read_versioned`` gives for an item written without a ``ver`` (by another tool):
#: conditions then check the exact stored text instead.
BY_VALUE: Final = "value"
BY_VERSION: Final = "version"
#: Conditions on an item's deadline (``#e`` = ``exp``, ``:now`` = the caller's clock).
LIVE: Final = "(attribute_not_exists(#e) OR #e > :now)"
MISSING: Final = "attribute_not_exists(#p) OR #e <= :now"


class ReadToken(NamedTuple):
    """What a conditional write checks: the item's version (or, for a foreign item, its text)
    and the deadline read with it, which a write keeping the deadline puts back (every change of
    the deadline draws a new version, so a matching version means this deadline)."""

    by: str
    what: str
    deadline: int | None


def unchanged(token: Token, now: int) -> dict[str, Any]:
    """``ConditionExpression`` and its names and values: the item is still what ``token`` saw.

    :raises TypeError: for a token ``read_versioned`` did not make.
    """
    if token is None:  # only if missing, or past its deadline
        return {
            "ConditionExpression": MISSING,
            "ExpressionAttributeNames": {"#p": PK, "#e": DEADLINE},
            "ExpressionAttributeValues": {":now": {"N": str(now)}},
        }
    if not isinstance(token, ReadToken) or token.by not in (BY_VERSION, BY_VALUE):
        raise TypeError(f"a conditional write got a token read_versioned did not make: {token!r}")
    found: dict[str, Any]
    if token.by == BY_VERSION:
        found = {
            "ConditionExpression": "#n = :n",
            "ExpressionAttributeNames": {"#n": VERSION},
            "ExpressionAttributeValues": {":n": {"N": token.what}},
        }
    else:
        found = {
            "ConditionExpression": "#v = :v AND attribute_not_exists(#n)",
            "ExpressionAttributeNames": {"#v": VALUE, "#n": VERSION},
            "ExpressionAttributeValues": {":v": {"S": token.what}},
        }
    if token.deadline is not None:  # it had a deadline when read: it must not have passed since
        found["ConditionExpression"] += " AND #e > :now"
        found["ExpressionAttributeNames"]["#e"] = DEADLINE
        found["ExpressionAttributeValues"][":now"] = {"N": str(now)}
    return found


def holds(data: bytes | None, now: int) -> dict[str, Any]:
    """The condition "the entry holds exactly ``data``" (``None``: it is missing), as
    :func:`unchanged` words it: a live item whose ``val`` is that text."""
    if data is None:
        return unchanged(None, now)
    return {
        "ConditionExpression": f"#v = :v AND {LIVE}",
        "ExpressionAttributeNames": {"#v": VALUE, "#e": DEADLINE},
        "ExpressionAttributeValues": {":v": {"S": data.decode("utf-8")}, ":now": {"N": str(now)}},
    }

"""Settling a conditional put whose reply was lost, instead of reporting an unknown outcome.

A lost reply (connection cut, read timeout, HTTP 5xx) leaves a write's outcome unknown, and the
core must not guess: a conflict answer makes it apply the update again. For ``write_if`` the
outcome can be found out, because of two facts about its put:

* its item carries a fresh random ``ver`` (see :func:`.layout.new_version`), so a consistent
  read that finds that version proves the put was applied;
* its condition names the version (or text) the caller read, so while a read finds the item still
  as the condition expects, the put has not been applied (yet), and sending the very same put
  again is safe: of the lost one and the resent one, the condition lets at most one apply.

Anything else — another writer changed the item, or the put targeted a missing item (an item
created by us and deleted by someone else looks missing again, so a resend could apply it twice)
— keeps the original :class:`~iii_state_core.UnknownOutcomeError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from iii_state_core import UnknownOutcomeError
from iii_state_core.expiry import now_ms

from .calls import ConditionFailed
from .layout import VALUE, VERSION, Item, is_live
from .tokens import BY_VERSION, ReadToken, unchanged

#: Resends of one lost put at most; each resend whose reply is lost too is read again.
RESENDS: Final = 2


def _version(item: Item | None) -> str | None:
    return None if item is None else item.get(VERSION, {}).get("N")


def still_as_read(item: Item | None, token: ReadToken, now: int) -> bool:
    """The stored item still satisfies the put's condition (the same test DynamoDB makes)."""
    if item is None or not is_live(item, now):
        return False
    if token.by == BY_VERSION:
        return _version(item) == token.what
    return _version(item) is None and item.get(VALUE, {}).get("S") == token.what


def settle_lost_put(
    lost: UnknownOutcomeError,
    item: Item,
    token: ReadToken | None,
    read: Callable[[], Item | None],
    put: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """Find out what became of the conditional put of ``item`` (its reply was lost).

    :param read: a consistent read of the item's key.
    :param put: sends the same put again with the given condition parameters.
    :returns: the resent put's reply when a resend applied it, ``{}`` when the lost put was
        applied (a read found its version).
    :raises UnknownOutcomeError: ``lost``, when the outcome cannot be known.
    """
    ours = _version(item)  # every put's item has one
    for _ in range(RESENDS):
        found = read()
        if _version(found) == ours:
            return {}
        if token is None or not still_as_read(found, token, now_ms()):
            raise lost  # changed by another writer after ours, or instead of it: cannot tell
        try:
            return put(unchanged(token, now_ms()))
        except ConditionFailed:
            continue  # ours (the lost one) or another writer's came first: read again
        except UnknownOutcomeError:
            continue  # the resend's reply was lost as well: read again
    found = read()
    if _version(found) == ours:
        return {}
    raise lost

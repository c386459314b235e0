"""Settling a lost conditional put (settle.py), step by step against a scripted table: every
branch either proves the outcome or keeps the unknown-outcome error. The end-to-end cases run
through a faulty proxy in test_faults.py."""

from __future__ import annotations

from typing import Any

import pytest
from iii_state_dynamodb.calls import ConditionFailed
from iii_state_dynamodb.layout import DEADLINE, VALUE, VERSION, Item
from iii_state_dynamodb.settle import settle_lost_put, still_as_read
from iii_state_dynamodb.tokens import BY_VALUE, BY_VERSION, ReadToken

from iii_state_core import UnknownOutcomeError
from iii_state_core.expiry import now_ms

LOST = UnknownOutcomeError("PutItem reply lost")
OURS: Item = {VALUE: {"S": '"new"'}, VERSION: {"N": "222"}}
READ = ReadToken(BY_VERSION, "111", None)


def stored(version: str | None, text: str = '"old"', deadline: int | None = None) -> Item:
    item: Item = {VALUE: {"S": text}}
    if version is not None:
        item[VERSION] = {"N": version}
    if deadline is not None:
        item[DEADLINE] = {"N": str(deadline)}
    return item


class Table:
    """Reads return ``reads`` in turn; each put pops the next of ``puts`` (a reply, or an
    exception to raise) and records the condition it was sent with."""

    def __init__(self, reads: list[Item | None], puts: list[Any] = ()) -> None:  # type: ignore[assignment]
        self.reads = list(reads)
        self.puts = list(puts)
        self.sent: list[dict[str, Any]] = []

    def read(self) -> Item | None:
        return self.reads.pop(0)

    def put(self, condition: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(condition)
        outcome = self.puts.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return dict(outcome)


def settle(table: Table, token: ReadToken | None = READ) -> dict[str, Any]:
    return settle_lost_put(LOST, OURS, token, table.read, table.put)


def test_a_read_that_finds_our_version_proves_it_applied_without_a_resend() -> None:
    table = Table([stored("222")])
    assert settle(table) == {}
    assert table.sent == []


def test_an_unchanged_item_gets_the_same_put_once_more_conditioned_afresh() -> None:
    table = Table([stored("111")], [{"ok": 1}])
    assert settle(table) == {"ok": 1}
    assert table.sent[0]["ExpressionAttributeValues"][":n"] == {"N": "111"}


def test_a_resend_refused_by_its_condition_is_read_again() -> None:
    # the lost put landed after the read: the resend fails its condition, the next read finds ours
    table = Table([stored("111"), stored("222")], [ConditionFailed("PutItem")])
    assert settle(table) == {}


def test_resends_whose_replies_are_lost_too_end_in_a_last_read() -> None:
    lost_again = UnknownOutcomeError("again")
    table = Table([stored("111"), stored("111"), stored("222")], [lost_again, lost_again])
    assert settle(table) == {}
    table = Table([stored("111"), stored("111"), stored("111")], [lost_again, lost_again])
    with pytest.raises(UnknownOutcomeError) as info:
        settle(table)
    assert info.value is LOST


@pytest.mark.parametrize(
    "found",
    [stored("333"), None, stored("111", deadline=now_ms() - 1)],
    ids=["another-version", "deleted", "expired"],
)
def test_an_item_changed_by_someone_else_keeps_the_outcome_unknown(found: Item | None) -> None:
    table = Table([found])
    with pytest.raises(UnknownOutcomeError) as info:
        settle(table)
    assert info.value is LOST and table.sent == []


def test_a_put_made_over_a_missing_item_is_never_resent() -> None:
    with pytest.raises(UnknownOutcomeError):
        settle(Table([None]), token=None)
    assert settle(Table([stored("222")]), token=None) == {}


def test_still_as_read_checks_what_the_condition_checks() -> None:
    now = now_ms()
    assert still_as_read(stored("111"), READ, now)
    assert not still_as_read(stored("112"), READ, now)
    assert still_as_read(stored("111", deadline=now + 1000), READ, now)
    assert not still_as_read(stored("111", deadline=now), READ, now)
    by_value = ReadToken(BY_VALUE, '"old"', None)
    assert still_as_read(stored(None), by_value, now)
    assert not still_as_read(stored("111"), by_value, now)  # a versioned item is not the foreign one
    assert not still_as_read(stored(None, '"other"'), by_value, now)

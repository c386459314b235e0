"""The take scripts' replies parsed in bulk (``expiring.claimed_from``) exactly as one member at a
time (``expiring.parse_member``), whatever the replies hold, and the leases they come with
(``expiring.retaken_from``, ``expiring.Leases``): no server needed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from iii_state_redis.expiring import (
    Leases,
    batch_from,
    batch_id,
    claimed_from,
    packed,
    parse_member,
    retaken_from,
)

from iii_state_core import BackendError


def _member(scope: str, key: str, deadline: int, value: bytes) -> bytes:
    """A lease member as the take scripts write it."""
    s, k = scope.encode("utf-8", "surrogatepass"), key.encode("utf-8", "surrogatepass")
    return b"%d:%s%d:%s%d:%s" % (len(s), s, len(k), k, deadline, value)


names = st.text(max_size=12)  # surrogates too: a member that is not UTF-8 is not ours
garbage = st.binary(max_size=30)
scopes = st.sampled_from(["s", "t", "scope:1", "scope:2", "é"]) | names  # alike, to tell apart
ours = st.builds(_member, scopes, names, st.integers(0, 2**53), st.binary(max_size=20))
torn = st.builds(lambda member, cut: member[:cut], ours, st.integers(0, 40))
members = st.one_of(ours, garbage, torn)


@given(st.lists(members, max_size=30))
def test_bulk_parsing_matches_one_at_a_time(reply: list[bytes]) -> None:
    one_by_one = [(entry, member) for member in reply if (entry := parse_member(member)) is not None]
    assert claimed_from(packed(reply)) == one_by_one


def test_a_reply_of_one_scope_and_its_odd_members() -> None:
    reply = [_member("s", f"k{n}", 1_700_000_000_000 + n, b'{"n":1}') for n in range(3)]
    reply[1:1] = [b"not ours", _member("s2", "k", 5, b"1"), b"1:s1:k1.5e3:v"]  # a float deadline too
    assert [(entry[0], entry[1], entry[3]) for entry, _member in claimed_from(packed(reply))] == [
        ("s", "k0", 1_700_000_000_000), ("s2", "k", 5), ("s", "k", 1500),
        ("s", "k1", 1_700_000_000_001), ("s", "k2", 1_700_000_000_002),
    ]  # fmt: skip


@given(st.lists(ours, max_size=30))
def test_packed_members_come_back_as_themselves(members: list[bytes]) -> None:
    """What the ACK script takes and the take scripts answer: names with ``:`` included."""
    assert [member for _entry, member in claimed_from(packed(members))] == members


@pytest.mark.parametrize("reply", [b"5:abc", b"x:abc", b"3abc", b"-1:a", b"3:abc2"])
def test_a_reply_that_is_not_packed_members_is_a_clear_error(reply: bytes) -> None:
    with pytest.raises(BackendError, match="not packed members"):
        claimed_from(reply)


@given(st.lists(st.one_of(st.lists(ours, min_size=1, max_size=5), ours), max_size=8))
def test_a_retake_gives_each_batch_entry_its_batch_and_an_old_member_itself(
    leases: list[list[bytes] | bytes],
) -> None:
    """RETAKE answers each lapsed lease packed: a batch as ``<id>:<its entries packed>``, an entry
    an earlier version leased alone as its member (decision 0031)."""
    items, expected = [], []
    for lease in leases:
        if isinstance(lease, list):
            batch = batch_id()
            items.append(batch + b":" + packed(lease))
            expected += [(entry, member, batch) for entry, member in claimed_from(packed(lease))]
        else:
            items.append(lease)
            expected += [(entry, lease, lease) for entry in [parse_member(lease)] if entry is not None]
    assert retaken_from(packed(items)) == expected


def test_a_batch_acknowledged_in_part_keeps_the_rest_and_then_goes() -> None:
    members = [_member("s", f"k{n}", 10 + n, b"1") for n in range(4)]
    one, two = batch_id(), batch_id()
    leases = Leases()
    taken = leases.hold(batch_from(packed(members[:3]), one) + batch_from(packed(members[3:]), two))
    assert [entry[1] for entry in taken] == ["k0", "k1", "k2", "k3"]
    part = [taken[1], taken[3]]
    changes = leases.release(part)
    assert changes == [("s", one, packed([members[0], members[2]])), ("s", two, None)]
    leases.drop(part, changes)
    assert leases.release(part) == []  # acknowledged already: nothing left to change
    rest = [taken[0], taken[2]]
    assert leases.release(rest) == [("s", one, None)]
    leases.drop(rest, leases.release(rest))
    assert leases.release(taken) == []
    again = leases.hold(batch_from(packed(members[:3]), one))
    assert leases.release([again[0], again[0], again[1]]) == [("s", one, packed(members[2:3]))]


def test_batch_ids_are_marked_and_distinct() -> None:
    ids = {batch_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(i.startswith(b"#") and len(i) == 17 for i in ids)

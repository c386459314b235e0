"""The item layout: injective, order-preserving key encoding and the size arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from iii_state_dynamodb import DynamoDBAdapter
from iii_state_dynamodb.layout import (
    ITEM_BUDGET,
    MAX_KEY_BYTES,
    MAX_SCOPE_BYTES,
    MAX_VALUE_BYTES,
    SHARDS,
    deadline_of,
    decode_name,
    encode_name,
    expiry_attributes,
    item_key,
    new_version,
    value_text,
)

from iii_state_core import KeyTooLargeError, ValueTooLargeError

names = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


def test_declared_limits_are_the_layout_limits() -> None:
    caps = DynamoDBAdapter.capabilities
    assert (caps.max_scope_bytes, caps.max_key_bytes) == (2047, 1023)
    assert caps.max_value_bytes == MAX_VALUE_BYTES == ITEM_BUDGET - (2 + 2048 + 2 + 1024 + 3 + 3 + 21)
    assert caps.ordered_listing and caps.durable and caps.shared and not caps.may_evict
    assert caps.atomic_update == "emulated"


@given(names, names)
def test_encoding_is_injective_non_empty_and_keeps_utf8_order(a: str, b: str) -> None:
    ea, eb = encode_name("key", a, MAX_KEY_BYTES), encode_name("key", b, MAX_KEY_BYTES)
    assert ea and eb
    assert (ea == eb) == (a == b)
    assert decode_name(ea) == a
    # DynamoDB compares string keys by their UTF-8 bytes
    assert (ea.encode() < eb.encode()) == (a.encode() < b.encode())


def test_empty_scope_and_key_become_legal_key_attributes() -> None:
    assert item_key("", "") == {"pk": {"S": "#"}, "sk": {"S": "#"}}
    assert decode_name("other") is None


def test_key_limits_at_the_boundary() -> None:
    assert len(encode_name("key", "é" * 511 + "a", MAX_KEY_BYTES).encode()) == 1024
    with pytest.raises(KeyTooLargeError, match=r"1024 bytes.*at most 1023"):
        encode_name("key", "é" * 512, MAX_KEY_BYTES)
    assert len(encode_name("scope", "a" * MAX_SCOPE_BYTES, MAX_SCOPE_BYTES).encode()) == 2048
    with pytest.raises(KeyTooLargeError):
        item_key("a" * (MAX_SCOPE_BYTES + 1), "k")


def test_value_limit_at_the_boundary() -> None:
    assert len(value_text(b"1" * MAX_VALUE_BYTES)) == MAX_VALUE_BYTES
    with pytest.raises(ValueTooLargeError, match=str(MAX_VALUE_BYTES)):
        value_text(b"1" * (MAX_VALUE_BYTES + 1))


def test_versions_are_fresh_positive_63_bit_numbers() -> None:
    drawn = {new_version() for _ in range(1000)}
    assert len(drawn) == 1000
    assert all(0 <= int(v) < 2**63 and len(v) <= 19 for v in drawn)


def test_expiry_attributes_carry_the_deadline_its_seconds_rounded_up_and_a_spread_shard() -> None:
    assert expiry_attributes(None) == {}
    shards = set()
    for _ in range(400):
        attributes = expiry_attributes(1_765_068_000_001)
        assert (attributes["exp"], attributes["ttl"]) == ({"N": "1765068000001"}, {"N": "1765068001"})
        shards.add(attributes["xsh"]["N"])
    assert shards == {str(n) for n in range(SHARDS)}  # 400 draws miss a shard with odds ~4e-50
    assert expiry_attributes(1_765_068_000_000)["ttl"] == {"N": "1765068000"}


@pytest.mark.parametrize(
    ("stored", "deadline"),
    [("1765068000123", 1_765_068_000_123), ("1.765068000123E12", 1_765_068_000_123), ("5.0", 5),
     ("-3", -3), ("not a number", None), ("", None)],
)  # fmt: skip
def test_deadline_of_reads_our_numbers_and_other_tools_forms(stored: str, deadline: int | None) -> None:
    assert deadline_of({"exp": {"N": stored}}) == deadline
    assert deadline_of({"exp": {"S": stored}}) is None
    assert deadline_of({}) is None

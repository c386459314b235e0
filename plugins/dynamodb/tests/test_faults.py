"""Faults between the adapter and DynamoDB, injected by a loopback proxy: throttling, lost and
corrupted replies, server errors, slow replies. Every write is sent once unless DynamoDB proved
it did nothing, or a read proved that the lost conditional put did not apply and could not
apply after its resend."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from faulty_proxy import CORRUPT, CUT_REPLY, DELAY, DROP, SERVER_ERROR, THROTTLE, FaultyProxy, faulty_proxy

from iii_state_core import (
    BackendError,
    StateStore,
    UnknownOutcomeError,
    open_async_store,
    open_store,
)
from iii_state_core.driver import ThreadedAsyncAdapter

INCREMENT = {"type": "increment", "path": "n", "by": 1}


@pytest.fixture
def proxy(endpoint: str) -> Iterator[FaultyProxy]:
    with faulty_proxy(endpoint) as running:
        yield running


@pytest.fixture
def proxied(proxy: FaultyProxy, session_table: str) -> dict[str, Any]:
    return {"table_name": session_table, "endpoint_url": proxy.url}


@pytest.fixture
def store(proxied: dict[str, Any]) -> Iterator[StateStore]:
    with open_store(adapter="dynamodb", adapter_config=proxied) as opened:
        yield opened


def test_throttled_writes_are_retried_until_they_succeed(store: StateStore, proxy: FaultyProxy) -> None:
    proxy.fail("PutItem", THROTTLE, 2)
    assert store.set("faults", "throttled", 1).new_value == 1
    assert proxy.seen["PutItem"] == 3
    assert store.get("faults", "throttled") == 1


def test_botocore_does_not_retry_behind_our_back(proxy: FaultyProxy, proxied: dict[str, Any]) -> None:
    with open_store(adapter="dynamodb", adapter_config={**proxied, "max_attempts": 1}) as store:
        proxy.fail("GetItem", THROTTLE, 1)
        with pytest.raises(BackendError, match="ThrottlingException"):
            store.get("faults", "one-try")
    assert proxy.seen["GetItem"] == 1


def test_throttling_that_persists_is_a_clear_error(proxy: FaultyProxy, proxied: dict[str, Any]) -> None:
    with open_store(adapter="dynamodb", adapter_config={**proxied, "max_attempts": 3}) as store:
        store.set("faults", "busy", "before")
        proxy.fail("PutItem", THROTTLE, 3)
        with pytest.raises(BackendError) as info:
            store.set("faults", "busy", "after")
        assert info.value.code == "SET_ERROR"
        assert not isinstance(info.value, UnknownOutcomeError)
        message = str(info.value)
        assert "failed 3 times" in message and "ThrottlingException" in message and "on-demand" in message
        assert store.get("faults", "busy") == "before"
    assert proxy.seen["PutItem"] == 4


def test_a_set_whose_reply_is_lost_is_an_unknown_outcome_applied_once(
    store: StateStore, proxy: FaultyProxy
) -> None:
    store.set("faults", "lost", "old")
    proxy.fail("PutItem", CUT_REPLY)
    with pytest.raises(UnknownOutcomeError) as info:
        store.set("faults", "lost", "new")
    assert info.value.code == "SET_ERROR" and "may or may not have been applied" in str(info.value)
    assert proxy.seen["PutItem"] == 2  # the first set and the cut one: never resent
    assert store.get("faults", "lost") == "new"


def test_an_update_whose_reply_is_lost_is_settled_by_a_read_and_applied_once(
    store: StateStore, proxy: FaultyProxy
) -> None:
    store.set("faults", "counter", {"n": 0})
    proxy.fail("PutItem", CUT_REPLY)
    result = store.update("faults", "counter", [INCREMENT])
    assert (result.old_value, result.new_value) == ({"n": 0}, {"n": 1})
    assert store.get("faults", "counter") == {"n": 1}
    assert proxy.seen["PutItem"] == 2  # the set and the update's put: a read found it applied


def test_an_update_answered_with_a_server_error_is_settled_the_same_way(
    store: StateStore, proxy: FaultyProxy
) -> None:
    store.set("faults", "counter5xx", {"n": 0})
    proxy.fail("PutItem", SERVER_ERROR)
    store.update("faults", "counter5xx", [INCREMENT])
    assert store.get("faults", "counter5xx") == {"n": 1}
    assert proxy.seen["PutItem"] == 2


def test_a_conditional_put_lost_on_the_way_is_sent_again_once(store: StateStore, proxy: FaultyProxy) -> None:
    store.set("faults", "dropped", {"n": 0})
    proxy.fail("PutItem", DROP)
    result = store.update("faults", "dropped", [INCREMENT])
    assert (result.old_value, result.new_value) == ({"n": 0}, {"n": 1})
    assert store.compare_and_set("faults", "dropped", {"n": 1}, {"n": 7}).swapped is True
    assert store.get("faults", "dropped") == {"n": 7}
    # the set, the dropped put and its resend (the read found the item unchanged), the swap
    assert proxy.seen["PutItem"] == 4


@pytest.mark.parametrize("fault", [CUT_REPLY, DROP])
def test_a_lost_put_whose_entry_another_writer_changed_stays_an_unknown_outcome(
    store: StateStore, proxy: FaultyProxy, endpoint: str, session_table: str, fault: str
) -> None:
    """Applied and then overwritten, or never applied: a read cannot tell, so nothing is resent."""
    direct = {"table_name": session_table, "endpoint_url": endpoint}
    with open_store(adapter="dynamodb", adapter_config=direct) as other:
        store.set("faults", "raced", {"n": 0})
        proxy.fail("PutItem", fault, then=lambda: other.set("faults", "raced", {"n": 10}))
        with pytest.raises(UnknownOutcomeError) as info:
            store.update("faults", "raced", [INCREMENT])
    assert info.value.code == "UPDATE_ERROR" and "may or may not have been applied" in str(info.value)
    assert store.get("faults", "raced") == {"n": 10}
    assert proxy.seen["PutItem"] == 2


def test_a_lost_create_is_settled_only_when_a_read_finds_it(store: StateStore, proxy: FaultyProxy) -> None:
    """An item created and then deleted by someone else looks missing again: never resent."""
    proxy.fail("PutItem", CUT_REPLY)
    assert store.update("faults", "created", [INCREMENT]).new_value == {"n": 1}
    proxy.fail("PutItem", DROP)
    with pytest.raises(UnknownOutcomeError):
        store.update("faults", "created-dropped", [INCREMENT])
    assert store.get("faults", "created-dropped") is None
    assert proxy.seen["PutItem"] == 2


def test_a_delete_answered_with_a_server_error_is_an_unknown_outcome(
    store: StateStore, proxy: FaultyProxy
) -> None:
    store.set("faults", "gone", 1)
    proxy.fail("DeleteItem", SERVER_ERROR)
    with pytest.raises(UnknownOutcomeError) as info:
        store.delete("faults", "gone")
    assert info.value.code == "DELETE_ERROR"
    assert proxy.seen["DeleteItem"] == 1
    assert store.get("faults", "gone") is None


def test_a_read_whose_reply_is_lost_is_retried(store: StateStore, proxy: FaultyProxy) -> None:
    store.set("faults", "read", [1, 2])
    proxy.fail("GetItem", CUT_REPLY)
    assert store.get("faults", "read") == [1, 2]
    assert proxy.seen["GetItem"] == 2


def test_a_corrupted_reply_is_caught_by_its_crc32(store: StateStore, proxy: FaultyProxy) -> None:
    store.set("faults", "crc", "marker")
    proxy.fail("GetItem", CORRUPT)
    assert store.get("faults", "crc") == "marker"  # the corrupted reply was refused and re-read
    assert proxy.seen["GetItem"] == 2
    proxy.fail("PutItem", CORRUPT)
    with pytest.raises(UnknownOutcomeError):
        store.set("faults", "crc", "second")  # its old value "marker" came back corrupted


def test_the_async_store_runs_requests_off_the_event_loop(
    proxied: dict[str, Any], proxy: FaultyProxy
) -> None:
    async def main() -> tuple[int, Any]:
        async with open_async_store(adapter="dynamodb", adapter_config=proxied) as store:
            assert isinstance(store.async_adapter, ThreadedAsyncAdapter)
            await store.set("faults", "slow", 7)
            proxy.fail("GetItem", DELAY)
            ticks = 0

            async def heartbeat() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            beating = asyncio.create_task(heartbeat())
            value = await store.get("faults", "slow")  # held 0.5 s by the proxy
            beating.cancel()
            return ticks, value

    ticks, value = asyncio.run(main())
    assert value == 7
    assert ticks >= 10, f"the loop ticked only {ticks} times during a 0.5 s request"

"""contract § Expiry, expiry events through the worker: ``state`` triggers and ``state::on-changed``
get ``state:expired``; an expiry from while no worker ran comes once the worker is connected;
two replicas on one store deliver each expiry once between them."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from engine_peer import EnginePeer
from worker_harness import FAST, free_port, run, serving

from iii_state_core import open_store
from iii_state_core.worker import StateWorker


def expiring_file_store(path: Path, sweeper: str = "thread") -> dict[str, Any]:
    return {
        "adapter": {"name": "kv", "config": {"store_method": "file_based", "file_path": str(path)}},
        "expiry_events": True,
        "expiry_sweeper": sweeper,  # process: a child of the worker claims (decision 0030)
    }


#: Where the worker's sweeper claims: its event loop's task, or a child process.
sweepers = pytest.mark.parametrize("sweeper", ["thread", "process"])


async def bind_expired(peer: EnginePeer) -> None:
    peer.serve("r::any", lambda data, metadata: None)
    peer.serve("state::on-changed", lambda data, metadata: None)
    result = await peer.register_trigger("state", "r::any", {"scope": "s"}, trigger_id="t-any")
    assert "error" not in result, result


def expired_calls(peer: EnginePeer, function_id: str) -> list[dict[str, Any]]:
    return [c.data for c in peer.calls_to(function_id) if c.data.get("event_type") == "state:expired"]


@sweepers
def test_triggers_and_observers_get_state_expired_including_one_from_downtime(
    tmp_path: Path, sweeper: str
) -> None:
    config = expiring_file_store(tmp_path / "kv", sweeper)
    with open_store({"adapter": config["adapter"]}) as before:  # no worker runs meanwhile
        before.set("s", "while-down", {"n": 1}, ttl_ms=10)

    async def scenario() -> None:
        await asyncio.sleep(0.03)
        async with serving(config) as (peer, _):
            await bind_expired(peer)
            await peer.call("state::set", {"scope": "s", "key": "live", "value": [1], "ttl_ms": 50})
            for _ in range(500):
                if min(len(expired_calls(peer, f)) for f in ("r::any", "state::on-changed")) >= 2:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.6)  # later sweeps deliver nothing twice
            event = {"type": "state", "event_type": "state:expired", "scope": "s", "new_value": None}
            expected = [
                {**event, "key": "while-down", "old_value": {"n": 1}},
                {**event, "key": "live", "old_value": [1]},
            ]
            def by_key(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return sorted(calls, key=lambda d: str(d["key"]), reverse=True)  # one task per event

            def without_ids(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return [{k: v for k, v in d.items() if k != "expiry_id"} for d in calls]

            triggered = by_key(expired_calls(peer, "r::any"))
            observed = by_key(expired_calls(peer, "state::on-changed"))
            assert without_ids(triggered) == expected and without_ids(observed) == expected
            # each expiry's id reaches triggers and observers alike, one id per expiry
            ids = [d["expiry_id"] for d in triggered]
            assert ids == [d["expiry_id"] for d in observed] and len(set(ids)) == 2
            assert await peer.call("state::get", {"scope": "s", "key": "live"}) is None

    run(scenario())


@sweepers
def test_two_replicas_deliver_each_expiry_once(tmp_path: Path, sweeper: str) -> None:
    config = expiring_file_store(tmp_path / "kv", sweeper)
    entries = 20

    async def scenario() -> None:
        async with serving(config) as (one, _), serving(config) as (two, _):
            await bind_expired(one)
            await bind_expired(two)
            for n in range(entries):
                peer = one if n % 2 else two
                await peer.call("state::set", {"scope": "s", "key": f"k{n}", "value": n, "ttl_ms": 30 + n})

            def delivered() -> list[str]:
                return [d["key"] for p in (one, two) for d in expired_calls(p, "r::any")]

            for _ in range(500):
                if len(delivered()) >= entries:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.6)
            counts = Counter(delivered())
            assert sorted(counts) == sorted(f"k{n}" for n in range(entries))
            assert set(counts.values()) == {1}, "an expiry was delivered twice"

    run(scenario())


def test_no_expiry_is_taken_before_the_engine_connection(tmp_path: Path) -> None:
    """Expiries from while no worker ran must wait for the engine (and the bindings it replays):
    a worker that cannot reach its engine takes none."""
    config = expiring_file_store(tmp_path / "kv")
    with open_store({"adapter": config["adapter"]}) as before:
        before.set("s", "k", 1, ttl_ms=10)

    async def scenario() -> None:
        worker = StateWorker(config, replace(FAST, engine_url=f"ws://127.0.0.1:{free_port()}"))
        await worker.start()
        try:
            await asyncio.sleep(0.8)  # several poll intervals of kv (250 ms)
            # the store opens only once connected (after the configuration entry is read)
            assert worker.store is None, "the store was opened before the worker was connected"
        finally:
            await worker.stop()

    run(scenario())
    with open_store(config) as after:  # still there for the next store to deliver
        assert after.adapter.take_expired(10)[0][:3] == ("s", "k", b"1")

"""``StateWorker`` as a library: stop() drains in-flight calls and pending reactions, then closes
the adapter it opened (and only that one)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from engine_peer import EnginePeer
from worker_harness import FAST, GatedAdapter, free_port, make_registry, run, serving

from iii_state_core import ConfigError, open_async_store
from iii_state_core.worker import StateWorker
from iii_state_core.worker.functions import WORKER_FUNCTION_IDS


def test_stop_finishes_in_flight_calls_before_it_disconnects_and_closes() -> None:
    async def scenario() -> None:
        config = {"adapter": {"name": "gated", "config": {}}}
        async with serving(config, registry=make_registry()) as (peer, worker):
            # `set` only writes; just the read below waits at the gate.
            await peer.call("state::set", {"scope": "gated", "key": "k", "value": "kept"}, timeout=1)
            GatedAdapter.entered.clear()
            call = asyncio.ensure_future(peer.invoke("state::get", {"scope": "gated", "key": "k"}))
            await asyncio.to_thread(GatedAdapter.entered.wait, 5)

            stopping = asyncio.ensure_future(worker.stop())
            conn = peer.current
            # No new calls: every function is withdrawn from the engine first ...
            await peer.wait_for(lambda: not conn.functions)
            assert {f["id"] for f in conn.frames_of("unregisterfunction")} == set(WORKER_FUNCTION_IDS)
            await asyncio.sleep(0.2)
            # ... while the call in flight keeps the connection and the adapter open.
            assert not stopping.done() and not call.done() and not conn.closed
            assert not GatedAdapter.closed.is_set()

            GatedAdapter.gate.set()
            outcome = await call
            assert outcome.ok and outcome.result == "kept"
            await stopping
            assert conn.closed and GatedAdapter.closed.is_set()

    run(scenario())


def test_stop_lets_pending_reactions_finish() -> None:
    async def scenario() -> None:
        async with serving() as (peer, worker):
            finished: list[Any] = []

            async def slow(data: Any, metadata: Any) -> Any:
                await asyncio.sleep(0.4)
                finished.append(data["new_value"])
                return None

            peer.serve("r::slow", slow)
            await peer.register_trigger("state", "r::slow", {}, trigger_id="t-slow")
            for i in range(3):
                await peer.call("state::set", {"scope": "s", "key": str(i), "value": i})
            await peer.wait_for_calls("r::slow", 3)
            assert worker.reactions.pending == 3
            await worker.stop()
            assert sorted(finished) == [0, 1, 2] and worker.reactions.pending == 0

    run(scenario())


def test_reactions_still_running_after_the_drain_timeout_are_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="iii_state")

    async def scenario() -> None:
        async with serving(drain_timeout=0.3) as (peer, worker):
            never = asyncio.Event()

            async def stuck(data: Any, metadata: Any) -> Any:
                await never.wait()

            peer.serve("r::stuck", stuck)
            await peer.register_trigger("state", "r::stuck", {}, trigger_id="t-stuck")
            await peer.call("state::set", {"scope": "s", "key": "k", "value": 1})
            await peer.wait_for_calls("r::stuck")
            await asyncio.wait_for(worker.stop(), 3)
            assert worker.reactions.pending == 0

    run(scenario())
    assert "cancelled the reactions of 1 write(s) after 0.3 s" in caplog.text


def test_a_store_passed_in_is_served_and_left_open() -> None:
    async def scenario() -> None:
        store = open_async_store(adapter="gated", registry=make_registry())
        GatedAdapter.gate.set()
        try:
            async with EnginePeer() as peer:
                worker = StateWorker(settings=replace(FAST, engine_url=peer.url), store=store)
                await worker.start()
                try:
                    await peer.wait_for_function("state::set")
                    await peer.call("state::set", {"scope": "s", "key": "k", "value": 1})
                finally:
                    await worker.stop()
            assert not GatedAdapter.closed.is_set()
            assert await store.get("s", "k") == 1
        finally:
            await store.close()
        assert GatedAdapter.closed.is_set()

    run(scenario())


def test_a_config_that_cannot_be_opened_fails_start_and_leaves_nothing_running() -> None:
    from iii_state_core import ConfigError

    async def scenario() -> None:
        worker = StateWorker({"adapter": {"name": "nope", "config": {}}}, FAST)
        with pytest.raises(ConfigError, match="no installed plugin provides the adapter 'nope'"):
            await worker.start()
        assert worker.iii is None

    run(scenario())


def test_an_engine_url_that_is_not_a_websocket_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'http://\*\*\*@h:1' is not a ws:// or wss:// URL"):
        StateWorker(settings=replace(FAST, engine_url="http://u:secret@h:1"))


def test_a_config_file_without_a_state_block_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The easy mistake: pointing the worker at the engine's own config.yaml. It used to serve the
    embedded store with a warning; now it refuses to start, naming the file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("workers:\n  - name: http\n")

    async def scenario() -> None:
        worker = StateWorker("config.yaml", replace(FAST, engine_url=f"ws://127.0.0.1:{free_port()}"))
        with pytest.raises(ConfigError, match=r"config\.yaml has no iii-state block"):
            await worker.start()

    run(scenario())
    assert not (tmp_path / "data").exists()


def test_a_stop_while_the_store_opens_closes_the_store_once_it_is_open() -> None:
    """The store opens in a thread after the configuration entry is read; a stop meanwhile must
    not leak it."""

    async def scenario() -> None:
        registry = make_registry()
        async with EnginePeer(stamp_callers=True) as peer:
            config = {"adapter": {"name": "gated", "config": {"slow_open": True}}}
            worker = StateWorker(config, replace(FAST, engine_url=peer.url), registry=registry)
            await worker.start()
            assert await asyncio.to_thread(GatedAdapter.entered.wait, 5), "the store is opening"
            await worker.stop()
            assert worker.store is None and not GatedAdapter.closed.is_set()
            GatedAdapter.gate.set()
            assert await asyncio.to_thread(GatedAdapter.closed.wait, 5), "opened after the stop, then closed"
            assert "state::set" not in peer.connections[-1].functions

    run(scenario())

"""The engine connection: lost and re-established (the SDK re-registers, the engine re-sends the
bindings), an engine that is not there yet, a fatal rejection, and URL credentials in logs."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from engine_peer import EnginePeer, eventually
from worker_harness import FAST, MEMORY, free_port, run, serving

from iii_state_core.wire import FUNCTION_IDS
from iii_state_core.worker import StateWorker


@pytest.mark.parametrize("abort", [True, False], ids=["connection-cut", "close-1012"])
def test_a_dropped_connection_registers_everything_again(
    abort: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="iii_state")

    async def scenario() -> None:
        async with serving() as (peer, worker):
            peer.serve("r::kept", lambda data, metadata: None)
            peer.serve("r::gone", lambda data, metadata: None)
            await peer.register_trigger("state", "r::kept", {"scope": "s"}, trigger_id="t-kept")
            await peer.register_trigger("state", "r::gone", {"scope": "s"}, trigger_id="t-gone")
            await peer.call("state::set", {"scope": "s", "key": "k", "value": 1})
            await peer.wait_for_calls("r::gone")
            # Removed while the worker is away: the engine simply does not replay it.
            peer.bindings.pop("t-gone")

            first = await peer.drop(abort=abort)
            second = await peer.wait_for_connection(1)
            for function_id in FUNCTION_IDS:
                await peer.wait_for_function(function_id, connection=second)
            await peer.wait_for_trigger_type("state", connection=second)
            await peer.wait_for(lambda: second.trigger_results.get("t-kept"))
            assert "error" not in second.trigger_results["t-kept"]
            assert second.frames[0]["type"] == "reattach"
            assert second.frames[0]["previous_worker_id"] == first.worker_id
            await eventually(lambda: worker.link.connected)

            assert await peer.call("state::get", {"scope": "s", "key": "k"}) == 1
            assert await peer.call("state::set", {"scope": "s", "key": "k", "value": 2}) == {
                "old_value": 1,
                "new_value": 2,
            }
            kept = await peer.wait_for_calls("r::kept", 2)
            assert kept[1].connection == 1 and kept[1].data["new_value"] == 2
            await asyncio.sleep(0.1)
            assert len(peer.calls_to("r::gone")) == 1, "a binding the engine dropped must not fire"
            assert [b.id for b in worker.triggers.matching(_event("s", "k"))] == ["t-kept"]

    run(scenario())
    assert "lost the connection to the iii engine at ws://127.0.0.1:" in caplog.text
    assert "reconnected to the iii engine" in caplog.text


def _event(scope: str, key: str) -> Any:
    from iii_state_core import StateEvent

    return StateEvent("state:updated", scope, key, None, None)


def test_an_engine_that_comes_up_later_is_reached(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="iii_state")

    async def scenario() -> None:
        port = free_port()
        worker = StateWorker(MEMORY, replace(FAST, engine_url=f"ws://127.0.0.1:{port}"))
        await worker.start()
        try:
            await eventually(lambda: caplog.text.count("cannot reach the iii engine") >= 3)
            assert f"cannot reach the iii engine at ws://127.0.0.1:{port} (" in caplog.text
            assert "retrying (attempt 2, backoff up to 0.2 s)" in caplog.text
            async with EnginePeer(port=port) as peer:
                for function_id in FUNCTION_IDS:
                    await peer.wait_for_function(function_id)
                assert await peer.call("state::set", {"scope": "s", "key": "k", "value": 1}) == {
                    "old_value": None,
                    "new_value": 1,
                }
                assert await worker.wait_connected(5)
        finally:
            await worker.stop()

    run(scenario())
    assert "connected to the iii engine at ws://127.0.0.1:" in caplog.text
    # The worker speaks for the SDK: its own per-attempt warning is not repeated.
    assert "Connection failed:" not in caplog.text


def test_credentials_in_the_engine_url_never_reach_the_log(caplog: pytest.LogCaptureFixture) -> None:
    # The worker's and the SDK's loggers, at their most talkative. (``websockets`` itself logs
    # the request line at DEBUG; the CLI's handler scrubs every logger, see test_worker_process.)
    caplog.set_level("DEBUG", logger="iii")
    caplog.set_level("DEBUG", logger="iii_state")

    async def scenario() -> None:
        async with EnginePeer() as peer:
            port = peer.url.rsplit(":", 1)[1]
            url = f"ws://admin:pw-s3cret@127.0.0.1:{port}/?token=tok-s3cret"
            worker = StateWorker(MEMORY, replace(FAST, engine_url=url))
            await worker.start()
            try:
                await peer.wait_for_function("state::set")
                assert await worker.wait_connected(5)
                assert await peer.call("state::get", {"scope": "s", "key": "k"}) is None
            finally:
                await worker.stop()

    run(scenario())
    assert "Connected to ws://***@127.0.0.1:" in caplog.text, "the SDK's own line, scrubbed"
    assert "pw-s3cret" not in caplog.text and "tok-s3cret" not in caplog.text
    assert "connected to the iii engine at ws://***@127.0.0.1:" in caplog.text
    assert "/?token=***" in caplog.text


def test_a_fatal_rejection_stops_the_worker_with_exit_code_1(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="iii_state")

    async def scenario() -> None:
        async with serving() as (peer, worker):
            await peer.send(
                {
                    "type": "registrationrejected",
                    "code": "WORKER_NAMESPACE_CONFLICT",
                    "namespace": "default",
                    "worker_name": "iii-state",
                }
            )
            await asyncio.wait_for(worker.wait_stopped(), 5)
            assert worker.exit_code == 1

    run(scenario())
    assert "gave up on the iii engine" in caplog.text


def test_a_function_another_worker_owns_stops_the_worker(caplog: pytest.LogCaptureFixture) -> None:
    """Serving only part of state::* next to the engine's built-in would split the data."""
    caplog.set_level("INFO", logger="iii_state")

    async def scenario() -> None:
        async with serving() as (peer, worker):
            await peer.send(
                {
                    "type": "registrationrejected",
                    "code": "FUNCTION_NAMESPACE_CONFLICT",
                    "namespace": "default",
                    "function_id": "state::get",
                    "owner_worker_id": "builtin-1",
                }
            )
            await asyncio.wait_for(worker.wait_stopped(), 5)
            assert worker.exit_code == 1

    run(scenario())
    assert (
        "the engine refused state::get: worker builtin-1 already serves it in namespace 'default'. "
        "Is the engine's built-in state worker still on?"
    ) in caplog.text
    assert "Function registration rejected" not in caplog.text

"""The fake engine peer against the real ``iii-sdk`` client.

Each test builds a tiny worker directly with ``iii.register_worker`` and drives
it through :class:`engine_peer.EnginePeer` over a real WebSocket on loopback,
proving the peer speaks the frames the SDK expects before the iii-state worker
is tested on it. What the tests show about the SDK is written up in
``tests/worker/README.md``. ``conftest.py`` isolates the SDK's environment.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
from engine_peer import ConnectionLost, EnginePeer, PeerFunctionError, RemoteError, eventually
from iii import InitOptions, InvocationError, register_worker
from iii.iii import III
from iii.triggers import TriggerConfig, TriggerHandler
from iii_helpers.observability import ReconnectionConfig

#: Every test finishes well inside this (the brief allows 10 s).
TEST_TIMEOUT = 9.0


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run one scenario on a fresh event loop, bounded by :data:`TEST_TIMEOUT`."""
    asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


@asynccontextmanager
async def sdk_worker(url: str) -> AsyncIterator[III]:
    """A real SDK client connected to ``url``, shut down on exit.

    ``register_worker`` and ``shutdown`` block, so they run on a thread: the
    peer shares this event loop and must keep serving meanwhile.
    """
    options = InitOptions(
        worker_name="peer-test",
        otel={"enabled": False},
        reconnection_config=ReconnectionConfig(initial_delay_ms=50, max_delay_ms=200),
    )
    iii = await asyncio.to_thread(register_worker, url, options)
    try:
        yield iii
    finally:
        await asyncio.to_thread(iii.shutdown)


class RecordingTriggers(TriggerHandler[Any]):  # type: ignore[misc]  # iii ships no py.typed
    """A trigger-type handler that records what the SDK hands it."""

    def __init__(self) -> None:
        self.registered: list[TriggerConfig[Any]] = []
        self.unregistered: list[TriggerConfig[Any]] = []

    async def register_trigger(self, config: TriggerConfig[Any]) -> None:
        if not isinstance(config.config, dict):
            raise ValueError("Failed to parse trigger config: expected an object")
        self.registered.append(config)

    async def unregister_trigger(self, config: TriggerConfig[Any]) -> None:
        self.unregistered.append(config)


def register_state_type(iii: III, handler: TriggerHandler[Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated in 0.25, still the API
        iii.register_trigger_type({"id": "state", "description": "State changes"}, handler)


def test_peer_invokes_a_registered_function() -> None:
    async def scenario() -> None:
        async with EnginePeer() as peer, sdk_worker(peer.url) as iii:

            async def echo(data: Any) -> Any:
                return {"echo": data}

            iii.register_function("demo::echo", echo, description="Echo the payload")
            frame = await peer.wait_for_function("demo::echo")
            assert frame == {
                "type": "registerfunction",
                "id": "demo::echo",
                "description": "Echo the payload",
            }

            assert await peer.call("demo::echo", {"a": [1, None]}) == {"echo": {"a": [1, None]}}
            outcome = await peer.invoke("demo::echo", None)
            assert outcome.ok and "result" in outcome.frame and outcome.result == {"echo": None}

            conn = peer.current
            await peer.wait_for(lambda: conn.worker_info)
            assert conn.worker_info is not None and conn.worker_info["name"] == "peer-test"

    run(scenario())


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_handler_exception_comes_back_as_invocation_failed(kind: str) -> None:
    async def scenario() -> None:
        async with EnginePeer() as peer, sdk_worker(peer.url) as iii:

            async def failing_async(data: Any) -> Any:
                raise ValueError("SET_ERROR: Failed to set value: disk full")

            def failing_sync(data: Any) -> Any:
                raise ValueError("SET_ERROR: Failed to set value: disk full")

            iii.register_function("demo::fail", failing_async if kind == "async" else failing_sync)
            await peer.wait_for_function("demo::fail")

            outcome = await peer.invoke("demo::fail", {})
            assert not outcome.ok and "result" not in outcome.frame
            assert outcome.code == "invocation_failed"
            assert outcome.message == "SET_ERROR: Failed to set value: disk full"
            assert outcome.error is not None and "ValueError" in outcome.error["stacktrace"]
            with pytest.raises(RemoteError, match=r"^invocation_failed: SET_ERROR: "):
                await peer.call("demo::fail", {})

            missing = await peer.invoke("demo::nothing", {})
            assert missing.code == "function_not_found"

    run(scenario())


def test_trigger_type_receives_registertrigger_and_unregistertrigger() -> None:
    async def scenario() -> None:
        async with EnginePeer() as peer, sdk_worker(peer.url) as iii:
            handler = RecordingTriggers()
            register_state_type(iii, handler)
            assert (await peer.wait_for_trigger_type("state"))["description"] == "State changes"

            result = await peer.register_trigger(
                "state", "orders::on_change", {"scope": "orders"}, trigger_id="t-1", metadata={"m": 1}
            )
            assert result == {
                "type": "triggerregistrationresult",
                "id": "t-1",
                "trigger_type": "state",
                "function_id": "orders::on_change",
            }
            [config] = handler.registered
            assert (config.id, config.function_id, config.config, config.metadata, config.namespace) == (
                "t-1",
                "orders::on_change",
                {"scope": "orders"},
                {"m": 1},
                None,
            )

            rejected = await peer.register_trigger("state", "x::y", "not-an-object")
            assert rejected["error"]["code"] == "trigger_registration_failed"
            assert "Failed to parse trigger config" in rejected["error"]["message"]

            # TriggerConfig.metadata is a dict: the SDK refuses any other JSON.
            listed = await peer.register_trigger("state", "x::y", {}, metadata=["not", "an", "object"])
            assert listed["error"]["code"] == "trigger_registration_failed"
            scoped = await peer.register_trigger("state", "x::y", {}, trigger_id="t-ns", namespace="orders")
            assert "error" not in scoped and handler.registered[-1].namespace == "orders"

            await peer.unregister_trigger("t-1")
            await eventually(lambda: handler.unregistered)
            # The SDK passes only the id on; function_id and config are blank.
            assert [(c.id, c.function_id, c.config) for c in handler.unregistered] == [("t-1", "", None)]

            # A type nobody provides gets no answer at all from the SDK.
            with pytest.raises(TimeoutError):
                await peer.register_trigger("cron", "x::y", {}, timeout=0.3)

    run(scenario())


def test_worker_calls_functions_served_by_the_peer() -> None:
    async def scenario() -> None:
        async with EnginePeer() as peer, sdk_worker(peer.url) as iii:
            peer.serve("cond::never", lambda data, metadata: False)

            def fail(data: Any, metadata: Any) -> Any:
                raise PeerFunctionError("boom", "no")

            peer.serve("react::fail", fail)

            async def slow_handler(data: Any, metadata: Any) -> Any:
                await asyncio.sleep(0.05)
                return {"seen": data, "metadata": metadata}

            peer.serve("react::record", slow_handler)

            async def fan_out(data: Any) -> Any:
                # What the state worker does after a write: awaited calls
                # through the engine, from a handler on the SDK's loop.
                verdict = await iii.trigger_async({"function_id": "cond::never", "payload": data})
                reply = await iii.trigger_async(
                    {
                        "function_id": "react::record",
                        "payload": data,
                        "metadata": {"t": 1},
                        "namespace": "default",
                    }
                )
                try:
                    await iii.trigger_async({"function_id": "react::fail", "payload": data})
                except InvocationError as error:
                    failure = [error.code, error.message]
                try:
                    await iii.trigger_async(
                        {"function_id": "react::missing", "payload": data, "timeout_ms": 2000}
                    )
                except InvocationError as error:
                    missing = error.code
                return {"verdict": verdict, "reply": reply, "failure": failure, "missing": missing}

            iii.register_function("demo::fan_out", fan_out)
            await peer.wait_for_function("demo::fan_out")

            assert await peer.call("demo::fan_out", {"k": 1}) == {
                "verdict": False,
                "reply": {"seen": {"k": 1}, "metadata": {"t": 1}},
                "failure": ["boom", "no"],
                "missing": "function_not_found",
            }
            [cond] = peer.calls_to("cond::never")
            assert (cond.data, cond.metadata, cond.namespace, cond.action) == ({"k": 1}, None, None, None)
            assert cond.invocation_id is not None
            [react] = await peer.wait_for_calls("react::record")
            assert (react.metadata, react.namespace) == ({"t": 1}, "default")

    run(scenario())


def test_concurrent_invocations_run_together() -> None:
    async def scenario() -> None:
        async with EnginePeer() as peer, sdk_worker(peer.url) as iii:

            running, most = 0, 0
            all_arrived = asyncio.Event()

            async def slow(data: Any) -> Any:
                # counted, not timed: a loaded machine stretches the wall clock, never this count
                nonlocal running, most
                running += 1
                most = max(most, running)
                if most == 200:
                    all_arrived.set()
                try:
                    await asyncio.wait_for(all_arrived.wait(), timeout=30)
                except TimeoutError:
                    pass  # serialised: the count below says so
                running -= 1
                return data

            iii.register_function("demo::slow", slow)
            await peer.wait_for_function("demo::slow")

            results = await asyncio.gather(*(peer.call("demo::slow", i, timeout=60) for i in range(200)))
            assert results == list(range(200))
            assert most == 200, f"at most {most} of 200 invocations ran at once: they were serialised"

    run(scenario())


@pytest.mark.parametrize("abort", [True, False], ids=["connection-cut", "close-1012"])
def test_sdk_reconnects_and_registers_again(abort: bool) -> None:
    async def scenario() -> None:
        async with EnginePeer() as peer, sdk_worker(peer.url) as iii:
            states: list[str] = []
            iii.add_connection_state_listener(states.append)
            handler = RecordingTriggers()
            register_state_type(iii, handler)

            async def echo(data: Any) -> Any:
                return data

            iii.register_function("demo::echo", echo)
            first = peer.current
            await peer.wait_for_function("demo::echo", connection=first)
            await peer.wait_for_trigger_type("state", connection=first)
            await peer.register_trigger("state", "orders::on_change", {"scope": "orders"}, trigger_id="t-1")

            await peer.drop(abort=abort)
            second = await peer.wait_for_connection(1)
            # The SDK alone re-sends everything it registered ...
            await peer.wait_for_function("demo::echo", connection=second)
            await peer.wait_for_trigger_type("state", connection=second)
            assert second.frames[0] == {
                "type": "reattach",
                "previous_worker_id": first.worker_id,
                "reattach_token": second.frames[0]["reattach_token"],
            }
            # ... and the peer, like the engine, replays the binding to the
            # re-registered provider, which accepts it again.
            await peer.wait_for(lambda: second.trigger_results.get("t-1"))
            assert [c.id for c in handler.registered] == ["t-1", "t-1"]
            assert await peer.call("demo::echo", "after") == "after"
            assert states[:1] == ["connected"] and "disconnected" in states and states[-1] == "connected"

    run(scenario())


def test_shutdown_does_not_wait_for_in_flight_handlers() -> None:
    """Why the worker must drain its own in-flight calls before ``shutdown()``."""

    async def scenario() -> None:
        async with EnginePeer() as peer:
            started, finished = asyncio.Event(), []
            loop = asyncio.get_running_loop()
            async with sdk_worker(peer.url) as iii:

                async def slow(data: Any) -> Any:
                    loop.call_soon_threadsafe(started.set)
                    await asyncio.sleep(0.5)
                    finished.append(data)
                    return data

                iii.register_function("demo::slow", slow)
                await peer.wait_for_function("demo::slow")
                call = asyncio.ensure_future(peer.invoke("demo::slow", 1))
                await started.wait()
            # sdk_worker has called shutdown(): the socket closed at once.
            with pytest.raises(ConnectionLost):
                await call
            await asyncio.sleep(0.7)
            assert finished == [], "the handler was abandoned, never completed"

    run(scenario())
    # The abandoned handler task dies with the SDK's stopped loop. Collect it
    # now: finalised later, inside some unrelated ast.parse, CPython 3.11
    # raises "AST constructor recursion depth mismatch".
    gc.collect()

"""The function table end to end: a function declared in one place — one ``StateFunction``
and its plan — is served by ``trigger``, the typed sync and async stores, the CLI and the
worker (the engine peer over a real WebSocket), with its error code and request schema."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from worker_harness import SECRET, make_registry, run, serving

from iii_state_core import StateError, open_async_store, open_store
from iii_state_core.cli import cli
from iii_state_core.functions import KEY, SCOPE
from iii_state_core.operations import Call, Limits, Plan
from iii_state_core.table import TABLE, Command, StateFunction, register, unregister

MEMORY: dict[str, Any] = {"adapter": {"name": "kv", "config": {"store_method": "in_memory"}}}


def _peek_plan(limits: Limits, scope: str, key: str) -> Plan:
    """How many bytes scope/key holds (0 when missing): one `read`, no new adapter primitive."""
    limits.check_entry(scope, key)
    raw = yield Call("read", (scope, key))
    return (0 if raw is None else len(raw)), None


def _peek_wire(size: int) -> dict[str, Any]:
    return {"bytes": size}


@pytest.fixture
def peek_size() -> Iterator[StateFunction[Any, Any]]:
    """A throwaway function with a hyphenated id, declared in this one place."""
    declared = register(
        StateFunction(
            "peek-size",
            description="How many bytes scope/key holds: {bytes}",
            plan=_peek_plan,
            fields=[SCOPE, KEY],
            result=_peek_wire,
            error_code="PEEK_ERROR",
            failure_text="Failed to peek",
            payload_doc="`{scope, key}`",
            result_doc="`{bytes}`",
            command=Command("peek-size", "Print {bytes} of SCOPE/KEY."),
        )
    )
    try:
        yield declared
    finally:
        unregister("peek-size")
    assert "peek-size" not in TABLE


def test_trigger_and_the_typed_sync_store(peek_size: StateFunction[Any, Any]) -> None:
    with open_store(MEMORY) as store:
        store.set("s", "k", {"a": 1})
        assert store.peek_size("s", "k") == 7  # type: ignore[attr-defined]
        assert store.peek_size(scope="s", key="nope") == 0  # type: ignore[attr-defined]
        request = {"function_id": "state::peek-size", "payload": {"scope": "s", "key": "k"}}
        assert store.trigger(request) == {"bytes": 7}
        with pytest.raises(StateError, match="missing field `key`") as info:
            store.trigger({"function_id": "state::peek-size", "payload": {"scope": "s"}})
        assert info.value.code == "deserialization_error"


def test_the_typed_async_store(peek_size: StateFunction[Any, Any]) -> None:
    async def scenario() -> None:
        async with open_async_store(MEMORY) as store:
            await store.set("s", "k", [1, 2])
            assert await store.peek_size("s", "k") == 5  # type: ignore[attr-defined]
            request = {"function_id": "state::peek-size", "payload": {"scope": "s", "key": "k"}}
            assert await store.trigger(request) == {"bytes": 5}

    asyncio.run(scenario())


def test_a_backend_failure_carries_the_declared_code_and_text(peek_size: StateFunction[Any, Any]) -> None:
    with open_store(adapter="failing", registry=make_registry()) as store:
        with pytest.raises(StateError) as info:
            store.trigger({"function_id": "state::peek-size", "payload": {"scope": "s", "key": "k"}})
    assert info.value.code == "PEEK_ERROR"
    assert str(info.value).startswith("Failed to peek: ") and SECRET not in str(info.value)


def test_the_cli_subcommand(
    peek_size: StateFunction[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the embedded file store in ./data/state_store
    monkeypatch.delenv("III_CONFIG", raising=False)
    runner = CliRunner()
    assert runner.invoke(cli, ["set", "s", "k", '"hello"']).exit_code == 0
    result = runner.invoke(cli, ["peek-size", "s", "k"])
    assert result.exit_code == 0, result.output
    assert result.output == "7\n"  # the typed result (it has no wire form of its own)
    assert "peek-size" in runner.invoke(cli, ["--help"]).output
    missing = runner.invoke(cli, ["peek-size", "s"])
    assert missing.exit_code == 2 and "Missing argument 'KEY'" in missing.output


def test_the_worker_registers_and_serves_it(peek_size: StateFunction[Any, Any]) -> None:
    async def scenario() -> None:
        async with serving() as (peer, _):
            await peer.wait_for_function("state::peek-size")
            conn = peer.current
            registered = conn.functions["state::peek-size"]
            assert registered["description"] == "How many bytes scope/key holds: {bytes}"
            assert registered["request_format"]["required"] == ["scope", "key"]
            await peer.call("state::set", {"scope": "s", "key": "k", "value": "hello"})
            assert await peer.call("state::peek-size", {"scope": "s", "key": "k"}) == {"bytes": 7}
            outcome = await peer.invoke("state::peek-size", {"scope": "s"})
            assert not outcome.ok and "deserialization_error: missing field `key`" in str(outcome.error)

    run(scenario())


def test_a_function_taken_twice_is_refused(peek_size: StateFunction[Any, Any]) -> None:
    twin = StateFunction(
        "peek_size",
        description="",
        plan=_peek_plan,
        fields=[SCOPE, KEY],
        result=_peek_wire,
        error_code="X",
        failure_text="X",
        payload_doc="",
        result_doc="",
    )
    with pytest.raises(ValueError, match="both want the method 'peek_size'"):
        register(twin)
    assert TABLE["peek-size"] is peek_size

"""Careless inputs to the Python API get a clear error up front (issue 12, the smaller items)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from iii_state_core import (
    ConfigError,
    StateEvent,
    StoreClosedError,
    open_async_store,
    open_store,
)
from iii_state_core.events import MAX_REACTION_DEPTH


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: open_store(5), "`config` must be the path"),
        (lambda: open_store(adapter="kv", adapter_config=[1, 2]), "`adapter_config` must be a mapping"),
        (lambda: open_store(adapter="kv", adapter_config="store_method: x"), "`adapter_config` must be"),
        (lambda: open_store(adapter=5), "`adapter` must be an adapter name"),
        (lambda: open_async_store(b"iii-config.yaml"), "`config` must be the path"),
    ],
)
def test_open_store_with_wrong_types_is_a_config_error(call: Any, named: str) -> None:
    """They were bare TypeErrors from deep inside (`dict([1, 2])`, `Path(5)`)."""
    with pytest.raises(ConfigError, match=named):
        call()


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"handler": 5}, "handler must be callable"),
        ({"handler": print, "condition": "yes"}, "condition must be callable"),
        ({"handler": print, "scope": 5}, "scope must be a string"),
        ({"handler": print, "key": ["k"]}, "key must be a string"),
    ],
)
def test_on_change_with_wrong_types_fails_when_subscribing(kwargs: dict[str, Any], named: str) -> None:
    """on_change(5) was accepted, then every write logged a TypeError."""
    with open_store(adapter="kv", adapter_config={}) as store:
        handler = kwargs.pop("handler")
        with pytest.raises(TypeError, match=named):
            store.on_change(handler, **kwargs)
        store.set("s", "k", 1)  # nothing was subscribed


@pytest.mark.parametrize("method", ["in_memory", "file_based"])
def test_a_closed_store_refuses_every_call(method: str, tmp_path: Path) -> None:
    """The in-memory store kept working after close()."""
    config: dict[str, Any] = {"store_method": method}
    if method == "file_based":
        config["file_path"] = str(tmp_path)
    store = open_store(adapter="kv", adapter_config=config)
    store.set("s", "k", 1)
    store.close()
    for call in (
        lambda: store.get("s", "k"),
        lambda: store.set("s", "k", 2),
        lambda: store.delete("s", "k"),
        lambda: store.list_groups(),
        lambda: store.trigger({"function_id": "state::get", "payload": {"scope": "s", "key": "k"}}),
    ):
        with pytest.raises(StoreClosedError, match="is closed; nothing was sent") as info:
            call()
        assert info.value.code == "STORE_CLOSED"
    store.close()  # closing twice is harmless
    if method == "file_based":
        with open_store(adapter="kv", adapter_config=config) as again:
            assert again.get("s", "k") == 1


def test_a_closed_async_store_refuses_every_call() -> None:
    async def main() -> None:
        store = open_async_store(adapter="kv", adapter_config={})
        await store.set("s", "k", 1)
        await store.close()
        with pytest.raises(StoreClosedError):
            await store.get("s", "k")
        with pytest.raises(StoreClosedError):
            await store.set("s", "k", 2)

    asyncio.run(main())


def test_a_handler_writing_the_key_it_watches_loops_boundedly(caplog: pytest.LogCaptureFixture) -> None:
    """It recursed ~200 levels into a RecursionError."""
    with open_store(adapter="kv", adapter_config={}) as store:
        calls: list[int] = []

        def bump(event: StateEvent) -> None:
            calls.append(1)
            store.update("s", "k", [{"type": "increment", "path": "n", "by": 1}])

        store.on_change(bump, scope="s", key="k")
        with caplog.at_level(logging.ERROR, logger="iii_state.events"):
            assert store.set("s", "k", {}).new_value == {}
        assert len(calls) == MAX_REACTION_DEPTH + 1
        assert store.get("s", "k") == {"n": MAX_REACTION_DEPTH + 1}
        assert [r.message for r in caplog.records if "reactions stopped" in r.message]
        calls.clear()
        store.set("s", "other", 1)  # the next write starts a fresh chain
        assert calls == []


def test_an_async_handler_writing_the_key_it_watches_loops_boundedly() -> None:
    async def main() -> None:
        store = open_async_store(adapter="kv", adapter_config={})
        calls: list[int] = []

        async def bump(event: StateEvent) -> None:
            calls.append(1)
            await store.update("s", "k", [{"type": "increment", "path": "n", "by": 1}])

        store.on_change(bump, scope="s", key="k")
        await store.set("s", "k", {})
        assert len(calls) == MAX_REACTION_DEPTH + 1
        assert await store.get("s", "k") == {"n": MAX_REACTION_DEPTH + 1}
        await store.close()

    asyncio.run(main())


def test_a_write_made_by_a_handler_is_delivered_after_that_handler_returns() -> None:
    with open_store(adapter="kv", adapter_config={}) as store:
        order: list[str] = []

        def first(event: StateEvent) -> None:
            order.append("first:start")
            store.set("s", "derived", event.new_value)
            order.append("first:end")

        store.on_change(first, scope="s", key="k")
        store.on_change(lambda e: order.append(f"second:{e.key}"), scope="s")
        store.set("s", "k", 1)
        assert order == ["first:start", "first:end", "second:k", "second:derived"]
        assert store.get("s", "derived") == 1


@pytest.mark.parametrize(
    ("args", "stored"),
    [
        (["set", "s", "k", "-5"], -5),
        (["set", "s", "k", "-1.5e3"], -1500.0),
        (["set", "-c", "{config}", "s", "k", "-0.25"], -0.25),
        (["set", "s", "-7", "-2"], -2),
        (["set", "s", "k", "--", "-5"], -5),
    ],
)
def test_cli_negative_numbers_need_no_double_dash(tmp_path: Path, args: list[str], stored: Any) -> None:
    """`iii-state set s k -5` answered "No such option: -5"."""
    from click.testing import CliRunner

    from iii_state_core.cli import cli

    config = tmp_path / "c.yaml"
    config.write_text(
        "workers:\n  - name: iii-state\n    config:\n"
        f"      adapter: {{name: kv, config: {{file_path: '{tmp_path}'}}}}\n"
    )
    argv = [a.replace("{config}", str(config)) for a in args]
    if "-c" not in argv:
        argv = [*argv[:1], "-c", str(config), *argv[1:]]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["new_value"] == stored


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set", "s", "k", "--bogus", "1"], "No such option '--bogus'"),
        (["get", "s", "k", "-c"], "requires an argument"),
    ],
)
def test_cli_mistyped_options_are_still_errors(args: list[str], message: str) -> None:
    from click.testing import CliRunner

    from iii_state_core.cli import cli

    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and message in result.output


def test_an_over_deep_value_error_names_its_path_compactly() -> None:
    """It printed `value[0][0]…` 128 times (and the worker sent that to the engine)."""
    from iii_state_core import InvalidValueError

    value: Any = []
    for _ in range(200):
        value = [value]
    with open_store(adapter="kv", adapter_config={}) as store:
        with pytest.raises(InvalidValueError) as info:
            store.set("s", "k", value)
    message = str(info.value)
    assert message.startswith("value[0][0][0]…(") and "levels)…[0][0][0] nests deeper" in message
    assert len(message) < 120

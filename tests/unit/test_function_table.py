"""The function table is the one declaration: docs, stores, worker and CLI agree with it."""

from __future__ import annotations

import inspect
from pathlib import Path

from iii_state_core import AsyncStateStore, StateStore
from iii_state_core.cli import cli
from iii_state_core.table import TABLE, markdown_table
from iii_state_core.wire import FUNCTION_IDS
from iii_state_core.worker.functions import SPECS

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "contract.md"


def test_the_contract_table_is_the_function_table() -> None:
    text = CONTRACT.read_text(encoding="utf-8")
    start = text.index("| function | payload | result |")
    in_doc = text[start : text.index("\n\n", start)]
    assert in_doc == markdown_table(), (
        "docs/contract.md § Functions disagrees with iii_state_core/functions.py; paste this table:\n"
        + markdown_table()
    )


def test_every_function_is_a_typed_method_of_both_stores() -> None:
    for function in TABLE.values():
        sync, async_ = getattr(StateStore, function.method), getattr(AsyncStateStore, function.method)
        assert not inspect.iscoroutinefunction(sync) and inspect.iscoroutinefunction(async_)
        plan_params = list(inspect.signature(function.plan).parameters)[1:]
        assert list(inspect.signature(sync).parameters) == ["self", *plan_params]
        assert sync.__doc__ == function.description


def test_the_worker_and_the_wire_serve_the_table() -> None:
    assert FUNCTION_IDS == tuple(f.function_id for f in TABLE.values())
    assert {s.function_id for s in SPECS.values()} == set(FUNCTION_IDS)
    assert SPECS["set"].request_format["required"] == ["scope", "key"]
    assert set(SPECS["set"].request_format["properties"]) == {"scope", "key", "value", "data", "ttl_ms"}


def test_the_cli_has_the_declared_commands() -> None:
    import click

    ctx = click.Context(cli)
    names = cli.list_commands(ctx)
    for function in TABLE.values():
        if function.command is not None:
            assert function.command.name in names
    assert {"get", "set", "update", "delete", "list", "keys", "groups"} <= set(names)


def test_a_field_takes_its_value_the_same_way_with_and_without_aliases() -> None:
    """``Field.take`` has a short path for fields without aliases: both paths give one answer."""
    import pytest

    from iii_state_core.errors import DeserializationError
    from iii_state_core.table import Field

    plain = Field("key", kind=str)
    aliased = Field("value", aliases=("data",), required=False, null_is_absent=True,
                    wire_default="dflt", has_wire_default=True, param="v")  # fmt: skip
    for field, payload, expected in [
        (plain, {"key": "k"}, {"key": "k"}),
        (aliased, {"value": 1}, {"v": 1}),
        (aliased, {"data": 2}, {"v": 2}),
        (aliased, {"value": None}, {"v": "dflt"}),
        (aliased, {}, {"v": "dflt"}),
        (Field("ttl", required=False), {}, {}),
    ]:
        into: dict[str, object] = {}
        field.take(payload, into)
        assert into == expected, (field.name, payload)
    for field, payload, message in [
        (plain, {}, "missing field `key`"),
        (plain, {"key": 1}, "field `key` must be a string, got number"),
        (Field("key", null_is_absent=True), {"key": None}, "missing field `key`"),
        (aliased, {"value": 1, "data": 2}, "give `value` or its old alias `data`, not both"),
    ]:
        with pytest.raises(DeserializationError, match=message):
            field.take(payload, {})

"""``iii-state batch``: operations as JSON Lines from a file or stdin, through ``state::batch``
(or, with ``--transact``, one ``state::transact``)."""

from __future__ import annotations

from typing import Any, TextIO

import click

from .cli_common import config_option, emit, fail, opened, parse_json


def _read_ops(source: TextIO) -> list[Any]:
    """Every non-blank line as JSON; the first bad line fails the command before anything runs."""
    ops: list[Any] = []
    for number, line in enumerate(source, start=1):
        if line.strip():
            try:
                ops.append(parse_json(line, f"line {number}"))
            except click.BadParameter as exc:
                fail(f"line {number}: {exc.message}; nothing was run")
    return ops


@click.command("batch")
@click.argument("source", type=click.File("r", encoding="utf-8"), default="-")
@click.option("--transact", is_flag=True, help="Apply the writes all or nothing (state::transact).")
@config_option
def batch_command(source: TextIO, transact: bool, config: str | None) -> None:
    """Run the operations of SOURCE (JSON Lines, `-` = stdin), e.g.
    {"op": "set", "scope": "users", "key": "alice", "value": 1}. Prints one result per line, in
    order ({"error": …} for one that failed; exit code 1 then); batches of the adapter's
    max_batch_ops go out one after another. With --transact: one line, the transaction's result."""
    ops = _read_ops(source)
    with opened(config) as store:
        if transact:
            emit(store.transact(ops).to_wire())
            return
        failed = 0
        size = store.capabilities.max_batch_ops
        for start in range(0, len(ops), size):
            for item in store.batch(ops[start : start + size]):
                failed += not item.ok
                emit(item.to_wire())
    if failed:
        fail(f"{failed} of {len(ops)} operations failed (their lines say why); the others ran")

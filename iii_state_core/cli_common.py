"""What every ``iii-state`` subcommand shares: opening the store, printing, failing in one line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from .errors import StateError
from .opening import open_store
from .store import StateStore
from .values import loads

CONFIG_HELP = (
    "Path of an iii-config.yaml. Default: $III_CONFIG, then ./iii-config.yaml, "
    "then the embedded file store in ./data/state_store."
)
def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@contextmanager
def opened(
    config: str | None, *, must_exist: bool = False, role: str | None = None
) -> Iterator[StateStore]:
    """Open the configured store; with ``role``, say on stderr which store that is.

    The line names a path or a server, never a secret. The single-call commands (get, set, …)
    pass no role: their stderr stays for errors, one line each, unless stderr is a terminal.
    State errors become one-line messages and exit code 1. ``must_exist`` refuses a store that
    opening would create empty (for reading data out of it).
    """
    try:
        with open_store(config, must_exist=must_exist) as store:
            if role is not None or sys.stderr.isatty():
                click.echo(f"{role or 'store'}: {store.adapter.describe()}", err=True)
            yield store
    except StateError as exc:
        fail(f"{exc.code}: {exc}")


def emit(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def parse_json(text: str, what: str) -> Any:
    try:
        return loads(text)
    except StateError as exc:
        raise click.BadParameter(
            f"{exc}. {what} must be JSON: a string needs quotes, e.g. '\"hello\"'"
        ) from None


config_option = click.option("--config", "-c", envvar="III_CONFIG", metavar="PATH", help=CONFIG_HELP)

"""The ``iii-state`` command: state functions from the shell, plus plugin and health checks."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from . import open_store
from .errors import StateError
from .store import StateStore
from .values import loads

CONFIG_HELP = (
    "Path of an iii-config.yaml. Default: $III_CONFIG, then ./iii-config.yaml, "
    "then the embedded file store in ./data/state_store."
)
#: Subcommands that live in their own modules, loaded only when used: name -> "module:attr".
LAZY_COMMANDS = {
    "conformance": "iii_state_core.cli_conformance:conformance",
    "worker": "iii_state_core.worker.cli:worker",
    "export": "iii_state_core.transfer.cli:export_command",
    "import": "iii_state_core.transfer.cli:import_command",
    "migrate": "iii_state_core.transfer.cli:migrate_command",
}


def _installed(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(LAZY_COMMANDS[name].split(":")[0]) is not None
    except ModuleNotFoundError:
        return False


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *(n for n in LAZY_COMMANDS if _installed(n))])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None or name not in LAZY_COMMANDS:
            return command
        import importlib

        module_name, attr = LAZY_COMMANDS[name].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise click.ClickException(f"`iii-state {name}` is unavailable: {exc}") from None
        found: click.Command = getattr(module, attr)
        return found


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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="iii-state-core")
def cli() -> None:
    """Scoped JSON key-value state over a file store, Redis, DynamoDB or Memcached.

    Values are JSON. Every command reads the adapter from iii-config.yaml (see --config)
    and prints its result as one line of JSON.

    \b
    Examples:
      iii-state set users alice '{"visits": 1}'
      iii-state update users alice '[{"type": "increment", "path": "visits", "by": 1}]'
      iii-state get users alice
    """


def _state_command(name: str, help_text: str) -> Callable[[Callable[..., Any]], click.Command]:
    def wrap(fn: Callable[..., Any]) -> click.Command:
        return cli.command(name, help=help_text)(config_option(fn))

    return wrap


@_state_command("get", "Print the value at SCOPE/KEY (null when missing).")
@click.argument("scope")
@click.argument("key")
def get_command(scope: str, key: str, config: str | None) -> None:
    with opened(config) as store:
        emit(store.get(scope, key))


@_state_command("set", "Store VALUE (JSON) at SCOPE/KEY; print {old_value, new_value}.")
@click.argument("scope")
@click.argument("key")
@click.argument("value")
def set_command(scope: str, key: str, value: str, config: str | None) -> None:
    parsed = parse_json(value, "VALUE")
    with opened(config) as store:
        emit(store.set(scope, key, parsed).to_wire())


@_state_command("update", "Apply OPS (a JSON list of update ops) to SCOPE/KEY atomically.")
@click.argument("scope")
@click.argument("key")
@click.argument("ops")
def update_command(scope: str, key: str, ops: str, config: str | None) -> None:
    parsed = parse_json(ops, "OPS")
    with opened(config) as store:
        emit(store.update(scope, key, parsed).to_wire())


@_state_command("delete", "Delete SCOPE/KEY; print the value removed (null when missing).")
@click.argument("scope")
@click.argument("key")
def delete_command(scope: str, key: str, config: str | None) -> None:
    with opened(config) as store:
        emit(store.delete(scope, key))


@_state_command("list", "Print the values of SCOPE as a JSON array.")
@click.argument("scope")
def list_command(scope: str, config: str | None) -> None:
    with opened(config) as store:
        emit(store.list(scope))


@_state_command("keys", "Print the keys of SCOPE as a JSON array.")
@click.argument("scope")
def keys_command(scope: str, config: str | None) -> None:
    with opened(config) as store:
        emit(store.list_keys(scope))


@_state_command("groups", "Print every scope that holds at least one key.")
def groups_command(config: str | None) -> None:
    with opened(config) as store:
        emit(store.list_groups())


def main() -> None:
    from . import cli_admin  # noqa: F401  (registers `plugins` and `check`)

    cli(prog_name="iii-state")

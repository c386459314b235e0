"""The ``iii-state`` command: the state functions (from the function table) from the shell, plus
plugin, health, transfer, worker and conformance subcommands loaded when used."""

from __future__ import annotations

import re
from itertools import islice
from typing import Any

import click

from .cli_common import CONFIG_HELP, emit, opened, parse_json
from .functions import StateFunctions  # noqa: F401  (declares the built-in functions into TABLE)
from .table import TABLE, StateFunction

#: Subcommands that live in their own modules, loaded only when used: name -> "module:attr".
LAZY_COMMANDS = {
    "plugins": "iii_state_core.cli_admin:plugins_command",
    "batch": "iii_state_core.cli_batch:batch_command",
    "check": "iii_state_core.cli_admin:check_command",
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


def _table_commands() -> dict[str, StateFunction[Any, Any]]:
    return {f.command.name: f for f in TABLE.values() if f.command is not None}


class _Group(click.Group):
    """Subcommands: the state functions' (from the function table), ours, and lazy ones."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = [n for n in LAZY_COMMANDS if _installed(n)]
        return sorted([*super().list_commands(ctx), *_table_commands(), *lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in _table_commands():
            return state_command(_table_commands()[name])
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


def _call(function: StateFunction[Any, Any], config: str | None, given: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {}
    for f in function.fields or ():
        raw = given.get(f.name)
        if raw is not None:
            arguments[f.name] = parse_json(raw, f.name.upper()) if f.json else raw
    with opened(config) as store:
        result = getattr(store, function.method)(**arguments)
    emit(result.to_wire() if hasattr(result, "to_wire") else result)


def state_command(function: StateFunction[Any, Any]) -> click.Command:
    """The subcommand the function table declares: required fields are arguments, in order;
    optional ones are ``--options``; JSON-valued fields are parsed as JSON. Prints the result
    as one line of JSON (the typed result's wire form)."""
    assert function.command is not None
    params: list[click.Parameter] = [
        click.Argument([f.name]) if f.required else click.Option([f"--{f.name.replace('_', '-')}", f.name])
        for f in function.fields or ()
    ]
    params.append(click.Option(["--config", "-c"], envvar="III_CONFIG", metavar="PATH", help=CONFIG_HELP))

    def callback(config: str | None, **given: Any) -> None:
        _call(function, config, given)

    return _StateCommand(function.command.name, callback=callback, params=params, help=function.command.help)


_NEGATIVE_NUMBER = re.compile(r"-(?:\d|\.\d)[0-9.eE+-]*")


class _StateCommand(click.Command):
    """A command whose arguments may be negative numbers: ``iii-state set s k -5`` needs no ``--``.

    Click reads ``-5`` as an unknown option. Before parsing, the options (with their values)
    are moved ahead of a ``--`` and every argument after it, negative numbers included, so each
    argument keeps its place and a mistyped option is still an error.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {
            name
            for p in self.params
            if isinstance(p, click.Option) and not p.is_flag
            for name in p.opts
        }
        options: list[str] = []
        arguments: list[str] = []
        rest = iter(args)
        for token in rest:
            if token == "--":
                arguments.extend(rest)
            elif token.startswith("-") and len(token) > 1 and not _NEGATIVE_NUMBER.fullmatch(token):
                options.append(token)
                if token in takes_value:  # its value follows, whatever it looks like
                    value = list(islice(rest, 1))
                    if not value:  # click's own "requires an argument" error
                        return super().parse_args(ctx, args)
                    options.extend(value)
            else:
                arguments.append(token)
        return super().parse_args(ctx, [*options, "--", *arguments] if arguments else options)


def main() -> None:
    cli(prog_name="iii-state")

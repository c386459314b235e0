"""``iii-state conformance``: run the contract suite against a configured store, print a report."""

from __future__ import annotations

import json
import os
import tempfile
import textwrap

import click

from .cli import CONFIG_HELP
from .install_hints import install_hint

_TEST_MODULE = """
import json, os
import pytest
from iii_state_conformance import StateStoreSuite
from iii_state_core import open_store
from iii_state_core.plugins import Registry
import importlib

_TARGET = json.loads(os.environ["III_STATE_CONFORMANCE_TARGET"])


class TestConfiguredStore(StateStoreSuite):
    model_examples = _TARGET["examples"]

    @pytest.fixture
    def store(self):
        registry = Registry(extra_plugins=[importlib.import_module(m) for m in _TARGET["plugins"]])
        if _TARGET["adapter"]:
            opened = open_store(
                adapter=_TARGET["adapter"], adapter_config=_TARGET["options"], registry=registry
            )
        else:
            opened = open_store(_TARGET["config"], registry=registry)
        with opened as store:
            yield store
"""


def _option(text: str) -> tuple[str, object]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise click.BadParameter(
            f"{text!r}: write options as NAME=VALUE, e.g. -o redis_url=redis://host:6379"
        )
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


@click.command("conformance")
@click.option("--config", "-c", envvar="III_CONFIG", metavar="PATH", help=CONFIG_HELP)
@click.option("--adapter", "-a", help="Test this adapter by name instead of the config's (kv, redis, …).")
@click.option(
    "--option",
    "-o",
    "options",
    multiple=True,
    metavar="NAME=VALUE",
    help="An adapter config option for --adapter (repeatable; VALUE is JSON or text).",
)
@click.option(
    "--plugin",
    "plugins",
    multiple=True,
    metavar="MODULE",
    help="Also load this importable plugin module (an adapter not installed as a package).",
)
@click.option(
    "--quick", is_flag=True, help="Skip the multi-process contention tests and shorten the model run."
)
@click.option(
    "-k", "keyword", metavar="EXPR", help="Only run suite tests matching this pytest -k expression."
)
@click.option("--verbose", "-v", is_flag=True, help="Show every test as it runs.")
def conformance(
    config: str | None, adapter: str | None, options: tuple[str, ...], plugins: tuple[str, ...],
    quick: bool, keyword: str | None, verbose: bool,
) -> None:  # fmt: skip
    """Run the iii-state contract suite against a store and print a per-area report.

    The suite only writes to its own random scopes (iii-conf-…) and deletes what it wrote;
    it never flushes a database. Exit code 0 means every test passed or was skipped for a
    capability the adapter does not declare.

    \b
    Examples:
      iii-state conformance --adapter kv
      iii-state conformance --config iii-config.yaml
      iii-state conformance -a redis -o redis_url=redis://127.0.0.1:6379 --quick
    """
    try:
        import pytest
        from iii_state_conformance import plugin as report_plugin
    except ImportError:
        raise click.ClickException(
            f"the conformance suite is not installed; {install_hint('iii-state-conformance')}"
        ) from None
    target = {
        "adapter": adapter,
        "options": dict(_option(o) for o in options),
        "config": os.path.abspath(config) if config else None,
        "plugins": list(plugins),
        "examples": 10 if quick else 25,
    }
    if options and not adapter:
        raise click.BadParameter("--option needs --adapter")
    with tempfile.TemporaryDirectory(prefix="iii-state-conformance-") as folder:
        path = os.path.join(folder, "test_iii_state_conformance.py")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(textwrap.dedent(_TEST_MODULE))
        os.environ["III_STATE_CONFORMANCE_TARGET"] = json.dumps(target)
        args = [
            path,
            "-p",
            "no:cacheprovider",
            "--rootdir",
            folder,
            "-W",
            "ignore::pytest.PytestAssertRewriteWarning",
        ]
        args += ["-v"] if verbose else ["-q", "--no-header", "--tb=line", "-rN"]
        selected = [keyword] if keyword else []
        if quick:
            selected.append("not ConcurrencyTests and not another_process")
        if selected:
            args += ["-k", " and ".join(f"({s})" for s in selected)]
        code = pytest.main(args, plugins=[report_plugin])
    # the per-area table was printed by the plugin's terminal summary
    if code == 0:
        click.echo("conformance: PASS")
    else:
        click.echo(f"conformance: FAIL (pytest exit code {int(code)})")
        raise SystemExit(1)

"""``iii-state conformance``: run the contract suite against a configured store, print a report."""

from __future__ import annotations

import importlib
import json
import os
import tempfile
import textwrap
from collections import defaultdict
from typing import Any

import click

from .cli_common import CONFIG_HELP, fail
from .errors import StateError
from .install_hints import install_hint
from .opening import open_store
from .plugins import Registry
from .store import StateStore

_TEST_MODULE = """
import json, os
import pytest
from iii_state_conformance import StateStoreSuite
from iii_state_core.cli_conformance import open_target, record_writes

_TARGET = json.loads(os.environ["III_STATE_CONFORMANCE_TARGET"])


class TestConfiguredStore(StateStoreSuite):
    quick = _TARGET["quick"]

    @pytest.fixture
    def store(self):
        with open_target(_TARGET) as store:
            record_writes(store)
            yield store
"""
#: The suite names every scope it creates with this prefix.
PREFIX = "iii-conf-"
#: Every (scope, key) a suite test wrote through a store this command opened.
WRITTEN: set[tuple[str, str]] = set()


def record_writes(store: StateStore) -> None:
    """Remember every (scope, key) the adapter is asked to write, whatever writes it: the core,
    or a suite test planting bytes through the adapter itself. Events would miss the latter."""
    adapter = store.adapter
    for name in ("write", "write_if", "modify"):
        original = getattr(adapter, name)

        def recording(scope: str, key: str, *args: Any, _original: Any = original) -> Any:
            WRITTEN.add((scope, key))
            return _original(scope, key, *args)

        setattr(adapter, name, recording)


#: One registry per plugin list: the suite opens a store per test, and loading the installed
#: plugins' entry points each time cost ~14 ms of every test's setup.
_registries: dict[tuple[str, ...], Registry] = {}


def _registry(plugins: list[str]) -> Registry:
    key = tuple(plugins)
    if key not in _registries:
        _registries[key] = Registry(extra_plugins=[importlib.import_module(m) for m in plugins])
    return _registries[key]


def open_target(target: dict[str, Any]) -> StateStore:
    """Open the store under test, as the suite's ``store`` fixture does."""
    registry = _registry(target["plugins"])
    if target["adapter"]:
        return open_store(adapter=target["adapter"], adapter_config=target["options"], registry=registry)
    return open_store(target["config"], registry=registry)


def _ours(scope: str, key: str) -> bool:
    return scope.startswith(PREFIX) or (scope == "" and key.startswith(PREFIX))


def _sweep(target: dict[str, Any], earlier: set[str]) -> list[str]:
    """Delete what the suite wrote, whatever the tests' outcome; return the scopes left behind.

    Two sources, so one broken primitive does not hide data: every write the suite's stores
    reported, and a listing of the ``iii-conf-`` scopes that were not there before the run.
    """
    with open_target(target) as store:
        keys_of: dict[str, list[str]] = defaultdict(list)
        for scope, key in sorted(WRITTEN):
            if _ours(scope, key):
                keys_of[scope].append(key)
        size = store.capabilities.max_batch_ops
        for scope, keys in keys_of.items():
            for start in range(0, len(keys), size):
                chunk = keys[start : start + size]
                try:  # one round trip per chunk: a run writes thousands of keys
                    store.delete_many(scope, chunk)
                except StateError:  # then one by one, so a failing delete is reported as itself
                    for key in chunk:
                        store.delete(scope, key)
        for scope in store.list_groups():
            if scope.startswith(PREFIX) and scope not in earlier:
                for key in store.list_keys(scope):
                    store.delete(scope, key)
        return sorted(s for s in store.list_groups() if s.startswith(PREFIX) and s not in earlier)


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
    "--quick",
    is_flag=True,
    help="Skip every test that opens the store in other processes; run the others on smaller sizes.",
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

    It WRITES TO THE CONFIGURED STORE: only under its own random scopes (iii-conf-…), which it
    removes at the end whatever the outcome (exit 1 if any could not be removed); it never
    flushes a database. Exit code 0 means every test passed or was skipped for a
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
        "quick": quick,
    }
    if options and not adapter:
        raise click.BadParameter("--option needs --adapter")
    try:
        with open_target(target) as store:
            described = store.adapter.describe()
            earlier = {s for s in store.list_groups() if s.startswith(PREFIX)}
    except StateError as exc:
        fail(f"{exc.code}: {exc}")
    click.echo(f"conformance: testing {described}")
    click.echo(
        f"  the suite writes to this store, only under scopes named {PREFIX}…, and removes them "
        f"at the end whatever the outcome"
        + (f" ({len(earlier)} {PREFIX}… scopes already there are left alone)" if earlier else "")
    )
    WRITTEN.clear()
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
            selected.append(f"not {report_plugin.PROCESSES_KEYWORD}")
        if selected:
            args += ["-k", " and ".join(f"({s})" for s in selected)]
        code = pytest.main(args, plugins=[report_plugin])
    # the per-area table was printed by the plugin's terminal summary
    try:
        left = _sweep(target, earlier)
    except StateError as exc:
        fail(f"could not remove what the suite wrote: {exc.code}: {exc}")
    if left:
        shown = ", ".join(repr(s) for s in left[:5]) + (" …" if len(left) > 5 else "")
        fail(f"{len(left)} {PREFIX}… scope(s) could not be removed from {described}: {shown}")
    if code == 0:
        click.echo("conformance: PASS")
    else:
        click.echo(f"conformance: FAIL (pytest exit code {int(code)})")
        raise SystemExit(1)

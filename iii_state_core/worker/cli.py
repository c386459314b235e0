"""``iii-state worker``: serve ``state::*`` to an iii engine from the adapter in iii-config.yaml."""

from __future__ import annotations

import logging
import os
import sys

import click

from ..cli_common import CONFIG_HELP, fail
from ..errors import StateError
from ..install_hints import install_hint
from .settings import (
    DEFAULT_ENGINE_URL,
    DEFAULT_WORKER_NAME,
    WorkerSettings,
    check_engine_url,
    redact_url,
    scrub,
)

LOG_LEVELS = ("debug", "info", "warning", "error")


class _Scrub(logging.Filter):
    """Hides the engine URL's credentials in every line any library logs."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        clean = scrub(message, self._url)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def _setup_logging(level: str, url: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(_Scrub(url))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)  # third-party chatter stays quiet
    logging.getLogger("iii_state").setLevel(level.upper())
    # The SDK's INFO lines repeat the worker's own connection lines; show them only for debugging.
    logging.getLogger("iii").setLevel(logging.DEBUG if level.lower() == "debug" else logging.WARNING)


def _url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_engine_url(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _positive(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if value <= 0:
        raise click.BadParameter("must be greater than 0")
    return value


@click.command(
    "worker",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config", "-c", envvar="III_CONFIG", metavar="PATH",
    help=CONFIG_HELP + " Give the engine its own config file without an `iii-state`/`state` entry, "
    "or it starts its built-in state worker too.",
)  # fmt: skip
@click.option(
    "--engine", "--url", "engine_url", envvar="III_URL", default=DEFAULT_ENGINE_URL, show_default=True,
    metavar="URL", callback=_url,
    help="The iii engine's WebSocket address (env: III_URL; --url is the same option). Put no "
    "credentials in it (the SDK writes it to $HOME/.iii/run); set III_TOKEN instead, sent as a "
    "bearer token.",
)  # fmt: skip
@click.option(
    "--worker-name", envvar="III_WORKER_NAME", default=DEFAULT_WORKER_NAME, show_default=True,
    metavar="NAME",
    help="The name the engine lists this worker under (env: III_WORKER_NAME, which wins when set). "
    "Give each replica its own name.",
)  # fmt: skip
@click.option(
    "--namespace", envvar="III_NAMESPACE", metavar="NS",
    help="Engine namespace to register state::* in (env: III_NAMESPACE). Default: the engine's "
    "`default`, where every trigger('state::…') without a namespace resolves.",
)  # fmt: skip
@click.option(
    "--drain-timeout", type=float, default=30.0, show_default=True, metavar="SECONDS", callback=_positive,
    help="On SIGTERM/SIGINT: how long to wait for in-flight calls, and again for pending reactions.",
)  # fmt: skip
@click.option(
    "--reaction-timeout", type=float, default=30.0, show_default=True, metavar="SECONDS",
    callback=_positive,
    help="How long one trigger condition or trigger function may take before it counts as failed.",
)  # fmt: skip
@click.option(
    "--threads", type=click.IntRange(min=1), default=32, show_default=True,
    help="Threads for blocking adapter calls (the number of store calls that run at once).",
)  # fmt: skip
@click.option(
    "--telemetry/--no-telemetry", default=None,
    help="Send the SDK's OpenTelemetry traces, metrics and logs to the engine. Default: the SDK's "
    "choice (on, unless OTEL_ENABLED=false).",
)  # fmt: skip
@click.option(
    "--trace-payloads/--no-trace-payloads", default=False, show_default=True,
    help="Copy each call's payload and result (your stored values) into the telemetry traces. Off "
    "sets III_DISABLE_TRACE_PAYLOADS=1 unless the environment sets it.",
)  # fmt: skip
@click.option(
    "--dry-run", is_flag=True,
    help="Open the store and print what would be registered (functions, trigger type, adapter, "
    "engine), then exit: no engine is contacted and the iii SDK is not needed.",
)  # fmt: skip
@click.option(
    "--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="info",
    show_default=True, envvar="III_STATE_LOG_LEVEL",
    help="Log level of the worker (env: III_STATE_LOG_LEVEL); debug also shows the SDK's own "
    "lines. Logs go to stderr.",
)  # fmt: skip
def worker(
    config: str | None,
    engine_url: str,
    worker_name: str,
    namespace: str | None,
    drain_timeout: float,
    reaction_timeout: float,
    threads: int,
    telemetry: bool | None,
    trace_payloads: bool,
    dry_run: bool,
    log_level: str,
) -> None:
    """Serve state::* to an iii engine from the adapter chosen in iii-config.yaml.

    Registers every state::* function (set, get, delete, update, list, list_groups, list_keys,
    list_entries, compare-and-set, barrier …), state::claim-namespace and state::on-changed,
    plus the `state` trigger type (reactions after each write). With no
    engine listening it keeps retrying with backoff. SIGTERM or Ctrl-C finishes in-flight calls
    and pending reactions, closes the adapter and exits 0.

    \b
    Example:
      iii-state worker --config iii-config.yaml --engine ws://127.0.0.1:49134
    """
    if dry_run:
        _dry_run(config, engine_url, worker_name, namespace, telemetry, trace_payloads)
        return
    try:
        from .runner import run_worker
    except ImportError as exc:
        fail(f"the worker needs the iii SDK ({exc}); {install_hint('iii-state-core', '[worker]')}")
    _setup_logging(log_level, engine_url)
    settings = WorkerSettings(
        engine_url=engine_url,
        worker_name=worker_name or None,
        namespace=(namespace or "").strip() or None,  # a blank III_NAMESPACE means "not set"
        drain_timeout=drain_timeout,
        reaction_timeout=reaction_timeout,
        telemetry=telemetry,
        trace_payloads=trace_payloads,
    )
    try:
        code = run_worker(config, settings, threads=threads)
    except StateError as exc:
        fail(f"{exc.code}: {exc}")
    sys.exit(code)


def _dry_run(
    config: str | None, engine_url: str, worker_name: str, namespace: str | None,
    telemetry: bool | None, trace_payloads: bool,
) -> None:  # fmt: skip
    """Print what ``iii-state worker`` would register, from the same config, without an engine."""
    from .. import open_store
    from .functions import WORKER_FUNCTION_IDS
    from .trigger_type import TRIGGER_TYPE

    try:
        with open_store(config) as store:
            settings = store.settings
            adapter, source = store.adapter.describe(), settings.source if settings else "?"
            if settings is not None and settings.base_dir is not None:  # read from a file
                source = os.path.join(settings.base_dir, os.path.basename(source))
            reactions = "on" if store.events.enabled else "off (triggers_enabled: false)"
    except StateError as exc:
        fail(f"{exc.code}: {exc}")
    functions = list(WORKER_FUNCTION_IDS)
    binding = ", ".join(TRIGGER_TYPE["trigger_request_format"]["properties"])
    lines = [
        "iii-state worker --dry-run: nothing is registered and no engine is contacted",
        f"adapter:      {adapter}",
        f"config:       {source} (the configuration entry, read once connected, wins over it)",
        f"engine:       {redact_url(engine_url)}",
        f"worker name:  {os.environ.get('III_WORKER_NAME') or worker_name}",
        f"namespace:    {(namespace or '').strip() or 'default'}",
        f"functions:    {len(functions)}: {', '.join(functions)}",
        f"trigger type: {TRIGGER_TYPE['id']} (binding config: {binding}, each optional)",
        f"reactions:    {reactions}",
        f"telemetry:    {'on' if telemetry is not False else 'off'}"
        f"{' (the SDK default; --no-telemetry turns it off)' if telemetry is None else ''}; "
        f"trace payloads {'on' if trace_payloads else 'off'}",
    ]
    click.echo("\n".join(lines))

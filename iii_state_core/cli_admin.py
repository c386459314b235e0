"""``iii-state plugins`` and ``iii-state check``: what is installed, and does the config work."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import click

from .cli_common import config_option, fail, opened
from .errors import StateError
from .install_hints import install_hint
from .plugins import AdapterInfo, default_registry

_COLUMNS: tuple[tuple[str, Callable[[AdapterInfo], object]], ...] = (
    ("adapter", lambda i: i.name),
    ("plugin", lambda i: i.plugin),
    ("durable", lambda i: i.capabilities.durable),
    ("shared", lambda i: i.capabilities.shared),
    ("atomic update", lambda i: i.capabilities.atomic_update),
    ("ordered listing", lambda i: i.capabilities.ordered_listing),
    ("may evict", lambda i: i.capabilities.may_evict),
    ("ttl", lambda i: i.capabilities.ttl),
    # the longest delay of a state:expired event, in ms; "-": no take_expired, no expiry events
    ("expiry events ms", lambda i: i.capabilities.expiry_event_delay_ms or "-"),
    ("max key bytes", lambda i: i.capabilities.max_key_bytes or "-"),
    ("max value bytes", lambda i: i.capabilities.max_value_bytes or "-"),
)


@click.command("plugins")
def plugins_command() -> None:
    """List installed adapters and the capabilities each declares."""
    try:
        infos = sorted(default_registry().adapters.values(), key=lambda i: i.name)
    except StateError as exc:
        fail(f"{exc.code}: {exc}")
    rows = [[str(get(i)) for _, get in _COLUMNS] for i in infos]
    headers = [h for h, _ in _COLUMNS]
    widths = [max(len(h), *(len(r[n]) for r in rows)) if rows else len(h) for n, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    if not rows:
        click.echo(f"(no adapters installed; {install_hint('iii-state-kvfile')})")


@click.command("check")
@config_option
def check_command(config: str | None) -> None:
    """Load the config, connect, and write/read/delete in a throwaway scope."""
    scope = f"iii-state-check-{secrets.token_hex(6)}"
    with opened(config, role="store") as store:
        started = time.perf_counter()
        value = {"check": scope, "n": 1}
        store.set(scope, "probe", value)
        got = store.get(scope, "probe")
        updated = store.update(scope, "probe", [{"type": "increment", "path": "n", "by": 1}])
        removed = store.delete(scope, "probe")
        left = store.list_keys(scope)
        elapsed = (time.perf_counter() - started) * 1000
        problems = []
        if got != value:
            problems.append(f"read back {got!r}, wrote {value!r}")
        if updated.new_value != {"check": scope, "n": 2}:
            problems.append(f"update gave {updated.new_value!r}")
        if removed != {"check": scope, "n": 2}:
            problems.append(f"delete returned {removed!r}")
        if left:
            problems.append(f"keys left after delete: {left!r}")
        if problems:
            fail("check failed: " + "; ".join(problems))
        click.echo(f"ok: set, get, update, delete and list_keys work ({elapsed:.1f} ms)")

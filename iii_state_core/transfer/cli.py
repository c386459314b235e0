"""``iii-state export``, ``import`` and ``migrate``: thin commands over the transfer library."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from ..cli_common import config_option, emit, fail, opened
from ..config import load_file
from ..errors import StateError
from .digest import VerifyReport
from .errors import (
    ConflictsFoundError,
    InvalidLinesError,
    LineProblem,
    MigrationInterrupted,
    show,
)
from .exporting import DEFAULT_PAGE_SIZE, export_entries
from .importing import ON_CONFLICT, import_file
from .jsonl import write_jsonl
from .migration import MigrationReport, migrate
from .progress import ProgressDisplay
from .state_file import migration_id

#: At most this many scopes are listed one per row in the summary; beyond it only mismatches.
TABLE_ROWS = 50
#: Exit code after SIGINT/SIGTERM, as a shell reports for a process ended by SIGINT.
EXIT_INTERRUPTED = 130

_page_size = click.option(
    "--page-size", type=click.IntRange(1, 1000), default=DEFAULT_PAGE_SIZE, show_default=True,
    help="Entries per list_entries call: memory stays bounded by this, not by the data.",
)  # fmt: skip
_scopes = click.option(
    "--scope", "-s", "scopes", multiple=True, metavar="SCOPE",
    help="Only this scope (repeat for several). Default: every scope.",
)  # fmt: skip
_on_conflict = click.option(
    "--on-conflict", type=click.Choice(ON_CONFLICT), default="fail", show_default=True,
    help="A key that already holds a different value: fail (stop), skip (keep it) or "
    "overwrite (replace it). An equal value is never a conflict.",
)  # fmt: skip


def _problems(problems: list[LineProblem], count: int) -> None:
    for problem in problems:
        click.echo(f"  {problem}", err=True)
    if count > len(problems):
        click.echo(f"  … and {count - len(problems)} more", err=True)


@click.command("export")
@config_option
@_scopes
@click.option(
    "--output", "-o", default="-", metavar="FILE", show_default=True,
    type=click.Path(dir_okay=False, allow_dash=True), help="Write here instead of stdout.",
)  # fmt: skip
@_page_size
def export_command(config: str | None, scopes: tuple[str, ...], output: str, page_size: int) -> None:
    """Write every entry as JSON Lines: one {"scope", "key", "value"} object per line.

    Lines are compact UTF-8 JSON (non-ASCII characters are kept as they are). The export
    streams page by page, so memory does not grow with the data. A file given with --output
    appears only when the export is complete.

    \b
    Examples:
      iii-state export > state.jsonl
      iii-state export --scope users --scope orders -o some.jsonl
      iii-state export -c old/iii-config.yaml | iii-state import -c new/iii-config.yaml -
    """
    with opened(config, must_exist=True, role="exporting from") as store:
        entries = export_entries(store, scopes or None, page_size=page_size)
        if output == "-":
            stream = sys.stdout.buffer
            try:
                count = write_jsonl(entries, stream)
                stream.flush()
            except BrokenPipeError:  # `export | head`: the reader left, which is not an error
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                sys.exit(1)
        else:
            partial = f"{output}.partial"
            with open(partial, "wb") as handle:
                count = write_jsonl(entries, handle)
            os.replace(partial, output)
    click.echo(f"exported {count} entries", err=True)


@contextmanager
def _seekable(path: str) -> Iterator[str]:
    """The file itself, or stdin copied to a temporary file (import reads its input twice)."""
    if path != "-":
        yield path
        return
    with tempfile.NamedTemporaryFile(prefix="iii-state-import-", suffix=".jsonl") as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool)
        spool.flush()
        yield spool.name


@click.command("import")
@config_option
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@_on_conflict
@click.option("--skip-invalid", is_flag=True, help="Import the good lines even when some are bad.")
def import_command(config: str | None, file: str, on_conflict: str, skip_invalid: bool) -> None:
    """Import FILE (JSON Lines from `iii-state export`; - for stdin) into the store.

    Every line is checked first: a JSON object with string "scope" and "key" and a "value"
    the store accepts (strict JSON, within its size limits). Each bad line is reported with
    its number and the reason, and nothing is written while any line is bad, unless
    --skip-invalid. With --on-conflict fail, keys that already hold a different value are
    also found before anything is written. Then the lines are written one by one; skip and
    fail use compare-and-set, so a key another writer creates meanwhile is never replaced.

    Prints {"written", "unchanged", "skipped", "invalid"} as JSON.

    \b
    Examples:
      iii-state import state.jsonl
      iii-state import --on-conflict overwrite state.jsonl
      iii-state import --skip-invalid --on-conflict skip - < state.jsonl
    """
    with opened(config, role="importing into") as store, _seekable(file) as path:
        try:
            report = import_file(store, path, on_conflict, skip_invalid=skip_invalid)  # type: ignore[arg-type]
        except InvalidLinesError as exc:
            click.echo(f"error: {exc.count} invalid line(s) in {file}, nothing was written:", err=True)
            _problems(exc.problems, exc.count)
            sys.exit(1)
        except ConflictsFoundError as exc:
            click.echo(f"error: {exc.code}: {exc.count} line(s) of {file} would replace a different "
                       f"value, nothing was written (--on-conflict skip or overwrite to proceed):",
                       err=True)  # fmt: skip
            _problems(exc.problems, exc.count)
            sys.exit(1)
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror or exc}")
        if report.invalid:
            click.echo(f"skipped {report.invalid} invalid line(s):", err=True)
            _problems(report.problems, report.invalid)
        emit(report.to_dict())


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def print_summary(report: MigrationReport, verification: VerifyReport | None) -> None:
    """The per-scope table (all rows up to TABLE_ROWS scopes, else the mismatches) and totals."""
    line = (
        f"{report.scopes} scopes, {report.total} entries: written {report.written}, "
        f"unchanged {report.unchanged}, skipped {report.skipped}"
        + (f", {report.expired} expired, skipped" if report.expired else "")
        + f" in {report.seconds:.1f} s"
        + (" (resumed)" if report.resumed else "")
    )
    if verification is None:
        click.echo(line + "; not verified (--no-verify)")
        return
    checks = verification.scopes if len(verification.scopes) <= TABLE_ROWS else verification.mismatched
    headers = ["scope", "source", "target", "digest", "result"]
    rows = []
    for check in checks:
        digest = check.source.digest[:12]
        if check.source.digest != check.target.digest:
            digest += f" ≠ {check.target.digest[:12]}"
        rows.append([show(check.scope, 40), str(check.source.count), str(check.target.count), digest,
                     "ok" if check.ok else "MISMATCH"])  # fmt: skip
    if rows:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        click.echo(_row(headers, widths))
        for row in rows:
            click.echo(_row(row, widths))
    hidden = len(verification.scopes) - len(checks)
    if hidden:
        click.echo(f"({hidden} matching scopes not listed)")
    if verification.extra_scopes:
        click.echo(f"({len(verification.extra_scopes)} scopes exist only in the target; not compared)")
    bad = len(verification.mismatched)
    click.echo(line + (f"; verified: all {len(verification.scopes)} scopes match" if not bad
                       else f"; VERIFICATION FAILED: {bad} scope(s) differ"))  # fmt: skip


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM set an event the copy loop polls, so it stops between two entries."""
    stop = threading.Event()

    def handle(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        # straight to the file descriptor: the handler may run in the middle of a write to
        # sys.stderr, and a nested write through the same buffered stream can lose text
        try:
            os.write(2, "\nstopping after the current entry (Ctrl-C again to abort at once)…\n".encode())
        except OSError:
            pass

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handle)
    except ValueError:  # not the main thread: no handlers, Ctrl-C raises as usual
        pass
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _resume_command(source: str, target: str, scopes: list[str] | None, state_file: str | None) -> str:
    """The command line that resumes this migration (the scopes and state file decide which)."""
    parts = ["iii-state", "migrate", "--from", source, "--to", target]
    for scope in scopes or ():
        parts += ["--scope", scope]
    if state_file:
        parts += ["--state-file", state_file]
    return shlex.join(parts)


def _check_config(path: str, option: str) -> None:
    try:
        if load_file(path) is None:
            fail(f"{option} {path} has no iii-state worker block, so it names no adapter")
    except StateError as exc:
        fail(f"{exc.code}: {exc}")


@click.command("migrate")
@click.option("--from", "source_config", required=True, metavar="CONFIG",
              type=click.Path(exists=True, dir_okay=False), help="iii-config.yaml of the store to copy from.")
@click.option("--to", "target_config", required=True, metavar="CONFIG",
              type=click.Path(exists=True, dir_okay=False), help="iii-config.yaml of the store to copy into.")
@_scopes
@_on_conflict
@click.option("--state-file", metavar="PATH",
              help="Resume record. Default: .iii-state-migrate-<id>.json in the current directory.")
@click.option("--restart", is_flag=True, help="Ignore the resume record and copy from the first scope.")
@_page_size
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Threads writing each page at once; remote stores copy several times faster.")
@click.option("--no-verify", is_flag=True, help="Skip the final count-and-digest comparison.")
@click.option("--progress-interval", type=click.FloatRange(0), default=2.0, show_default=True,
              metavar="SECONDS", help="Seconds between progress lines when stderr is not a terminal.")
def migrate_command(
    source_config: str, target_config: str, scopes: tuple[str, ...], on_conflict: str,
    state_file: str | None, restart: bool, page_size: int, workers: int, no_verify: bool,
    progress_interval: float,
) -> None:  # fmt: skip
    """Copy every scope from the --from store into the --to store, then verify.

    First a check pass counts the entries and makes sure the target can hold each one (key
    length, value size); nothing is written otherwise. Then the copy, page by page, with a
    progress bar (entries/s, ETA) on a terminal and plain lines otherwise. Nothing is ever
    deleted from the source. Last, every scope is compared: entry count and a content digest
    on both sides; the command exits 1 when one differs.

    Interrupted (Ctrl-C, a kill, a crash)? Run the same command again: it resumes from the
    state file and finishes without duplicating or losing entries. Stop writers to the source
    while migrating, or the verification reports what changed meanwhile.

    \b
    Examples:
      iii-state migrate --from iii-config.yaml --to redis/iii-config.yaml
      iii-state migrate --from old.yaml --to new.yaml --scope users --on-conflict overwrite
      iii-state migrate --from old.yaml --to new.yaml --restart
    """
    _check_config(source_config, "--from")
    _check_config(target_config, "--to")
    with opened(source_config, must_exist=True, role="from") as source, opened(
        target_config, role="to"
    ) as target:
        if source.adapter.describe() == target.adapter.describe():
            fail(f"--from and --to open the same store ({source.adapter.describe()})")
        chosen = sorted(set(scopes)) or None
        path = state_file or (
            f".iii-state-migrate-"
            f"{migration_id(source.adapter.describe(), target.adapter.describe(), chosen)}.json"
        )
        display = ProgressDisplay(sys.stderr, interval=progress_interval)
        try:
            with _stop_on_signals() as stop:
                report = migrate(
                    source, target, scopes=chosen, on_conflict=on_conflict,  # type: ignore[arg-type]
                    state_file=path, restart=restart, page_size=page_size,
                    verify_after=not no_verify, workers=workers, progress=display,
                    should_stop=stop.is_set,
                )  # fmt: skip
        except MigrationInterrupted as exc:
            display.close()
            click.echo(f"{exc}:\n  {_resume_command(source_config, target_config, chosen, state_file)}",
                       err=True)  # fmt: skip
            sys.exit(EXIT_INTERRUPTED)
        except (StateError, OSError) as exc:
            # a store failure or a lost connection mid-copy: the record is as current as the last
            # finished page, so the same command picks up from there
            display.close()
            code = exc.code if isinstance(exc, StateError) else "OS_ERROR"
            hint = f"; progress is kept in {path}, re-run to resume" if os.path.exists(path) else ""
            fail(f"{code}: {exc}{hint}")
        display.close()
        print_summary(report, report.verification)
        if not report.ok and report.skipped:
            click.echo(
                f"note: {report.skipped} entries were skipped (--on-conflict skip kept the target's "
                f"different values), so the scopes holding them differ by design",
                err=True,
            )
        if not report.ok:
            click.echo(f"the resume record {path} is kept; --restart copies everything again", err=True)
            sys.exit(1)

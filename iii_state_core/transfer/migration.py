"""Copy every scope of one store into another: check, copy (resumable), verify.

Resuming rests on two facts. Every write is idempotent: an entry the target already holds with
an equal value counts as ``unchanged`` whatever the policy, so copying a page twice is harmless.
And the state file is saved only after a page is fully written, so a kill between a write and the
save merely makes the next run redo that page. Hence a re-run after SIGINT or SIGKILL finishes
the job with every entry present exactly once.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Literal

from ..errors import InvalidCursorError, StateError, UnsupportedError
from ..results import EntriesPage
from ..store import StateStore
from ..values import JSON
from .deadlines import deadline_of, deadlines_of
from .digest import VerifyReport, verify
from .errors import (
    EntryConflictError,
    IncompatibleEntriesError,
    MigrationInterrupted,
    MigrationStateError,
    show,
)
from .exporting import DEFAULT_PAGE_SIZE, check_page_size, pages
from .importing import CHUNK, OnConflict, Outcome, check_policy, put_until_conflict
from .jsonl import Entry
from .state_file import MigrationState, load_state, migration_id, remove_state, save_state

#: How many incompatible entries the pre-check lists before giving up.
MAX_INCOMPATIBLE: Final = 20
Phase = Literal["check", "copy", "verify"]


@dataclass(frozen=True)
class Progress:
    """A progress report: ``done`` of ``total`` entries in ``phase`` (``total`` unknown while checking)."""

    phase: Phase
    scope: str | None
    done: int
    total: int | None
    finished: bool = False


ProgressCallback = Callable[[Progress], None]


@dataclass
class MigrationReport:
    """What a migration did, over all its runs when it was resumed."""

    total: int
    written: int
    unchanged: int
    skipped: int
    scopes: int
    resumed: bool
    seconds: float
    verification: VerifyReport | None
    state_file: str | None
    #: Entries past their deadline when their turn came: not copied.
    expired: int = 0

    @property
    def ok(self) -> bool:
        """True unless the verification found a difference."""
        return self.verification is None or self.verification.ok


class _Run:
    """One run of a migration: the stores, the resume record and the callbacks."""

    def __init__(
        self,
        source: StateStore,
        target: StateStore,
        state: MigrationState,
        state_file: str | None,
        page_size: int,
        progress: ProgressCallback | None,
        should_stop: Callable[[], bool] | None,
        pool: ThreadPoolExecutor | None,
        workers: int = 1,
    ) -> None:
        self.source, self.target, self.state, self.state_file = source, target, state, state_file
        self.pool, self.workers = pool, workers
        self.page_size = page_size
        self._progress = progress
        self._should_stop = should_stop or (lambda: False)
        self.total: int | None = None  # known once the check pass has counted

    def report(
        self, phase: Phase, scope: str | None, done: int, total: int | None, finished: bool = False
    ) -> None:
        if self._progress is not None:
            self._progress(Progress(phase, scope, done, total, finished))

    def stop_requested(self, processed: int) -> None:
        """:raises MigrationInterrupted: when the caller asked to stop (the state file is current)."""
        if self._should_stop():
            raise MigrationInterrupted(processed, self.total, self.state_file)

    def save(self) -> None:
        if self.state_file is not None:
            save_state(self.state_file, self.state)

    def walk(self, scope: str) -> Iterator[EntriesPage]:
        """The scope's pages from its resume cursor; a cursor the source no longer takes restarts it."""
        cursor = self.state.cursor if scope == self.state.scope else None
        walker = pages(self.source, scope, cursor, self.page_size)
        try:
            first = next(walker)
        except InvalidCursorError:
            walker = pages(self.source, scope, None, self.page_size)
            first = next(walker)
        yield first
        yield from walker

    def check(self, scopes: list[str]) -> int:
        """Count what is left to copy and check the target can hold all of it (nothing written)."""
        limits, count, bad = self.target.limits, 0, 0
        problems: list[str] = []
        # deadlines are read only when the target could not keep them
        deadlines = self.source.capabilities.ttl != "none" and limits.capabilities.ttl == "none"
        for scope in scopes:
            for page in self.walk(scope):
                for key, value in page.entries:
                    try:
                        limits.check_entry(scope, key)
                        limits.encode(value)
                        if deadlines and deadline_of(self.source, scope, key)[1] is not None:
                            raise UnsupportedError(
                                f"it expires, but the {limits.adapter_name} adapter does not support "
                                f"entry expiry (capability ttl is none)"
                            )
                    except StateError as exc:
                        bad += 1
                        if len(problems) < MAX_INCOMPATIBLE:
                            problems.append(f"scope {show(scope)} key {show(key)}: {exc}")
                if page.entries:  # a walk may end on an empty page: nothing to report
                    count += len(page.entries)
                    self.report("check", scope, count, None)
                self.stop_requested(self.state.processed)
        if bad:
            raise IncompatibleEntriesError(problems, bad)
        self.report("check", None, count, count, finished=True)
        return count

    def write_page(self, scope: str, entries: list[tuple[str, JSON]], policy: OnConflict) -> dict[str, int]:
        """Write one page in batches (each part: one batch reading the deadlines at the source,
        then the batched writes of :func:`put_until_conflict`), the parts on ``self.pool`` threads
        when there is one; count the outcomes.

        :raises MigrationInterrupted: when a stop was asked for (some of the page may be written).
        :raises EntryConflictError: under ``fail``, at a key holding a different value.
        """
        halt = threading.Event()  # a stop or a conflict: the other parts write nothing more
        size = CHUNK if self.pool is None else max(1, min(CHUNK, -(-len(entries) // self.workers)))
        parts = [entries[i : i + size] for i in range(0, len(entries), size)]

        def part_outcomes(part: list[tuple[str, JSON]]) -> list[Outcome | None]:
            """One outcome per entry of the part; ``None`` for those not written (a stop, or
            after a conflict)."""
            if halt.is_set() or self._should_stop():
                halt.set()
                return [None] * len(part)
            try:
                found = deadlines_of(self.source, scope, [key for key, _ in part])
                pairs = zip(part, found, strict=True)
                live = [Entry(scope, key, value, when) for (key, value), (present, when) in pairs if present]
                written = iter(put_until_conflict(self.target, live, policy))
            except BaseException:
                halt.set()
                raise
            # an entry that expired (or was deleted) since the page was listed is "expired"
            out: list[Outcome | None] = [next(written, None) if alive else "expired" for alive, _ in found]
            if "conflict" in out:
                halt.set()
                end = out.index("conflict") + 1
                out[end:] = [None] * (len(out) - end)
            return out

        if self.pool is None:
            outcomes: list[Outcome | None] = []
            for part in parts:
                outcomes += part_outcomes(part)
                if halt.is_set():
                    break
        else:
            outcomes = [o for done in self.pool.map(part_outcomes, parts) for o in done]
        counts = {"written": 0, "unchanged": 0, "skipped": 0, "expired": 0}
        for item, outcome in zip(entries, outcomes, strict=False):  # a stop leaves fewer outcomes
            if outcome == "conflict":
                raise EntryConflictError(scope, item[0], self.state.written + counts["written"])
            if outcome is not None:
                counts[outcome] += 1
        if halt.is_set():
            done = self.state.processed + sum(counts.values())
            raise MigrationInterrupted(done, self.total, self.state_file)
        return counts

    def copy(self, scopes: list[str], policy: OnConflict) -> None:
        state = self.state
        for scope in scopes:
            state.scope, state.cursor = scope, state.cursor if scope == state.scope else None
            for page in self.walk(scope):
                counts = self.write_page(scope, page.entries, policy)
                # saved only now: a kill before this line makes the next run redo the page
                state.processed += len(page.entries)
                state.written += counts["written"]
                state.unchanged += counts["unchanged"]
                state.skipped += counts["skipped"]
                state.expired += counts["expired"]
                if page.done or page.next_cursor is None:
                    # the scope's end goes into the same save as its last page: a kill between two
                    # saves would leave "in this scope, no cursor" and the re-run would redo it all
                    state.done_through, state.scope, state.cursor = scope, None, None
                else:
                    state.cursor = page.next_cursor
                self.save()
                if page.entries:
                    self.report("copy", scope, state.processed, self.total)
        state.copy_finished = True
        self.save()
        self.report("copy", None, state.processed, self.total, finished=True)

    def verify(self, chosen: list[str] | None) -> VerifyReport:
        read = 0

        def on_page(scope: str, entries: int) -> None:
            nonlocal read
            read += entries
            self.report("verify", scope, read, 2 * (self.total or 0))
            self.stop_requested(self.state.processed)

        report = verify(self.source, self.target, chosen, page_size=self.page_size, progress=on_page)
        self.report("verify", None, read, read, finished=True)
        return report

    def run(
        self, every: list[str], chosen: list[str] | None, policy: OnConflict, verify_after: bool
    ) -> VerifyReport | None:
        """Check what is left, copy it, verify everything."""
        remaining = [s for s in every if not self.state.is_done(s)]
        # the check pass reads the source once more, but finds what the target cannot hold before
        # anything is written, and gives the progress bar its total
        self.total = self.state.processed + self.check(remaining)
        self.save()
        self.copy(remaining, policy)
        return self.verify(chosen) if verify_after else None


def migrate(
    source: StateStore,
    target: StateStore,
    *,
    scopes: Iterable[str] | None = None,
    on_conflict: OnConflict = "fail",
    state_file: str | os.PathLike[str] | None = None,
    restart: bool = False,
    page_size: int = DEFAULT_PAGE_SIZE,
    verify_after: bool = True,
    workers: int = 1,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> MigrationReport:
    """Copy every scope of ``source`` (or the given scopes) into ``target``; never deletes anything.

    Three phases: check (count the entries and make sure the target can hold every one: key
    lengths, value sizes; nothing is written when one does not fit), copy (page by page, saving
    the resume point after each page), verify (count and digest of every scope on both sides).

    :param on_conflict: a target key holding a *different* value: ``fail`` stops, ``skip`` keeps
        it, ``overwrite`` replaces it. Equal values are always fine (that makes re-runs safe).
    :param state_file: where to keep the resume record. Re-running with the same file continues
        where the last run stopped; it is removed once the migration is verified. ``None``: no
        resume (a new run copies everything again, which is safe but slower).
    :param restart: ignore an existing state file and start from the first scope.
    :param page_size: entries per ``list_entries`` call, and per state-file save.
    :param verify_after: compare counts and digests of every scope at the end.
    :param workers: threads writing parts of each page at once, each part in batches (the store
        is thread-safe); memory stays bounded by the page size.
    :param progress: called with a :class:`Progress` after each page and phase.
    :param should_stop: polled between batches; when it returns true the run saves and raises.
    :returns: counts over all runs, and the verification (``report.ok`` is false on a mismatch).
    :raises MigrationInterrupted: when ``should_stop`` asked for it; re-run to resume.
    :raises IncompatibleEntriesError: when the target cannot hold some entries; nothing copied.
    :raises EntryConflictError: under ``fail``, at the first key holding a different value.
    :raises MigrationStateError: when the state file is damaged or belongs to another migration.
    :raises StateError: when either store fails.
    """
    started = time.monotonic()
    policy = check_policy(on_conflict)
    check_page_size(page_size)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    chosen = None if scopes is None else sorted(set(scopes))
    ident = migration_id(source.adapter.describe(), target.adapter.describe(), chosen)
    path = None if state_file is None else os.fspath(state_file)
    state = None if path is None or restart else load_state(path)
    resumed = state is not None
    if state is None or state.migration != ident:
        if state is not None:
            raise MigrationStateError(
                f"{path} records another migration (from {state.source} to {state.target}); "
                f"pass another --state-file, or --restart to discard it"
            )
        state = MigrationState(ident, source.adapter.describe(), target.adapter.describe())
    # list_groups is sorted by code point, the order ``done_through`` relies on
    every = source.list_groups() if chosen is None else chosen
    pool = ThreadPoolExecutor(workers, thread_name_prefix="iii-state-migrate") if workers > 1 else None
    try:
        run = _Run(source, target, state, path, page_size, progress, should_stop, pool, workers)
        verification = run.run(every, chosen, policy, verify_after)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if path is not None and (verification is None or verification.ok):
        remove_state(path)
    return MigrationReport(
        total=run.total or 0, written=state.written, unchanged=state.unchanged, skipped=state.skipped,
        scopes=len(every), resumed=resumed, seconds=time.monotonic() - started,
        verification=verification, state_file=path, expired=state.expired,
    )  # fmt: skip

"""The errors of export, import and migrate; all are :class:`~iii_state_core.StateError`."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import StateError


@dataclass(frozen=True)
class LineProblem:
    """Why one line of a JSON Lines file cannot be imported (``line`` counts from 1)."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class TransferError(StateError):
    """Root of the errors raised by :mod:`iii_state_core.transfer`."""

    code = "TRANSFER_ERROR"


class InvalidLinesError(TransferError, ValueError):
    """A file holds lines that are not ``{"scope", "key", "value"}`` records; nothing was written.

    ``problems`` holds the first problems found (at most the reporting cap); ``count`` all of them.
    """

    code = "INVALID_LINES"

    def __init__(self, problems: Sequence[LineProblem], count: int) -> None:
        self.problems = list(problems)
        self.count = count
        more = f" (and {count - len(problems)} more)" if count > len(problems) else ""
        first = "; ".join(str(p) for p in self.problems[:3])
        super().__init__(f"{count} invalid line(s), nothing was written: {first}{more}")


class EntryConflictError(TransferError):
    """``on_conflict="fail"`` met a key that already holds a different value in the target."""

    code = "CONFLICT"

    def __init__(self, scope: str, key: str, written: int, line: int | None = None) -> None:
        self.scope, self.key, self.written, self.line = scope, key, written, line
        where = f"line {line}: " if line is not None else ""
        super().__init__(
            f"{where}scope {show(scope)} key {show(key)} already holds a different value in the "
            f"target; {written} entries were written before it. Choose --on-conflict skip (keep the "
            f"target's value) or overwrite (take the new one)"
        )


class ConflictsFoundError(TransferError):
    """Under ``on_conflict="fail"``, lines whose keys already hold different values; nothing written."""

    code = "CONFLICT"

    def __init__(self, problems: Sequence[LineProblem], count: int) -> None:
        self.problems = list(problems)
        self.count = count
        more = f" (and {count - len(problems)} more)" if count > len(problems) else ""
        first = "; ".join(str(p) for p in self.problems[:3])
        super().__init__(
            f"{count} line(s) would replace a different value in the target, nothing was written: "
            f"{first}{more}. Choose --on-conflict skip or overwrite"
        )


class IncompatibleEntriesError(TransferError, ValueError):
    """Some source entries cannot be stored by the target (too large, too deep); nothing was copied."""

    code = "INCOMPATIBLE_ENTRIES"

    def __init__(self, problems: Sequence[str], count: int) -> None:
        self.problems = list(problems)
        self.count = count
        more = f" (and {count - len(problems)} more)" if count > len(problems) else ""
        super().__init__(
            f"{count} source entries cannot be stored in the target, nothing was copied: "
            + "; ".join(self.problems[:5])
            + more
        )


class MigrationStateError(TransferError):
    """The resume state file is unreadable or belongs to another migration."""

    code = "MIGRATION_STATE"


class MigrationInterrupted(TransferError):
    """The migration stopped on request; the state file records where to resume."""

    code = "INTERRUPTED"

    def __init__(self, processed: int, total: int | None, state_file: str | None) -> None:
        self.processed, self.total, self.state_file = processed, total, state_file
        resume = (
            f"run the same command again to resume (progress is kept in {state_file})"
            if state_file
            else "no state file was given, so a new run starts over (safely: the copy is idempotent)"
        )
        done = "before copying" if total is None else f"after {processed} of {total} entries"
        super().__init__(f"interrupted {done}; {resume}")


#: Characters a terminal would act on rather than show: controls, line/paragraph separators,
#: and the bidirectional overrides that can make text display as something else.
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def show(text: str, limit: int = 60) -> str:
    """A scope or key for a message or table: JSON-quoted with every invisible or line-breaking
    character escaped (a scope name cannot move the cursor or split a line), long ones shortened."""
    shown = _HIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))
    return shown if len(shown) <= limit else shown[: limit - 2] + '…"'

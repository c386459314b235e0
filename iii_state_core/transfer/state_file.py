"""The resume record of a migration: which scopes are finished and where the current one stands.

It is rewritten atomically (write a temporary file, then rename over the old one) after every
page, so a SIGKILL at any moment leaves either the previous or the next record, never half of
one. Scopes are copied in code-point order, so "finished" is one scope name (``done_through``:
every scope up to and including it is done) and the record stays small however many scopes
there are.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

from .errors import MigrationStateError

FORMAT: Final = "iii-state-migrate/1"


def migration_id(source: str, target: str, scopes: Sequence[str] | None) -> str:
    """Identify a migration by its two stores (their secret-free descriptions) and scope filter."""
    material = json.dumps([source, target, None if scopes is None else sorted(scopes)], ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:16]


@dataclass
class MigrationState:
    """Where a migration stands; ``processed``/``written``/… count entries up to ``cursor``."""

    migration: str
    source: str
    target: str
    done_through: str | None = None
    scope: str | None = None
    cursor: str | None = None
    processed: int = 0
    written: int = 0
    unchanged: int = 0
    skipped: int = 0
    copy_finished: bool = False
    #: Entries past their deadline when their turn came (not copied); absent in older files.
    expired: int = 0

    def is_done(self, scope: str) -> bool:
        return self.done_through is not None and scope <= self.done_through

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, ensure_ascii=False, indent=1)


def load_state(path: str | os.PathLike[str]) -> MigrationState | None:
    """Read a state file; ``None`` when there is none.

    :raises MigrationStateError: when the file exists but is not a state record.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data: Any = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise MigrationStateError(
            f"the migration state file {os.fspath(path)} cannot be read ({exc}); delete it or pass "
            f"--restart to start over (safe: copying again does not duplicate anything)"
        ) from None
    names = {f.name for f in fields(MigrationState)}
    if not isinstance(data, dict) or data.pop("format", None) != FORMAT or not names.issuperset(data):
        raise MigrationStateError(
            f"{os.fspath(path)} is not an iii-state migration state file ({FORMAT}); "
            f"pass another --state-file or delete it"
        )
    try:
        return MigrationState(**data)
    except TypeError as exc:
        raise MigrationStateError(f"{os.fspath(path)} is incomplete ({exc}); pass --restart") from None


def save_state(path: str | os.PathLike[str], state: MigrationState) -> None:
    """Replace the state file atomically.

    :raises OSError: when the directory is not writable.
    """
    temporary = f"{os.fspath(path)}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(state.to_json())
    # rename is atomic: a kill leaves the old record or the new one, and at worst a stray .tmp
    os.replace(temporary, path)


def remove_state(path: str | os.PathLike[str]) -> None:
    """Delete the state file (a finished, verified migration needs no resume point)."""
    for name in (os.fspath(path), f"{os.fspath(path)}.tmp"):
        try:
            os.remove(name)
        except FileNotFoundError:
            pass

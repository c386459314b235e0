"""Moving state: export to JSON Lines, import from it, and migrate between any two stores.

>>> from iii_state_core import open_store
>>> from iii_state_core.transfer import export_entries, import_entries, migrate
>>> with open_store(adapter="kv") as old, open_store(adapter="kv") as new:
...     _ = old.set("users", "alice", {"visits": 1})
...     report = migrate(old, new)
...     report.ok, list(export_entries(new))
(True, [Entry(scope='users', key='alice', value={'visits': 1})])
"""

from __future__ import annotations

from .digest import ScopeCheck, ScopeDigest, VerifyReport, digest_entries, digest_scope, verify
from .errors import (
    ConflictsFoundError,
    EntryConflictError,
    IncompatibleEntriesError,
    InvalidLinesError,
    LineProblem,
    MigrationInterrupted,
    MigrationStateError,
    TransferError,
)
from .exporting import DEFAULT_PAGE_SIZE, export_entries
from .importing import ImportReport, OnConflict, import_entries, import_file, put_entry
from .jsonl import Entry, Validation, encode_line, parse_line, read_jsonl, validate_jsonl, write_jsonl
from .migration import MigrationReport, Progress, migrate

__all__ = [
    "DEFAULT_PAGE_SIZE", "ConflictsFoundError", "Entry", "EntryConflictError", "ImportReport",
    "IncompatibleEntriesError", "InvalidLinesError", "LineProblem", "MigrationInterrupted",
    "MigrationReport", "MigrationStateError", "OnConflict", "Progress", "ScopeCheck", "ScopeDigest",
    "TransferError", "Validation", "VerifyReport", "digest_entries", "digest_scope", "encode_line",
    "export_entries", "import_entries", "import_file", "migrate", "parse_line", "put_entry",
    "read_jsonl", "validate_jsonl", "verify", "write_jsonl",
]  # fmt: skip

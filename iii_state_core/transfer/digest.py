"""Compare two stores scope by scope: entry count and an order-independent content digest.

An entry's hash is the SHA-256 of its export line (``encode_line``: compact JSON of scope, key
and value); a scope's digest is the sum of its entries' hashes modulo 2**256. A sum does not
depend on listing order (adapters list in different orders) and, unlike XOR, a repeated entry
does not cancel out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from ..store import StateStore
from .exporting import DEFAULT_PAGE_SIZE, pages
from .jsonl import Entry, encode_line

_MODULUS: Final = 2**256
#: ``progress(scope, entries_read)`` after each page a verification reads.
PageProgress = Callable[[str, int], None]


def entry_hash(entry: Entry) -> int:
    """The SHA-256 of the entry's export line, as an integer."""
    return int.from_bytes(hashlib.sha256(encode_line(entry)).digest(), "big")


@dataclass(frozen=True)
class ScopeDigest:
    """One side of one scope: how many entries, and the hex digest of their content."""

    count: int
    digest: str


def digest_entries(entries: Iterable[Entry]) -> ScopeDigest:
    """The count and digest of any stream of entries (an export file's lines, for instance)."""
    total = count = 0
    for entry in entries:
        total = (total + entry_hash(entry)) % _MODULUS
        count += 1
    return ScopeDigest(count, f"{total:064x}")


def digest_scope(
    store: StateStore,
    scope: str,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    progress: PageProgress | None = None,
) -> ScopeDigest:
    """Count and digest one scope, walking it page by page.

    On an adapter without ordered listing a walk may repeat a key, so keys seen are remembered
    (16 bytes each) to count every key once; ordered adapters need no memory per key.

    :raises StateError: when the store fails.
    """
    seen: set[bytes] | None = None if store.capabilities.ordered_listing else set()
    total = count = 0
    for page in pages(store, scope, None, page_size):
        for key, value in page.entries:
            if seen is not None:
                tag = hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()
                if tag in seen:
                    continue
                seen.add(tag)
            total = (total + entry_hash(Entry(scope, key, value))) % _MODULUS
            count += 1
        if progress is not None:
            progress(scope, len(page.entries))
    return ScopeDigest(count, f"{total:064x}")


@dataclass(frozen=True)
class ScopeCheck:
    """The verification of one scope: both sides and whether they match."""

    scope: str
    source: ScopeDigest
    target: ScopeDigest

    @property
    def ok(self) -> bool:
        return self.source == self.target


@dataclass
class VerifyReport:
    """Per-scope results; ``extra_scopes`` are scopes only the target holds (not compared)."""

    scopes: list[ScopeCheck] = field(default_factory=list)
    extra_scopes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.scopes)

    @property
    def mismatched(self) -> list[ScopeCheck]:
        return [check for check in self.scopes if not check.ok]

    @property
    def source_entries(self) -> int:
        return sum(check.source.count for check in self.scopes)

    @property
    def target_entries(self) -> int:
        return sum(check.target.count for check in self.scopes)


def verify(
    source: StateStore,
    target: StateStore,
    scopes: Iterable[str] | None = None,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    progress: PageProgress | None = None,
) -> VerifyReport:
    """Compare every scope of ``source`` (or the given scopes) with the same scope of ``target``.

    A scope matches when both sides hold the same number of entries and the same digest, i.e.
    the same keys with structurally equal values (compared as compact JSON bytes).

    :param scopes: compare these; default: every scope the source lists.
    :param progress: called after each page read, on either side.
    :returns: one :class:`ScopeCheck` per scope; ``report.ok`` says whether all match.
    :raises StateError: when either store fails.
    """
    report = VerifyReport()
    wanted = source.list_groups() if scopes is None else list(scopes)
    for scope in wanted:
        report.scopes.append(
            ScopeCheck(
                scope,
                digest_scope(source, scope, page_size=page_size, progress=progress),
                digest_scope(target, scope, page_size=page_size, progress=progress),
            )
        )
    if scopes is None:
        known = set(wanted)
        report.extra_scopes = [s for s in target.list_groups() if s not in known]
    return report

"""Private namespaces: ``state::claim-namespace``, the claims ledger, and reserved scopes.

A worker claims scopes for its own namespace (``functions_prefix`` = its engine name); from then
on those scopes answer every public call with ``RESERVED_SCOPE`` and are reachable only through
the ``<prefix>::state::*`` accessors. Checks and texts are those of iii's ``state`` worker.

The ledger lives in the store, so every replica sees it: scope ``__state_private_namespaces``,
key = prefix, value ``{"functions_prefix", "scopes": [sorted]}`` — the reference's rows, so a
store moved from that worker keeps its claims. Two replicas racing for one scope are settled by
one ownership record per scope in the same ledger scope, key ``scope:<name>`` (a prefix never
holds ``:``), written only if absent: exactly one claimant wins. A claim is enforced at once by
the replica that made it and by every other one within :data:`RESERVED_REFRESH_S` (each replica
re-reads the small ledger that often rather than on every call).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from .errors import DeserializationError, StateError
from .operations import Call
from .values import decode_stored, json_type

log = logging.getLogger("iii_state.namespaces")

LEDGER_SCOPE: Final = "__state_private_namespaces"
BARRIER_SCOPE: Final = "state_barrier"
BUILTIN_RESERVED: Final = frozenset({LEDGER_SCOPE, BARRIER_SCOPE})
#: How often a replica re-reads the ledger to learn of claims other replicas made.
RESERVED_REFRESH_S: Final = 1.0
OWNER_PREFIX: Final = "scope:"
_PREFIX_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_LEDGER_PAGE: Final = 500
#: The accessors a claim registers, in the reference's order.
ACCESSORS: Final = ("get", "list", "list_keys", "list_entries", "compare-and-set")


def reserved_error(scope: str) -> StateError:
    """What a public call on a reserved scope fails with."""
    return StateError(f"`{scope}` is private worker bookkeeping", code="RESERVED_SCOPE")


def accessor_ids(prefix: str) -> list[str]:
    return [f"{prefix}::state::{name}" for name in ACCESSORS]


def check_claim(prefix: object, scopes: object, caller: object) -> tuple[str, list[str], str]:
    """The checks before identity is looked up, in the reference's order.

    :returns: ``(prefix, scopes, caller id)``.
    :raises StateError: ``INVALID_PREFIX``, ``INVALID_SCOPE``, ``RESERVED_SCOPE``, ``UNKNOWN_CALLER``.
    """
    if not isinstance(prefix, str):
        raise DeserializationError(
            f"invalid type: {json_type(prefix)}, expected a string for `functions_prefix`"
        )
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise DeserializationError("invalid type: `scopes` must be an array of strings")
    if caller is not None and not isinstance(caller, str):
        raise DeserializationError(
            f"invalid type: {json_type(caller)}, expected a string for `_caller_worker_id`"
        )
    if not _PREFIX_RE.fullmatch(prefix):
        raise StateError("functions_prefix must be non-empty [A-Za-z0-9_-]", code="INVALID_PREFIX")
    if any(s == "" for s in scopes):
        raise StateError("scopes must be non-empty", code="INVALID_SCOPE")
    for scope in scopes:
        if scope in BUILTIN_RESERVED:
            raise StateError(f"`{scope}` is state worker bookkeeping", code="RESERVED_SCOPE")
    if not caller:
        raise StateError("the engine did not stamp _caller_worker_id", code="UNKNOWN_CALLER")
    return prefix, list(scopes), caller


def caller_name(workers: object, caller: str) -> str:
    """The ``name`` of the ``engine::workers::list`` entry whose ``id`` is ``caller``.

    :raises StateError: ``UNKNOWN_CALLER`` when no entry has that id.
    """
    entries = workers.get("workers") if isinstance(workers, dict) else workers
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("id") == caller and isinstance(entry.get("name"), str):
            return str(entry["name"])
    raise StateError(f"worker id `{caller}` is not registered", code="UNKNOWN_CALLER")


def check_owner(name: str, prefix: str) -> None:
    if name != prefix:
        raise StateError(
            f"worker `{name}` may only claim namespace `{name}`, not `{prefix}`", code="FORBIDDEN"
        )


@dataclass
class Ledger:
    """Who owns which scope, as read from the store."""

    #: prefix -> its scopes, from the reference-shaped rows.
    namespaces: dict[str, set[str]] = field(default_factory=dict)
    #: scope -> owning prefix (rows and ownership records together).
    owners: dict[str, str] = field(default_factory=dict)
    #: Rows that could not be used (unparsable, or naming a scope someone else owns).
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, bytes]]) -> Ledger:
        ledger = cls()
        namespace_rows: list[tuple[str, Any]] = []
        for key, raw in rows:
            try:
                value = decode_stored(raw)
            except ValueError:
                ledger.skipped.append(key)
                continue
            if key.startswith(OWNER_PREFIX):
                if isinstance(value, str):
                    ledger.owners.setdefault(key[len(OWNER_PREFIX) :], value)
                else:
                    ledger.skipped.append(key)
            else:
                namespace_rows.append((key, value))
        for key, value in namespace_rows:
            scopes = value.get("scopes") if isinstance(value, dict) else None
            if (
                not _PREFIX_RE.fullmatch(key)
                or not isinstance(value, dict)
                or value.get("functions_prefix") != key
                or not isinstance(scopes, list)
                or not all(isinstance(s, str) and s and s not in BUILTIN_RESERVED for s in scopes)
                or any(ledger.owners.get(s, key) != key for s in scopes)
            ):
                ledger.skipped.append(key)
                continue
            ledger.namespaces[key] = set(scopes)
            for scope in scopes:
                ledger.owners[scope] = key
        return ledger

    def reserved(self) -> frozenset[str]:
        return BUILTIN_RESERVED | frozenset(self.owners)


def load_ledger() -> Generator[Call, Any, Ledger]:
    """Read the whole ledger scope (it holds one row per namespace and per claimed scope)."""
    rows: list[tuple[str, bytes]] = []
    cursor: str | None = None
    while True:
        page, cursor = yield Call("scan", (LEDGER_SCOPE, cursor, _LEDGER_PAGE))
        rows.extend(page)
        if cursor is None:
            return Ledger.from_rows(rows)


def _compact(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def claim(prefix: str, scopes: list[str]) -> Generator[Call, Any, tuple[dict[str, Any], Ledger]]:
    """Reserve ``scopes`` for ``prefix`` (identity already checked).

    All or nothing: one scope owned by another prefix fails the claim with ``SCOPE_CONFLICT`` and
    the ownership records this call wrote are removed again.

    :returns: the wire result ``{claimed, scopes, functions}`` and the ledger after the claim.
    """
    ledger = yield from load_ledger()
    mine = set(ledger.namespaces.get(prefix, set()))
    taken: list[str] = []
    for scope in sorted(set(scopes)):
        owner = ledger.owners.get(scope)
        if owner == prefix:
            mine.add(scope)
            continue
        if owner is None:
            raw, token = yield Call("read_versioned", (LEDGER_SCOPE, OWNER_PREFIX + scope))
            if raw is None and (
                yield Call("write_if", (LEDGER_SCOPE, OWNER_PREFIX + scope, _compact(prefix), token))
            ):
                taken.append(scope)
                mine.add(scope)
                continue
            if raw is None:  # another claimant won the race just now
                raw = yield Call("read", (LEDGER_SCOPE, OWNER_PREFIX + scope))
            owner = decode_stored(raw) if raw is not None else None
            if owner == prefix:
                mine.add(scope)
                continue
        yield from _release(taken)
        raise StateError(f"scope `{scope}` is already claimed by namespace `{owner}`", code="SCOPE_CONFLICT")
    newly = set(taken) | (mine - ledger.namespaces.get(prefix, set()))
    if newly:
        row = {"functions_prefix": prefix, "scopes": sorted(mine)}
        # A failure here surfaces as CLAIM_PERSIST_ERROR (the driver wraps it); the ownership
        # records stay, so the scopes stay reserved and claiming again completes the row.
        yield Call("write", (LEDGER_SCOPE, prefix, _compact(row)))
        ledger.namespaces[prefix] = set(mine)
        for scope in mine:
            ledger.owners[scope] = prefix
    result = {"claimed": bool(newly), "scopes": sorted(mine), "functions": accessor_ids(prefix)}
    return result, ledger


def _release(scopes: list[str]) -> Generator[Call, Any, None]:
    for scope in scopes:
        yield Call("remove", (LEDGER_SCOPE, OWNER_PREFIX + scope))


class ReservedScopes:
    """One process's view of the reserved scopes, refreshed from the store's ledger.

    Every public call asks :meth:`contains`; the store re-reads the ledger when :meth:`stale`.
    """

    def __init__(self, refresh_s: float = RESERVED_REFRESH_S) -> None:
        #: The reserved scopes now (replaced whole, never changed): what every public call checks.
        self.scopes: frozenset[str] = BUILTIN_RESERVED
        self._read_at = float("-inf")
        self._refresh_s = refresh_s
        #: ``time.monotonic()`` from which on the ledger is stale: one comparison per call
        #: (:meth:`stale` is the same test as a method).
        self.refresh_due = float("-inf")
        self.ledger = Ledger()

    @property
    def refresh_s(self) -> float:
        return self._refresh_s

    @refresh_s.setter
    def refresh_s(self, seconds: float) -> None:
        self._refresh_s = seconds
        self.refresh_due = self._read_at + seconds

    def stale(self) -> bool:
        return time.monotonic() >= self.refresh_due

    def replace(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.scopes = ledger.reserved()
        self._read_at = time.monotonic()
        self.refresh_due = self._read_at + self._refresh_s

    def unreadable(self, exc: Exception) -> Ledger:
        """The ledger to keep when re-reading it failed: the last one read."""
        log.warning("could not re-read the claims ledger (%s); keeping the reserved scopes known so far", exc)
        return self.ledger

    def contains(self, scope: str) -> bool:
        return scope in self.scopes

    def check(self, scope: object) -> None:
        """:raises StateError: ``RESERVED_SCOPE`` when ``scope`` is reserved."""
        if isinstance(scope, str) and scope in self.scopes:
            raise reserved_error(scope)

    def owned_by(self, prefix: str, scope: str) -> bool:
        return self.ledger.owners.get(scope) == prefix

"""``list_entries`` as iii's ``state`` worker answers it: ``limit``, the ``max_bytes`` page cut,
``offset`` and ``total`` — over any adapter's bounded ``scan``, as a sans-I/O plan.

Where we differ from that worker, on purpose (docs/contract.md §2):

- It captures the whole scope in memory at the first page (at most 100,000 rows, 64 MB held)
  and hands out a UUID naming that snapshot for 120 s. We walk the adapter page by page, so
  memory stays bounded by ``limit`` whatever the scope's size, and the cursor carries the walk's
  position itself: it survives a worker restart, never expires, and any worker replica can
  serve the next page. A walk sees each key present for the whole walk at least once (exactly
  once on an adapter with ordered listing); a key written meanwhile may or may not appear.
- ``total`` is the count when the walk began (the first page counts the scope), as there. A
  first page that holds the whole scope is its own count; a longer scope is counted after it.
- Its last page is the one whose rows all fit; ours may end on an empty page when the adapter
  could not tell that the previous page held the scope's last row.

The cursor is ``<body>.<check>`` in URL-safe base64: the body holds the adapter's cursor, the
offset and the total; the check is a hash over the body and everything the walk is bound to
(namespace, scope, caller, limit, max_bytes, non_null_only). It is tamper-evident, not secret,
and carries no authority: a cursor only resumes a walk the caller could start afresh.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import json
from collections.abc import Generator
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any, Final

from .errors import DeserializationError, StateError, StoredValueError
from .operations import SCAN_PAGE, Call, Limits, Plan, _decode
from .results import EntriesPage
from .values import decode_all, json_type

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
DEFAULT_MAX_BYTES: Final = 1_000_000
MIN_MAX_BYTES: Final = 256
MAX_MAX_BYTES: Final = 8_000_000
#: Longest scope or namespace a listing accepts, in UTF-8 bytes.
MAX_NAME_BYTES: Final = 1024
#: Longest engine-stamped caller id, in UTF-8 bytes.
MAX_CALLER_BYTES: Final = 256
#: The namespace a public ``state::list_entries`` walk is bound to (a private one: its prefix).
PUBLIC_NAMESPACE: Final = "state::list_entries"

INVALID_PAGE_LIMITS: Final = "limit=1..1000, max_bytes=256..8000000, scope/namespace<=1024 bytes"
UNKNOWN_CALLER: Final = "list_entries requires engine-stamped identity"
INVALID_CURSOR: Final = "invalid, expired or consumed cursor; restart without cursor"
ROW_TOO_LARGE: Final = "a complete keyed row does not fit the page byte budget"
PAGE_SERIALIZATION: Final = "page could not be encoded within its budget"

_CURSOR_VERSION: Final = 1
#: Not a secret (see the module docstring): it only keeps our checks apart from other hashes.
_CHECK_PERSON: Final = b"iiipage1"
#: Bounds the re-reads a page cut makes when concurrent writes keep changing the rows.
_MAX_CUTS: Final = 16


class PagingError(StateError, ValueError):
    """A listing request the reference worker refuses with one of its own codes."""


def _utf8_len(text: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise DeserializationError("strings must be valid Unicode (a lone surrogate was sent)") from None


def _integer(name: str, value: object, default: int) -> int:
    """An unsigned integer field, as serde reads one (a negative or a float is a type error)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise DeserializationError(
            f"invalid type: {json_type(value)}, expected an unsigned integer for `{name}`"
        )
    if value < 0:
        raise DeserializationError(
            f"invalid value: integer `{value}`, expected an unsigned integer for `{name}`"
        )
    return value


@dataclass(frozen=True)
class PageRequest:
    """One page request, checked. Build it with :meth:`parse`."""

    namespace: str
    scope: str
    caller: str
    limit: int = DEFAULT_LIMIT
    max_bytes: int = DEFAULT_MAX_BYTES
    non_null_only: bool = False

    @classmethod
    def parse(
        cls,
        *,
        namespace: str,
        scope: object,
        caller: object,
        limit: object = None,
        max_bytes: object = None,
        non_null_only: object = False,
        cap_names: bool = True,
    ) -> PageRequest:
        """Check a request in the reference's order.

        :param cap_names: apply the wire's 1024-byte cap on scope and namespace; a typed call
            leaves it to the adapter's own name limits (checked by the plan), so any scope a
            store accepts can be listed and exported.

        :raises DeserializationError: a field of the wrong type (before anything else, as the
            SDK's decoding fails there).
        :raises PagingError: ``INVALID_PAGE_LIMITS``, then ``UNKNOWN_CALLER``.
        """
        if not isinstance(scope, str):
            raise DeserializationError(f"invalid type: {json_type(scope)}, expected a string for `scope`")
        if caller is not None and not isinstance(caller, str):
            raise DeserializationError(
                f"invalid type: {json_type(caller)}, expected a string for `_caller_worker_id`"
            )
        if not isinstance(non_null_only, bool):
            raise DeserializationError(
                f"invalid type: {json_type(non_null_only)}, expected a boolean for `non_null_only`"
            )
        page_limit = _integer("limit", limit, DEFAULT_LIMIT)
        budget = _integer("max_bytes", max_bytes, DEFAULT_MAX_BYTES)
        if (
            not 1 <= page_limit <= MAX_LIMIT
            or not MIN_MAX_BYTES <= budget <= MAX_MAX_BYTES
            or (cap_names and _utf8_len(scope) > MAX_NAME_BYTES)
            or (cap_names and _utf8_len(namespace) > MAX_NAME_BYTES)
        ):
            raise PagingError(INVALID_PAGE_LIMITS, code="INVALID_PAGE_LIMITS")
        if not caller or _utf8_len(caller) > MAX_CALLER_BYTES:
            raise PagingError(UNKNOWN_CALLER, code="UNKNOWN_CALLER")
        return cls(namespace, scope, caller, page_limit, budget, non_null_only)

    def _binding(self) -> tuple[Any, ...]:
        if self.caller == LOCAL_CALLER:  # a typed call may change its page size mid-walk
            return (self.namespace, self.scope, self.caller, self.non_null_only)
        return (self.namespace, self.scope, self.caller, self.limit, self.max_bytes, self.non_null_only)


# -- cursors -----------------------------------------------------------------------------------


# URL-safe base64 without padding, by binascii directly (the base64 module's wrappers cost a
# page more than the encoding itself).
_TO_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE: Final = bytes.maketrans(b"-_", b"+/")


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    """As ``base64.urlsafe_b64decode`` (which also skips bytes outside the alphabet)."""
    return binascii.a2b_base64((text + "=" * (-len(text) % 4)).encode("ascii").translate(_FROM_URLSAFE))


@functools.lru_cache(maxsize=256)
def _bound(binding: tuple[Any, ...]) -> bytes:
    """The length-prefixed JSON of a walk's binding (the same few walks page again and again)."""
    bound = json.dumps(binding, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return len(bound).to_bytes(4, "big") + bound


def _check(request: PageRequest, body: bytes) -> bytes:
    digest = hashlib.blake2s(digest_size=12, person=_CHECK_PERSON)
    digest.update(_bound(request._binding()) + body)
    return digest.digest()


def encode_cursor(request: PageRequest, adapter_cursor: str, offset: int, total: int) -> str:
    """:returns: the cursor that resumes ``request``'s walk at ``adapter_cursor``."""
    body = json.dumps([_CURSOR_VERSION, adapter_cursor, offset, total], separators=(",", ":")).encode()
    return f"{_b64(body)}.{_b64(_check(request, body))}"


def decode_cursor(request: PageRequest, cursor: object) -> tuple[str, int, int]:
    """:returns: ``(adapter cursor, offset, total)`` of a cursor this walk handed out.

    :raises PagingError: ``INVALID_CURSOR`` for anything else: garbage, an edited cursor, or one
        from another scope, caller, namespace, limit, max_bytes or non_null_only.
    """
    if not isinstance(cursor, str):
        raise DeserializationError(f"invalid type: {json_type(cursor)}, expected a string for `cursor`")
    try:
        body_text, check_text = cursor.split(".")
        body = _unb64(body_text)
        if _check(request, body) != _unb64(check_text):
            raise ValueError("check mismatch")
        version, inner, offset, total = json.loads(body)
        if version != _CURSOR_VERSION or not isinstance(inner, str):
            raise ValueError("unknown cursor version")
        if not all(type(n) is int and n >= 0 for n in (offset, total)):
            raise ValueError("bad position")
    except (ValueError, TypeError, UnicodeError):
        raise PagingError(INVALID_CURSOR, code="INVALID_CURSOR") from None
    return inner, offset, total


# -- sizes -------------------------------------------------------------------------------------


def _compact(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def row_bytes(key: str, raw: bytes) -> int:
    """Size of ``[key,value]`` in compact JSON; ``raw`` is the stored (already compact) value."""
    # encode_basestring is what json.dumps(key, ensure_ascii=False) runs, minus its per-call setup
    return len(encode_basestring(key).encode("utf-8")) + len(raw) + 3


def _base_bytes(cursor: str | None, offset: int, total: int) -> int:
    return len(_compact({"entries": [], "next_cursor": cursor, "done": cursor is None, "offset": offset,
                         "total": total}))  # fmt: skip


def fitting_rows(sizes: list[int], budget: int, limit: int, final: bool, base: int, final_base: int) -> int:
    """How many leading rows of ``sizes`` go into the page (the reference's cut).

    :param final: the last of ``sizes`` is the scope's last row.
    :param base: bytes of the response with no rows and a cursor; ``final_base``: without one.
    """
    if final and len(sizes) <= limit and final_base + sum(sizes) + max(len(sizes) - 1, 0) <= budget:
        return len(sizes)
    used = 0
    taken = 0
    for index, size in enumerate(sizes[:limit]):
        last = final and index == len(sizes) - 1
        if (final_base if last else base) + used + size + taken > budget:  # `taken` commas
            break
        used += size
        taken += 1
    return taken


# -- the plan ----------------------------------------------------------------------------------


def count_entries(scope: str, non_null_only: bool) -> Generator[Call, Any, int]:
    """Count a scope: the adapter's own count when it has one, else a walk (memory bounded by
    one scan page). ``non_null_only`` always walks: only the values tell a null apart."""
    if not non_null_only:
        counted = yield Call("count", (scope,))
        if counted is not None:
            return int(counted)
    count = 0
    inner: str | None = None
    while True:
        page, inner = yield Call("scan", (scope, inner, SCAN_PAGE))
        count += sum(1 for _, raw in page if not (non_null_only and raw == b"null"))
        if inner is None:
            return count


def list_entries(limits: Limits, request: PageRequest, cursor: str | None) -> Plan:
    """One page of ``request.scope``: an :class:`EntriesPage` with offset and total.

    :raises PagingError: ``INVALID_CURSOR``, ``ROW_TOO_LARGE`` or ``PAGE_SERIALIZATION_ERROR``.
    """
    limits.check_name("scope", request.scope, limits.capabilities.max_scope_bytes)
    if cursor is None:
        inner: str | None = None
        offset = 0
    else:
        inner, offset, total = decode_cursor(request, cursor)
    counted: int | None = None
    if cursor is None and not request.non_null_only:  # the adapter may count in the same step
        rows, after, counted = yield Call("scan_counted", (request.scope, request.limit))
    else:
        rows, after = yield Call("scan", (request.scope, inner, request.limit))
    if cursor is None:
        if after is None:  # the first page holds the whole scope: it counts itself
            total = sum(1 for _, raw in _unique(rows) if not (request.non_null_only and raw == b"null"))
        elif counted is not None:
            total = int(counted)
        else:
            total = yield from count_entries(request.scope, request.non_null_only)
    if request.max_bytes >= UNLIMITED_BYTES:  # no budget to cut at: the adapter's page is the page
        ordered = limits.capabilities.ordered_listing  # an ordered walk never repeats a key
        return _page(request, rows if ordered else _unique(rows), after, offset, total), None
    for _ in range(_MAX_CUTS):
        rows = _unique(rows)
        wanted = [not (request.non_null_only and raw == b"null") for _, raw in rows]
        sizes = [row_bytes(k, raw) if keep else 0 for (k, raw), keep in zip(rows, wanted, strict=True)]
        estimate = None if after is None else encode_cursor(request, after, offset + len(rows), total)
        # A null dropped by non_null_only costs no bytes and no comma: cut on the kept rows only.
        kept_sizes = [s for s, keep in zip(sizes, wanted, strict=True) if keep]
        final_base = _base_bytes(None, offset, total)
        base = _base_bytes(estimate or "x" * 64, offset, total)
        # An adapter's page never holds more than `limit` distinct keys; `max` only guards the
        # cut against one that does (cutting there would need a cursor it did not give).
        fit = fitting_rows(
            kept_sizes,
            request.max_bytes,
            max(request.limit, len(kept_sizes)),
            after is None,
            base,
            final_base,
        )
        take = _scanned_rows_for(wanted, fit)
        if take == len(rows):
            page = _page(request, rows, after, offset, total)
        elif fit == 0:
            raise PagingError(ROW_TOO_LARGE, code="ROW_TOO_LARGE")
        else:
            # The adapter's cursor points after its whole page: read again up to the cut, so
            # the next page starts right after the last row sent.
            again, again_after = yield Call("scan", (request.scope, inner, take))
            again = _unique(again)
            if [k for k, _ in again] != [k for k, _ in rows[:take]]:
                rows, after = again, again_after  # written meanwhile: cut what is there now
                continue
            page = _page(request, again, again_after, offset, total)
        if len(_compact(page.to_wire())) <= request.max_bytes:
            return page, None
        if len(rows) <= 1 or take <= 1:
            raise PagingError(PAGE_SERIALIZATION, code="PAGE_SERIALIZATION_ERROR")
        # The real cursor came out longer than the estimate: one row fewer.
        rows, after = yield Call("scan", (request.scope, inner, take - 1))
    raise PagingError(PAGE_SERIALIZATION, code="PAGE_SERIALIZATION_ERROR")


def _unique(rows: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """An unordered adapter may repeat a key, even within one page: send it once per page."""
    if len({k for k, _ in rows}) == len(rows):
        return rows
    return list(dict(rows).items())


def _scanned_rows_for(wanted: list[bool], fit: int) -> int:
    """How many scanned rows hold the first ``fit`` kept ones (dropped rows after them too)."""
    if fit == sum(wanted):
        return len(wanted)
    seen = 0
    for index, keep in enumerate(wanted):
        if keep:
            if seen == fit:
                return index
            seen += 1
    return len(wanted)


def _page(request: PageRequest, rows: list[tuple[str, bytes]], after: str | None, offset: int, total: int
          ) -> EntriesPage:  # fmt: skip
    if request.non_null_only:
        rows = [(k, raw) for k, raw in rows if raw != b"null"]
    try:
        entries = list(zip([k for k, _ in rows], decode_all([raw for _, raw in rows]), strict=True))
    except StoredValueError:
        for k, raw in rows:  # raise it again, naming the entry
            _decode("list_entries", request.scope, k, raw)
        raise
    next_cursor = None if after is None else encode_cursor(request, after, offset + len(entries), total)
    return EntriesPage(entries, next_cursor, next_cursor is None, offset, total)


#: The caller a typed (in-process) call pages as: no engine identity to check.
LOCAL_CALLER: Final = "local"
#: The byte budget of a typed call that names none: no cut (a process reading its own store).
UNLIMITED_BYTES: Final = 2**62


def list_entries_page(
    limits: Limits,
    scope: str,
    cursor: str | None = None,
    limit: int | None = None,
    max_bytes: int | None = None,
    caller: str | None = None,
) -> Plan:
    """One page of ``scope``'s ``[key, value]`` pairs with ``offset`` and ``total``.

    Over the wire ``caller`` is the engine-stamped ``_caller_worker_id`` (required) and
    ``max_bytes`` defaults to 1,000,000. A typed call leaves ``caller`` out: it pages as this
    process, with no byte budget unless ``max_bytes`` is given.
    """
    local = caller is None
    request = PageRequest.parse(
        namespace=PUBLIC_NAMESPACE,
        scope=scope,
        caller=LOCAL_CALLER if local else caller,
        limit=limit,
        max_bytes=max_bytes,
        cap_names=not local,
    )
    if local and max_bytes is None:  # (the constructor: dataclasses.replace costs more than a page's cursor)
        request = PageRequest(
            request.namespace, request.scope, request.caller, request.limit, UNLIMITED_BYTES,
            request.non_null_only,
        )  # fmt: skip
    return list_entries(limits, request, cursor)


def local_cursor(scope: str, adapter_cursor: str) -> str:
    """A cursor that hands ``adapter_cursor`` to the adapter on a typed call's next page (the
    check is tamper-evidence, not a secret): for tests of an adapter's own cursor checks."""
    return encode_cursor(PageRequest(PUBLIC_NAMESPACE, scope, LOCAL_CALLER), adapter_cursor, 0, 0)

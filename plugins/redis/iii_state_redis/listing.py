"""Listing as sans-I/O plans: ``scan`` pages over HSCAN, ``list_scopes`` over SCAN.

A plan yields :class:`Read` and :class:`Run` requests (or :data:`PRIMARIES`) and gets the
replies sent back; the sync and async adapters drive the same plans. Expired fields are left
out inside the scripts (``scripts.SCAN_PAGE``, ``scripts.COUNT``), so the paging rules below
see only live fields.

Paging HSCAN with a hard ``limit``: HSCAN's COUNT is only a hint, and a small hash (a
listpack) comes back whole in one call. So a page may end inside a batch. The adapter
cursor then holds the HSCAN cursor of that batch, the last key returned from it (batches
are sorted by key) and the cursor that batch's HSCAN returned. The next page sends the same
HSCAN again and skips keys up to the last one returned. That is safe only if the hash was
not resized in between — a shrunken table folds keys of buckets not yet visited into this
one — and a resize shows as a different returned cursor, in which case the batch is
returned whole (repeats are allowed: the adapter declares unordered listing).
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Final, Literal

from iii_state_core import InvalidCursorError
from iii_state_core.adapter import Page
from iii_state_core.expiry import now_ms

from .layout import Layout
from .scripts import COUNT, SCAN_COUNTED, SCAN_PAGE, Script

#: Smallest COUNT hint sent: tiny hints make HSCAN walk a sparse table in many round trips.
MIN_COUNT: Final = 16
#: COUNT hint of the SCAN behind ``list_groups``.
SCOPE_SCAN_COUNT: Final = 1000


@dataclass(frozen=True)
class Read:
    """A read-only command; ``node`` is a Cluster primary to send it to (``None``: by key)."""

    args: tuple[Any, ...]
    node: Any = None


@dataclass(frozen=True)
class ReadMany:
    """Read-only commands sent together in one pipeline (on a Cluster, redis-py's cluster pipeline
    sends each to the node owning its key); the reply is the list of their replies."""

    commands: tuple[tuple[Any, ...], ...]

    def send(self, client: Any) -> Any:
        """Queue the commands on ``client``'s pipeline and execute it (awaitable for
        ``redis.asyncio`` clients, whose ``execute`` is a coroutine)."""
        pipe = client.pipeline(transaction=False)
        for args in self.commands:
            pipe.execute_command(*args)
        return pipe.execute()


@dataclass(frozen=True)
class Run:
    """Run a script on ``keys`` (one scope's: one slot) with ``args``.

    ``kind``: ``read`` for a read-only script (sent again after a lost reply), else ``write``.
    """

    script: Script
    keys: tuple[bytes, ...]
    args: tuple[bytes | int | str, ...]
    kind: Literal["read", "write"] = "read"


class _Primaries:
    """Request for the nodes to SCAN: every Cluster primary, or ``[None]`` for one server."""


PRIMARIES: Final = _Primaries()
Request = Read | ReadMany | Run | _Primaries
Plan = Generator[Request, Any, Any]


@dataclass(frozen=True)
class ScanCursor:
    """Where a ``scan`` walk stands (see the module docstring)."""

    position: int
    after: str | None = None
    expect: int | None = None

    def encode(self) -> str:
        return json.dumps([self.position, self.expect, self.after], separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> ScanCursor:
        """:raises InvalidCursorError: for anything ``encode`` did not produce."""
        try:
            position, expect, after = json.loads(text)
        except (ValueError, TypeError):
            position = None
        if not (
            _is_cursor(position)
            and (expect is None or _is_cursor(expect))
            and (after is None or isinstance(after, str))
            and (after is None) == (expect is None)
        ):
            raise InvalidCursorError(
                "cursor is not one the redis adapter handed out; start the walk again without it"
            )
        return cls(position, after, expect)


def _is_cursor(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64


def split_reply(reply: Any) -> tuple[int, list[tuple[Any, Any]] | list[Any]]:
    """``(cursor, items)`` of a SCAN/HSCAN reply, parsed by redis-py or not."""
    cursor, items = reply
    if isinstance(cursor, dict):  # redis-py's Cluster SCAN: {node name: cursor} for our one node
        (cursor,) = cursor.values()
    if isinstance(items, dict):
        return int(cursor), list(items.items())
    return int(cursor), list(items)


def _entries(items: list[Any]) -> list[tuple[str, bytes]]:
    if items and not isinstance(items[0], tuple):
        items = list(zip(items[::2], items[1::2], strict=True))
    out: dict[str, bytes] = {}
    for name, value in items:
        try:
            out[bytes(name).decode("utf-8")] = bytes(value)
        except UnicodeDecodeError:
            continue  # a field no state call can name; not ours to list
    return sorted(out.items())


def scan_plan(layout: Layout, scope: str, cursor: str | None, limit: int) -> Plan:
    """Up to ``limit`` entries of ``scope`` after ``cursor``; returns a :data:`Page`."""
    page, after, _ = yield from _scan(layout, scope, cursor, limit, counted=False)
    result: Page = (page, after)
    return result


def scan_counted_plan(layout: Layout, scope: str, limit: int) -> Plan:
    """A walk's first page and the scope's count, the count taken by the first script (one
    round trip less than a page and ``COUNT``); returns ``(rows, next_cursor, count)``."""
    return (yield from _scan(layout, scope, None, limit, counted=True))


def _scan(
    layout: Layout, scope: str, cursor: str | None, limit: int, counted: bool
) -> Generator[Any, Any, tuple[list[tuple[str, bytes]], str | None, int | None]]:
    state = ScanCursor(0) if cursor is None else ScanCursor.decode(cursor)
    names = layout.names(scope)
    position, after, expect = state.position, state.after, state.expect
    page: list[tuple[str, bytes]] = []
    count: int | None = None
    while True:
        want = limit - len(page)
        script = SCAN_COUNTED if count is None and counted else SCAN_PAGE
        reply = yield Run(script, (names.hash, names.deadlines), (position, max(want, MIN_COUNT), now_ms()))
        if script is SCAN_COUNTED:
            count = int(reply[2])
            reply = reply[:2]
        following, items = split_reply(reply)
        batch = _entries(items)
        if after is not None:
            if following == expect:
                batch = [entry for entry in batch if entry[0] > after]
            after = None
        if len(batch) > want:
            page.extend(batch[:want])
            return page, ScanCursor(position, page[-1][0], following).encode(), count
        page.extend(batch)
        if following == 0:
            return page, None, count
        position = following
        if len(page) >= limit:
            return page, ScanCursor(position).encode(), count


def scopes_plan(layout: Layout) -> Plan:
    """Every scope with a live field, on every primary; returns ``list[str]``.

    A scope whose fields all expired still has its hash until a sweep takes them. Only a scope
    the due index lists as due (its score is at most its earliest deadline) can be one, so
    only those are counted (``COUNT``), not every scope.
    """
    pattern = layout.scope_pattern()
    nodes = yield PRIMARIES
    found: dict[str, None] = {}
    for node in nodes:
        position = 0
        while True:
            # TYPE hash: other keys under the prefix (a string someone SET) are not scopes.
            reply = yield Read(
                ("SCAN", position, "MATCH", pattern, "COUNT", SCOPE_SCAN_COUNT, "TYPE", "hash"), node
            )
            position, names = split_reply(reply)
            for name in names:
                scope = layout.scope_of(bytes(name))
                if scope is not None:
                    found[scope] = None
            if position == 0:
                break
    if found:
        now = now_ms()
        tags = [bytes(tag) for tag in (yield Read(("SMEMBERS", layout.registry_key())))]
        asks = tuple(("ZRANGEBYSCORE", layout.due_key(tag), "-inf", now) for tag in tags)
        for due in (yield ReadMany(asks)) if asks else []:
            for member in due:
                scope = _utf8(member)
                if scope is not None and scope in found:
                    keys = layout.names(scope)
                    if int((yield Run(COUNT, (keys.hash, keys.deadlines), (now,)))) == 0:
                        del found[scope]
    return list(found)


def _utf8(name: Any) -> str | None:
    try:
        return bytes(name).decode("utf-8")
    except UnicodeDecodeError:
        return None

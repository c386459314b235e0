"""Stream a store's entries out, page by page, through ``list_groups`` and ``list_entries``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from ..operations import MAX_LIST_LIMIT
from ..results import EntriesPage
from ..store import StateStore
from .deadlines import with_deadlines
from .jsonl import Entry

#: Entries fetched per ``list_entries`` call: memory use is bounded by this, not by the data.
DEFAULT_PAGE_SIZE: Final = 500


def check_page_size(page_size: int) -> int:
    """:raises ValueError: unless ``page_size`` is one ``list_entries`` accepts (1 … 1000)."""
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_LIST_LIMIT:
        raise ValueError(f"page_size must be an integer from 1 to {MAX_LIST_LIMIT}, got {page_size!r}")
    return page_size


def pages(
    store: StateStore, scope: str, cursor: str | None = None, page_size: int = DEFAULT_PAGE_SIZE
) -> Iterator[EntriesPage]:
    """Walk one scope from ``cursor`` (``None``: the start), one ``list_entries`` page at a time.

    :raises InvalidCursorError: when ``cursor`` was not handed out for this scope.
    :raises StateError: when the store fails (``LIST_ERROR``).
    """
    check_page_size(page_size)
    while True:
        page = store.list_entries(scope, cursor, page_size)
        yield page
        if page.done or page.next_cursor is None:
            return
        cursor = page.next_cursor


def export_entries(
    store: StateStore, scopes: Iterable[str] | None = None, *, page_size: int = DEFAULT_PAGE_SIZE
) -> Iterator[Entry]:
    """Every entry of ``store`` (or of the given scopes), lazily.

    An entry that expires carries its absolute deadline (``expires_at``, epoch ms), read right
    after its page (one more call per entry on an adapter with ``ttl``); one that expired or was
    deleted in between is left out.

    Scopes come in ``list_groups`` order (sorted by code point) and keys in the adapter's listing
    order. On an adapter that does not declare ordered listing, an entry written or moved while
    the walk runs may come twice (with the same or a newer value); importing such a stream is
    still correct, because a repeated identical entry counts as unchanged.

    :param scopes: only these scopes, in this order (an unknown scope yields nothing).
    :param page_size: entries per ``list_entries`` call (1 … 1000).
    :raises StateError: when the store fails.
    """
    check_page_size(page_size)
    for scope in store.list_groups() if scopes is None else scopes:
        for page in pages(store, scope, None, page_size):
            if store.capabilities.ttl == "none":
                for key, value in page.entries:
                    yield Entry(scope, key, value)
            else:
                yield from with_deadlines(store, scope, page.entries)

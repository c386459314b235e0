"""How much of a memcached item a value may use: the sizes the adapter declares and checks."""

from __future__ import annotations

from . import records

#: memcached's own bytes per item beyond the value (header, a 250-byte key, cas), measured on
#: 1.6 as 309 for a 250-byte key; rounded up.
SERVER_ITEM_OVERHEAD = 320
#: Scope + key bytes every value up to ``max_value_bytes`` has room for. A longer pair still
#: works; only its largest values are refused (VALUE_TOO_LARGE, with the reason).
NAME_ALLOWANCE = 4096
DEFAULT_ITEM_SIZE_MAX = 1024 * 1024


def item_limit(item_size_max: int) -> int:
    """The largest item the adapter stores on a server started with ``-I item_size_max``."""
    return item_size_max - SERVER_ITEM_OVERHEAD


def value_limit(item_size_max: int) -> int:
    """The declared ``max_value_bytes`` for that server."""
    return item_limit(item_size_max) - records.ITEM_OVERHEAD - records.RECORD_OVERHEAD - NAME_ALLOWANCE

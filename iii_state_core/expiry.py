"""Entry expiry (contract § Expiry): the clock, the ``ttl_ms`` rule and the "keep" marker.

Deadlines are absolute, in milliseconds since the Unix epoch, so an exported deadline means the
same instant when it is imported elsewhere. The core turns a caller's ``ttl_ms`` into a deadline
with :func:`now_ms`; a TTL-capable adapter stores the deadline and treats an entry whose deadline
is ``<=`` its own ``now_ms()`` as missing on every read and write.
"""

from __future__ import annotations

import time
from typing import Final

from .errors import DeserializationError

#: The largest ``ttl_ms`` accepted: 2^53, the largest integer every JSON reader holds exactly.
MAX_TTL_MS: Final = 2**53


class _Keep:
    """The marker type of :data:`KEEP`."""

    _instance: _Keep | None = None

    def __new__(cls) -> _Keep:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "KEEP"


#: How long a leased expired entry stays claimed (``Adapter.take_expired``) before another sweeper
#: may claim it again: the time a sweeper has to deliver a batch and acknowledge it. A crashed
#: sweeper's entries are delivered this much later than the adapter's declared delay.
EXPIRY_LEASE_MS: Final = 10_000

#: Passed as ``expires_at`` to ``write_if``/``modify``: leave the entry's deadline as it is
#: (a missing or expired entry has none to keep, so the written one never expires).
KEEP: Final = _Keep()

#: What a write primitive's ``expires_at`` may be: a deadline, ``None`` (never), or :data:`KEEP`.
ExpiresAt = int | None | _Keep


def resolve_expiry(expires_at: ExpiresAt, current: int | None) -> int | None:
    """The deadline a write leaves: ``current`` for :data:`KEEP`, else ``expires_at``."""
    return current if isinstance(expires_at, _Keep) else expires_at


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch: the clock of every deadline (``Limits.expires_at``
    reads it inline on its hot path)."""
    return time.time_ns() // 1_000_000


def check_ttl_ms(ttl_ms: object) -> int:
    """``ttl_ms`` as a validated integer.

    :raises DeserializationError: unless it is an integer from 1 to 2^53 (booleans and floats,
        even ``1000.0``, are refused: the contract's integers are JSON integers).
    """
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int):
        got = "a boolean" if isinstance(ttl_ms, bool) else type(ttl_ms).__name__
        if isinstance(ttl_ms, float):
            got = f"the float {ttl_ms!r}"
        elif isinstance(ttl_ms, str):
            got = "a string"
        raise DeserializationError(
            f"ttl_ms must be an integer number of milliseconds from 1 to 2^53, got {got}"
        )
    if not 1 <= ttl_ms <= MAX_TTL_MS:
        raise DeserializationError(
            f"ttl_ms must be an integer number of milliseconds from 1 to 2^53, got {ttl_ms}"
        )
    return ttl_ms


def deadline_after(ttl_ms: int) -> int:
    """The absolute deadline ``ttl_ms`` from now."""
    return now_ms() + ttl_ms


def remaining_ms(deadline: int | None) -> int | None:
    """Milliseconds left before ``deadline`` (at least 1: a live entry has time left)."""
    return None if deadline is None else max(1, deadline - now_ms())

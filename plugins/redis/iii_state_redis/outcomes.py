"""What a failed command means, and whether it may be sent again (sync and async share this).

Three outcomes:

* **lost** - the command went out and the reply did not come back (``ReplyLost`` anywhere in
  the exception chain). A read is retried; a write raises
  :class:`~iii_state_core.UnknownOutcomeError` and is never resent.
* **not run** - the server certainly did not run it: no connection, a refused handshake,
  ``LOADING``, ``CLUSTERDOWN``, ``TRYAGAIN``, ``READONLY`` … Retried with backoff, writes too.
* **failed** - anything else (``WRONGTYPE``, ``OOM``, a wrong password): raised at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    ConnectionError,
    MovedError,
    ReadOnlyError,
    RedisClusterException,
    TimeoutError,
    TryAgainError,
)

from iii_state_core import BackendError, UnknownOutcomeError
from iii_state_core.retry import backoff

from .connections import ReplyLost

Outcome = Literal["lost", "not_run", "failed"]
Kind = Literal["read", "write"]

_NOT_RUN: Final = (
    BusyLoadingError, ClusterDownError, TryAgainError, ReadOnlyError, RedisClusterException,
    ConnectionError, TimeoutError,
)  # fmt: skip
_NEVER_RETRY: Final = (AuthenticationError, AuthorizationError)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def classify(exc: BaseException) -> Outcome:
    """:returns: ``lost``, ``not_run`` or ``failed`` (see the module docstring)."""
    chain = _chain(exc)
    # redis-py may raise a new error while handling ours (a Cluster refresh that fails too),
    # so a lost reply counts wherever it sits in the chain.
    if any(isinstance(e, ReplyLost) for e in chain):
        return "lost"
    if isinstance(exc, _NEVER_RETRY):
        return "failed"
    if isinstance(exc, _NOT_RUN):
        return "not_run"
    if isinstance(exc, ClusterError) and "TTL exhausted" in str(exc):
        # redis-py gave up following redirections (MOVED, ASK, TRYAGAIN): none of them ran.
        # TRYAGAIN lasts while a slot migrates and our multi-key scripts meet half-moved keys.
        return "not_run"
    return "failed"


def explain(exc: BaseException) -> str:
    """A short sentence for an error message; redis-py's texts hold addresses, not passwords."""
    if isinstance(exc, MovedError):
        return (
            "the server is a Redis Cluster node (it answered MOVED); set 'cluster: true' "
            "or leave it at \"auto\""
        )
    if "SELECT is not allowed in cluster mode" in str(exc):
        return "the server is a Redis Cluster node, which has only db 0; drop the db from redis_url"
    if isinstance(exc, AuthenticationError):
        return f"authentication failed ({exc}); check the user and password in redis_url"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before sending again what may be sent again."""

    retries: int
    base: float = 0.05
    cap: float = 1.0

    def delay(self, kind: Kind, exc: BaseException, attempt: int, what: str) -> float:
        """The pause before attempt ``attempt + 1``.

        :param attempt: how many attempts failed so far, minus one (0 after the first).
        :param what: the command, for the message (``HGET``, ``script write``).
        :raises UnknownOutcomeError: for a write whose reply was lost.
        :raises BackendError: when the command may not or need not be sent again.
        """
        outcome = classify(exc)
        if outcome == "lost" and kind == "write":
            raise UnknownOutcomeError(
                f"{what}: the command was sent but its reply was lost ({exc}); it may or may "
                f"not have been applied, and it was not retried"
            ) from exc
        if outcome == "failed" or attempt >= self.retries:
            tries = f" (after {attempt + 1} attempts)" if attempt else ""
            raise BackendError(f"{what} failed{tries}: {explain(exc)}") from exc
        # Full jitter: many clients reconnecting to a restarted server do not move in step.
        return backoff(attempt, base=self.base, cap=self.cap)

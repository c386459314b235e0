"""Optimistic writes: the one retry loop, with capped, jittered back-off, every store shares.

An optimistic write reads a version, computes, and writes only if the version is unchanged.
When another writer won the race it tries again, after a pause drawn uniformly from
``[0, min(cap, base * 2**attempt)]`` (full jitter: racing writers spread out instead of
colliding again in lock-step), and gives up with :class:`ConflictError` after a fixed number
of attempts, having written nothing.

The loop is a generator (:func:`optimistic`) so a sans-I/O caller (the core's plans, the redis
adapter's swap plan) yields its own "pause" request; :func:`retry` drives the same loop with
``time.sleep`` for plain synchronous code (the memcached adapter).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator
from typing import Any, Final, TypeVar

from .errors import ConflictError

#: Attempts before giving up (about 10 s of lost races at full back-off).
MAX_ATTEMPTS: Final = 400
BACKOFF_BASE: Final = 0.0005
BACKOFF_CAP: Final = 0.025

Y = TypeVar("Y")
R = TypeVar("R")


class Lost:
    """The type of :data:`LOST`."""

    def __repr__(self) -> str:
        return "LOST"


#: What an attempt returns when another writer changed the entry first: try again.
LOST: Final = Lost()


def backoff(attempt: int, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """The pause after failure number ``attempt`` (0-based), in seconds: full jitter, capped.

    Adapters retrying a transport failure (throttling, a reconnect) pass their own ``base``
    and ``cap`` so every back-off in the pack draws the same way.
    """
    return random.uniform(0, min(cap, base * 2 ** min(attempt, 16)))


def gave_up(attempts: int, failure: str = "", *, code: str | None = None) -> ConflictError:
    """The error of an exhausted budget.

    :param failure: the function's failure text (``Failed to update value``) when the caller
        knows it; adapters leave it out and the core adds it when it wraps their error.
    """
    text = (
        f"gave up after {attempts} attempts because other writers kept changing the entry; "
        "nothing was written, retry later"
    )
    return ConflictError(f"{failure}: {text}" if failure else text, code=code)


def optimistic(
    attempt: Callable[[int], Generator[Y, Any, R | Lost]],
    pause: Callable[[float], Y],
    *,
    attempts: int | None = None,
    retry_at_once: bool = False,
    failure: str = "",
    code: str | None = None,
    give_up: Callable[[int], Exception] | None = None,
) -> Generator[Y, Any, R]:
    """Run ``attempt(n)`` until it returns something other than :data:`LOST`.

    :param attempt: a generator function (it may yield the caller's own requests) given the
        attempt number; it returns the result, or :data:`LOST` after losing a race.
    :param pause: builds the request to yield for a pause of so many seconds.
    :param attempts: the budget (default :data:`MAX_ATTEMPTS`).
    :param retry_at_once: no pause after the first lost race (it was a stale hint, not contention).
    :param give_up: builds the error for an exhausted budget of so many attempts, for a function
        whose text differs (the default is :func:`gave_up` with ``failure`` and ``code``).
    :raises ConflictError: when every attempt lost.
    """
    budget = MAX_ATTEMPTS if attempts is None else attempts
    for n in range(budget):
        outcome = yield from attempt(n)
        if not isinstance(outcome, Lost):
            return outcome
        if n or not retry_at_once:
            yield pause(backoff(n))
    raise gave_up(budget, failure, code=code) if give_up is None else give_up(budget)


def _once(step: Callable[[], R | Lost]) -> Callable[[int], Generator[float, Any, R | Lost]]:
    def attempt(_n: int) -> Generator[float, Any, R | Lost]:
        return step()
        yield  # pragma: no cover - makes this a generator that never yields

    return attempt


def retry(
    step: Callable[[], R | Lost],
    *,
    attempts: int | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> R:
    """Call ``step()`` until it returns something other than :data:`LOST`, sleeping between.

    :raises ConflictError: when every attempt lost (its text names no function: the core adds it).
    """
    loop = optimistic(_once(step), float, attempts=attempts)
    try:
        while True:
            sleep(next(loop))
    except StopIteration as stop:
        result: R = stop.value
        return result

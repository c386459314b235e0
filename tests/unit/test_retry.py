"""The one optimistic-write helper: budget, back-off bounds, and the error it gives up with."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from iii_state_core import ConflictError
from iii_state_core.retry import BACKOFF_CAP, LOST, Lost, backoff, optimistic, retry


def test_retry_returns_the_first_result_that_is_not_lost_and_sleeps_between() -> None:
    outcomes = iter([LOST, LOST, "done"])
    pauses: list[float] = []
    assert retry(lambda: next(outcomes), sleep=pauses.append) == "done"
    assert len(pauses) == 2 and all(0 <= p <= BACKOFF_CAP for p in pauses)


def test_retry_gives_up_with_conflict_error_after_the_budget() -> None:
    calls: list[int] = []

    def step() -> Lost:
        calls.append(1)
        return LOST

    with pytest.raises(ConflictError, match="gave up after 7 attempts") as info:
        retry(step, attempts=7, sleep=lambda _s: None)
    assert len(calls) == 7 and "nothing was written" in str(info.value)


def test_backoff_is_jittered_and_capped() -> None:
    draws = [backoff(n) for n in range(40) for _ in range(20)]
    assert all(0 <= d <= BACKOFF_CAP for d in draws) and len(set(draws)) > 100
    assert max(backoff(0) for _ in range(200)) <= 0.0005


def test_the_generator_form_yields_the_callers_pause_and_can_retry_at_once() -> None:
    def attempt(n: int) -> Generator[str, Any, str | Lost]:
        reply = yield f"try {n}"
        return LOST if reply == "lost" else f"won on {n}"

    loop = optimistic(attempt, lambda s: f"pause {s:.0f}", retry_at_once=True)
    assert next(loop) == "try 0"
    assert loop.send("lost") == "try 1"  # no pause after the first lost race
    assert loop.send("lost").startswith("pause")
    assert next(loop) == "try 2"
    with pytest.raises(StopIteration) as stop:
        loop.send("ok")
    assert stop.value.value == "won on 2"


def test_the_generator_form_names_the_function_when_it_gives_up() -> None:
    def attempt(_n: int) -> Generator[str, Any, Lost]:
        yield "try"
        return LOST

    loop = optimistic(attempt, str, attempts=2, failure="Failed to update value", code="UPDATE_ERROR")
    with pytest.raises(ConflictError) as info:
        for _ in loop:
            pass
    assert info.value.code == "UPDATE_ERROR"
    assert str(info.value).startswith("Failed to update value: gave up after 2 attempts")

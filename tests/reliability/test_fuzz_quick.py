"""A short fuzz run: only documented errors, except for the known open limits."""

from __future__ import annotations

from bench.faults import fuzz
from bench.faults.campaign import new_failures
from bench.faults.limits import OPEN_LIMITS, match


def test_short_fuzz_finds_nothing_new() -> None:
    lines = fuzz.run(100)
    assert [line.tried > 0 for line in lines] == [True, True, True, True]  # requests, ops, stored, config
    assert new_failures(lines) == []


def test_open_limits_recognise_their_own_failures() -> None:
    for limit in OPEN_LIMITS:  # empty since the RecursionError limits were fixed
        assert match(" ".join(limit.pattern)) is limit
    assert match("trigger(cursor of JSON nested 1000): RecursionError: maximum recursion") is None
    assert match("trigger(x): TypeError: boom") is None

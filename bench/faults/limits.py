"""Open limits the campaign has found and that are not fixed yet: what, how to reproduce, where
the regression test is. A failure of a run whose text matches ``pattern`` is this limit, not a
new finding. When a limit is fixed, its strict-xfail test starts passing and fails: delete the
entry and the ``xfail`` mark together.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    title: str
    #: substrings of a failure text that identify this limit (all must appear)
    pattern: tuple[str, ...]
    where: str
    reproduction: str
    test: str
    fix: str


#: Both limits the first campaign found (RecursionError from a hostile cursor and from deeply
#: nested foreign bytes) are fixed; their regression tests live in
#: tests/reliability/test_fuzz_regressions.py.
OPEN_LIMITS: tuple[Limit, ...] = ()


def match(failure: str) -> Limit | None:
    for limit in OPEN_LIMITS:
        if all(p in failure for p in limit.pattern):
            return limit
    return None

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


OPEN_LIMITS: tuple[Limit, ...] = (
    Limit(
        title="A hostile list_entries cursor raises RecursionError instead of InvalidCursorError",
        pattern=("cursor", "RecursionError"),
        where="iii_state_core/operations.py `decode_cursor` catches ValueError/TypeError/UnicodeError "
        "around `json.loads`, but deeply nested JSON raises RecursionError",
        reproduction=(
            "import base64\n"
            "from iii_state_core import open_store\n"
            "store = open_store(adapter='kv')\n"
            "cursor = base64.urlsafe_b64encode(b'[' * 100_000).decode()\n"
            "store.list_entries('s', cursor)   # RecursionError, not InvalidCursorError"
        ),
        test="tests/reliability/test_fuzz_regressions.py::test_deeply_nested_cursor_is_an_invalid_cursor",
        fix="catch RecursionError too in `decode_cursor` (or refuse cursors longer than any this store "
        "hands out before decoding)",
    ),
    Limit(
        title="Deeply nested bytes left by a foreign writer raise RecursionError on read",
        pattern=("stored", "RecursionError"),
        where="iii_state_core/values.py `decode_stored` turns ValueError into InvalidValueError, "
        "but json.loads raises RecursionError for deeply nested input (`values.loads` already catches it)",
        reproduction=(
            "from iii_state_core import open_store\n"
            "store = open_store(adapter='kv')\n"
            "store.adapter.write('s', 'k', b'[' * 100_000)   # what another program could leave\n"
            "store.get('s', 'k')   # RecursionError, not InvalidValueError (GET_ERROR path)"
        ),
        test="tests/reliability/test_fuzz_regressions.py::test_deeply_nested_stored_bytes_are_invalid_value",
        fix="catch RecursionError in `decode_stored` as `loads` does",
    ),
)


def match(failure: str) -> Limit | None:
    for limit in OPEN_LIMITS:
        if all(p in failure for p in limit.pattern):
            return limit
    return None

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

#: What the campaign found and what was done about it, for the report's history section.
FIXED: tuple[tuple[Limit, str], ...] = (
    (
        Limit(
            title="A hostile list_entries cursor raised RecursionError instead of InvalidCursorError",
            pattern=("cursor", "RecursionError"),
            where="iii_state_core/operations.py `decode_cursor` caught ValueError/TypeError/UnicodeError "
            "around `json.loads`, but deeply nested JSON raises RecursionError",
            reproduction=(
                "import base64\n"
                "from iii_state_core import open_store\n"
                "store = open_store(adapter='kv')\n"
                "cursor = base64.urlsafe_b64encode(b'[' * 100_000).decode()\n"
                "store.list_entries('s', cursor)   # was RecursionError; now InvalidCursorError"
            ),
            test="tests/reliability/test_fuzz_regressions.py::test_deeply_nested_cursor_is_an_invalid_cursor",
            fix="RecursionError is caught in `decode_cursor`",
        ),
        "81f51d8",
    ),
    (
        Limit(
            title="Deeply nested bytes left by a foreign writer raised RecursionError on read",
            pattern=("stored", "RecursionError"),
            where="iii_state_core/values.py `decode_stored` turned ValueError into InvalidValueError, "
            "but json.loads raises RecursionError for deeply nested input",
            reproduction=(
                "from iii_state_core import open_store\n"
                "store = open_store(adapter='kv')\n"
                "store.adapter.write('s', 'k', b'[' * 100_000)   # what another program could leave\n"
                "store.get('s', 'k')   # was RecursionError; now StoredValueError (GET_ERROR)"
            ),
            test="tests/reliability/test_fuzz_regressions.py::test_deeply_nested_stored_bytes_are_a_stored_value_error",
            fix="RecursionError is caught in `decode_stored`",
        ),
        "81f51d8",
    ),
    (
        Limit(
            title="A config option set to null raised TypeError",
            pattern=("max_value_depth", "TypeError"),
            where="iii_state_core/options.py `Options.int` returned None for `name: null`, and "
            "config.py compared that None with the depth limit",
            reproduction=(
                "from iii_state_core import open_store\n"
                "open_store({'max_value_depth': None})   # was TypeError; now the default, 128"
            ),
            test="tests/unit/test_config_total.py::test_an_option_set_to_null_means_its_default",
            fix="`name: null` means the option's default in `Options.int/float/bool`",
        ),
        "a91a51d",
    ),
    (
        Limit(
            title="A config file of deeply nested brackets took seconds to refuse",
            pattern=("deep flow", "took"),
            where="PyYAML's scanner takes time quadratic in flow nesting (20,000 levels: about 6 s)",
            reproduction=(
                "open('c.yaml', 'wb').write(b'a: ' + b'[' * 20_000 + b']' * 20_000)\n"
                "from iii_state_core.config import load_file\n"
                "load_file('c.yaml')   # was ~6 s; now ConfigError at once"
            ),
            test="tests/unit/test_config_total.py::test_bad_config_files_are_one_clear_error_naming_the_file",
            fix="`config._parse_yaml` refuses brackets nested past 200 levels before PyYAML reads them",
        ),
        "a91a51d",
    ),
)


def match(failure: str) -> Limit | None:
    for limit in OPEN_LIMITS:
        if all(p in failure for p in limit.pattern):
            return limit
    return None

"""Every class of bug the suite has an area for is caught, by a named test, on every run.

One pytest subprocess runs all the adapters of ``broken_by_class`` (each on the few tests
that concern it plus a passing neighbour). A catch that happens on some runs only would tell an
author their adapter is fine: the races yield at every line and Hypothesis is derandomized so
that every run catches, and ``III_STATE_SELFTEST_REPEAT`` repeats the run to show it (CI: 1,
decision 0015; the issue's evidence: 10). Each run checks both modes: the full suite, and the
quick one (``iii-state conformance --quick``), which must still catch every adapter on the
tests it runs on smaller sizes (the others run as in the full suite).
"""

from __future__ import annotations

import json
import os

import pytest
from quick_mode import quick_catches, quick_selection, resized_in_quick_mode

HERE = os.path.dirname(os.path.abspath(__file__))
REPEAT = int(os.environ.get("III_STATE_SELFTEST_REPEAT", "1"))

pytest_plugins = ["pytester"]

# adapter -> (config, tests that must fail, -k selection of its run)
EXPECTED: dict[str, tuple[dict[str, str], set[str], str]] = {
    # 1. threads
    "broken-unlocked-write-if": (
        {},
        {
            "test_threads_incrementing_one_counter_lose_nothing",
            "test_threads_racing_compare_and_set_have_exactly_one_winner",
        },
        "threads_incrementing or threads_racing or test_set_returns",
    ),
    "broken-two-step-write": (
        {},
        {"test_threads_setting_one_key_return_an_unbroken_chain"},
        "threads_setting or test_set_returns",
    ),
    "broken-two-step-remove": (
        {},
        {"test_threads_deleting_one_key_get_its_value_exactly_once"},
        "threads_deleting_one_key or test_delete",
    ),
    # 2. tokens
    "broken-per-key-versions": (
        {},
        {
            "test_token_is_dead_after_delete_and_recreate_with_other_bytes",
            "test_conditional_writes_follow_the_token_rules",
        },
        "TokenTests",
    ),
    "broken-deleted-matches-any-token": (
        {},
        {"test_token_is_dead_once_the_entry_is_deleted", "test_conditional_writes_follow_the_token_rules"},
        "TokenTests",
    ),
    "broken-missing-token-writes-anyway": (
        {},
        {
            "test_missing_token_means_only_if_still_missing",
            "test_token_of_a_missing_entry_is_dead_while_it_exists",
        },
        "TokenTests",
    ),
    "broken-modify-returns-first-read": (
        {},
        {"test_native_modify_returns_the_attempt_it_wrote"},
        "TokenTests or atomic_update_declaration",
    ),
    # 3. durable and shared
    "broken-saves-at-close": (
        {"file_path": "{tmp}"},
        {"test_acknowledged_writes_survive_the_writer_process_being_killed"},
        "killed or durable_store_keeps or test_set_returns",
    ),
    "broken-buffered-log": (
        {"file_path": "{tmp}"},
        {"test_acknowledged_writes_survive_the_writer_process_being_killed"},
        "killed or durable_store_keeps or test_set_returns",
    ),
    "broken-caches-reads": (
        {"file_path": "{tmp}"},
        {"test_another_process_writing_between_two_reads_is_seen"},
        "between_two_reads or shared_store_is_seen or test_set_returns",
    ),
    "broken-caches-scopes": (
        {"file_path": "{tmp}"},
        {"test_another_process_writing_between_two_reads_is_seen"},
        "between_two_reads or shared_store_is_seen or test_set_returns",
    ),
    # 4. names
    "broken-case-folding-names": (
        {},
        {
            "test_case_and_normalisation_variants_are_distinct_keys",
            "test_case_and_normalisation_variants_are_distinct_scopes",
            "test_generated_names_are_distinct_entries",
        },
        "NameVariantTests",
    ),
    "broken-normalised-names": (
        {},
        {
            "test_case_and_normalisation_variants_are_distinct_keys",
            "test_case_and_normalisation_variants_are_distinct_scopes",
            "test_generated_names_are_distinct_entries",
        },
        "NameVariantTests",
    ),
    "broken-truncated-names": (
        {},
        {"test_keys_sharing_a_long_prefix_are_distinct", "test_scopes_sharing_a_long_prefix_are_distinct"},
        "NameVariantTests",
    ),
    "broken-utf16-sorted-listing": (
        {},
        {"test_non_bmp_keys_walk_in_one_consistent_order"},
        "NameVariantTests",
    ),
    "broken-read-registers-scope": (
        {},
        {"test_reads_and_misses_on_an_unknown_scope_leave_list_groups_alone"},
        "NameVariantTests",
    ),
    # 5. values
    "broken-numbers-lose-negative-zero": (
        {},
        {
            "test_value_round_trips_exactly[float-negative-zero]",
            "test_value_round_trips_exactly[negative-zero-nested]",
            "test_generated_values_round_trip_exactly",
        },
        "value_round_trips or generated_values or unnormalised",
    ),
    "broken-normalised-text": (
        {},
        {
            "test_unicode_strings_and_object_keys_are_stored_unnormalised",
            "test_generated_values_round_trip_exactly",
        },
        "value_round_trips or generated_values or unnormalised",
    ),
    # 6. paths never taken: the async twin, listing under writes, secrets
    "broken-twin-ignores-token": (
        {},
        {"test_async_tasks_racing_compare_and_set_have_exactly_one_winner"},
        "AsyncStoreTests",
    ),
    "broken-twin-forgets-removed": (
        {},
        {
            "test_async_store_round_trips_every_function",
            "test_async_deletes_racing_get_the_value_exactly_once",
        },
        "AsyncStoreTests",
    ),
    "broken-offset-cursor": (
        {},
        {"test_list_entries_walk_while_writes_land_between_pages"},
        "list_entries_walk",
    ),
    "broken-inclusive-cursor": (
        {},
        {"test_list_entries_walk_while_writes_land_between_pages"},
        "list_entries_walk",
    ),
    "broken-undeclared-password": (
        {"password": "hunter2-very-secret"},
        {"test_config_options_that_hold_a_secret_are_declared_and_never_shown"},
        "secret or describe_and_repr",
    ),
    "broken-url-in-describe": (
        {"url": "mem://admin:s3cret-pw@localhost:1"},
        {"test_config_options_that_hold_a_secret_are_declared_and_never_shown"},
        "secret or describe_and_repr",
    ),
}

_HEADER = """
import json, sys
sys.path.insert(0, {here!r})
import pytest
import broken_by_class
from iii_state_conformance import StateStoreSuite
from iii_state_core import open_store
from iii_state_core.plugins import Registry
"""

_CLASS = """

class {cls}(StateStoreSuite):
    quick = {quick}

    @pytest.fixture
    def store(self, tmp_path):
        config = json.loads({config!r}.replace("{{tmp}}", str(tmp_path).replace("\\\\", "/")))
        registry = Registry(extra_plugins=[broken_by_class])
        with open_store(adapter={name!r}, adapter_config=config, registry=registry) as store:
            yield store
"""


def _full(name: str) -> str:
    """The class running adapter ``name`` in full mode."""
    return "Test_" + name.replace("-", "_")


def _quick(name: str) -> str:
    """The class running it in quick mode (no class name is a substring of another's: ``-k``)."""
    return "TestQuick_" + name.replace("-", "_")


def _test_file(adapters: dict[str, dict[str, str]], quick: set[str]) -> str:
    """A class per adapter, and a quick-mode one per adapter named in ``quick``."""
    body = _HEADER.format(here=HERE)
    for name, config in adapters.items():
        body += _CLASS.format(cls=_full(name), config=json.dumps(config), name=name, quick=False)
        if name in quick:
            body += _CLASS.format(cls=_quick(name), config=json.dumps(config), name=name, quick=True)
    return body


def _selection() -> str:
    full = [f"({_full(name)} and ({sel}))" for name, (_, _, sel) in EXPECTED.items()]
    quick = [
        f"({_quick(name)} and ({quick_selection(quick_catches(must_fail))}))"
        for name, (_, must_fail, _) in EXPECTED.items()
        if quick_catches(must_fail)
    ]
    return " or ".join(full + quick)


def _failures(result: pytest.RunResult) -> dict[str, set[str]]:
    """``{class name: {failed test ids}}`` from the ``-rf`` summary."""
    failed: dict[str, set[str]] = {}
    for line in result.outlines:
        if line.startswith("FAILED ") and "::" in line:
            parts = line.split(" ")[1].split("::")
            failed.setdefault(parts[1], set()).add(parts[2])
    return failed


@pytest.mark.parametrize("run", range(REPEAT))
def test_every_broken_adapter_fails_its_named_tests(pytester: pytest.Pytester, run: int) -> None:
    quick = {name for name, (_, must_fail, _) in EXPECTED.items() if quick_catches(must_fail)}
    pytester.makepyfile(test_broken=_test_file({name: cfg for name, (cfg, _, _) in EXPECTED.items()}, quick))
    result = pytester.runpytest_subprocess(
        "-q", "-rf", "-p", "no:cacheprovider", "-p", "iii_state_conformance.plugin", "-k", _selection()
    )
    failed = _failures(result)
    missed = []
    for name, (_, must_fail, _) in EXPECTED.items():
        lacking = must_fail - failed.get(_full(name), set())
        if lacking:
            missed.append(f"{name}: not caught by {sorted(lacking)}")
        lacking = quick_catches(must_fail) - failed.get(_quick(name), set())
        if lacking:
            missed.append(f"{name} in quick mode: not caught by {sorted(lacking)}")
    assert not missed, f"run {run}: " + "; ".join(missed)
    passed = result.parseoutcomes().get("passed", 0)
    assert passed >= len(EXPECTED), f"only {passed} tests passed: the broken adapters are too broken to judge"


SOUND = {
    "template": ("template", {"label": "sound"}),
    "kv_memory": ("kv", {"store_method": "in_memory"}),
    "kv_file": ("kv", {"store_method": "file_based", "file_path": "{tmp}"}),
}


def test_sound_adapters_pass_every_selection(pytester: pytest.Pytester) -> None:
    """The same tests pass on the sound adapters: each failure above is its adapter's bug."""
    body = _HEADER.format(here=HERE)
    for ident, (name, config) in SOUND.items():
        body += _CLASS.format(cls=_full(ident), config=json.dumps(config), name=name, quick=False)
        body += _CLASS.format(cls=_quick(ident), config=json.dumps(config), name=name, quick=True)
    pytester.makepyfile(test_sound=body)
    any_area = " or ".join(f"({sel})" for _, _, sel in EXPECTED.values())
    resized = {t for _, must_fail, _ in EXPECTED.values() for t in must_fail if resized_in_quick_mode(t)}
    # (-k ignores case: "Test_" would match every test function)
    selection = f"(not TestQuick_ and ({any_area})) or (TestQuick_ and ({quick_selection(resized)}))"
    result = pytester.runpytest_subprocess(
        "-q", "-rfs", "-p", "no:cacheprovider", "-p", "iii_state_conformance.plugin", "-k", selection
    )
    outcomes = result.parseoutcomes()
    failed = [line for line in result.outlines if line.startswith("FAILED")]
    assert outcomes.get("failed", 0) == 0 and not failed, failed
    assert outcomes.get("passed", 0) >= 3 * (40 + len(resized)), outcomes

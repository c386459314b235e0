"""The suite tests itself: each broken adapter must fail exactly the tests meant to catch it,
in the full suite and, on the tests a quick run resizes, in quick mode too."""

from __future__ import annotations

import os
import sys

import pytest
from quick_mode import quick_catches, quick_selection

HERE = os.path.dirname(os.path.abspath(__file__))

pytest_plugins = ["pytester"]

_TEST_FILE = """
import sys
sys.path.insert(0, {here!r})
import pytest
import broken_adapters
from iii_state_conformance import StateStoreSuite
from iii_state_core import open_store
from iii_state_core.plugins import Registry


class TestBroken(StateStoreSuite):
    @pytest.fixture
    def store(self, tmp_path):
        registry = Registry(extra_plugins=[broken_adapters])
        config = {{"file_path": str(tmp_path / "db")}} if {name!r}.startswith("broken-non-atomic") else {{}}
        with open_store(adapter={name!r}, adapter_config=config, registry=registry) as store:
            yield store


class TestQuickBroken(TestBroken):
    quick = True
"""

# adapter -> (tests that must fail, -k selection to keep the run short)
EXPECTED = {
    "broken-non-atomic": (
        {
            "test_concurrent_increments_lose_nothing",
            "test_racing_compare_and_set_has_exactly_one_winner",
        },
        "concurrent_increments or racing or test_set_returns",
    ),
    "broken-non-atomic-set": (
        {"test_concurrent_sets_return_an_unbroken_chain"},
        "concurrent_sets or test_set_returns or test_delete",
    ),
    "broken-read-then-delete": (
        {"test_concurrent_deletes_return_exactly_what_they_removed"},
        "concurrent_deletes or test_delete or test_set_returns",
    ),
    "broken-non-atomic-transact": (
        {"test_transfers_in_processes_keep_every_balance_exact"},
        "transfers_in or test_set_returns",
    ),
    "broken-colliding-keys": (
        {"test_separator_lookalikes_do_not_collide", "test_hostile_scopes_are_distinct_scopes"},
        "hostile or separator or empty_scope or test_set_returns",
    ),
    "broken-drops-second-page": (
        {"test_list_entries_pages_through_a_scope", "test_list_entries_walk_without_writers"},
        "list_entries or test_list_returns or test_list_keys",
    ),
    "broken-keeps-emptied-scopes": (
        {
            "test_list_groups_is_sorted_deduplicated_and_non_empty",
            "test_list_groups_drops_a_scope_when_its_last_key_goes",
        },
        "list_groups or test_delete or test_set_returns",
    ),
    "broken-empty-array": (
        {
            "test_value_round_trips_exactly[empty-array]",
            "test_value_round_trips_exactly[nested-empties]",
            "test_update_op_rule[empty_containers_are_kept]",
        },
        "test_value_round_trips or test_set_returns or empty_containers or test_get_of_missing",
    ),
}


def _failed_names(result: pytest.RunResult, cls: str) -> set[str]:
    names = set()
    for line in result.outlines:
        if line.startswith("FAILED ") and f"::{cls}::" in line:
            names.add(line.split("::")[-1].split(" ")[0])
    return names


@pytest.mark.parametrize("adapter", sorted(EXPECTED))
def test_suite_fails_the_named_tests(pytester: pytest.Pytester, adapter: str) -> None:
    must_fail, selection = EXPECTED[adapter]
    pytester.makepyfile(test_broken=_TEST_FILE.format(here=HERE, name=adapter))
    quick_must_fail = quick_catches(must_fail)
    # the quick class runs the catching tests a quick run resizes (the others run as in full)
    quick = f" or (TestQuickBroken and ({quick_selection(quick_must_fail)}))" if quick_must_fail else ""
    result = pytester.runpytest_subprocess(
        "-q", "-rf", "-p", "no:cacheprovider", "-k", f"(TestBroken and ({selection})){quick}"
    )
    failed = _failed_names(result, "TestBroken")
    missed = must_fail - failed
    assert not missed, (
        f"{adapter}: the suite did not catch it in {sorted(missed)}; it failed {sorted(failed)}"
    )
    failed = _failed_names(result, "TestQuickBroken")
    missed = quick_must_fail - failed
    assert not missed, (
        f"{adapter}: a quick run did not catch it in {sorted(missed)}; it failed {sorted(failed)}"
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) > 0, (
        "the selection ran no passing test: the broken adapter is too broken to judge"
    )


def test_suite_passes_a_correct_adapter_on_the_same_selection(pytester: pytest.Pytester) -> None:
    """The same selections against the sound kv adapter pass: the failures above are the bugs'.

    On quick sizes: the same tests at full sizes on the same adapter are plugins/kvfile's
    TestKvFileBased, in every CI run."""
    pytester.makepyfile(
        test_sound="""
import pytest
from iii_state_conformance import StateStoreSuite
from iii_state_core import open_store

class TestSound(StateStoreSuite):
    quick = True

    @pytest.fixture
    def store(self, tmp_path):
        config = {"store_method": "file_based", "file_path": str(tmp_path)}
        with open_store(adapter="kv", adapter_config=config) as s:
            yield s
"""
    )
    selection = " or ".join(f"({sel})" for _, sel in EXPECTED.values())
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "-k", selection)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("passed", 0) >= 40, outcomes


class _Guarded:
    pass


def test_guard_catches_a_dropped_or_overridden_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_cheat="""
import pytest
from iii_state_conformance import StateStoreSuite
from iii_state_core import open_store

class TestCheat(StateStoreSuite):
    test_concurrent_increments_lose_nothing = None

    @pytest.fixture
    def store(self):
        with open_store(adapter="kv", adapter_config={"store_method": "in_memory"}) as s:
            yield s

    def test_delete_returns_the_bare_removed_value(self, store, scope):
        pass

    @pytest.mark.xfail(reason="documented limitation")
    def test_list_keys_returns_keys(self, store, scope):
        assert False
"""
    )
    result = pytester.runpytest_subprocess("-q", "-rf", "-p", "no:cacheprovider", "-k", "DO_NOT_OVERRIDE")
    result.assert_outcomes(failed=1)
    text = "\n".join(result.outlines)
    assert "test_concurrent_increments_lose_nothing was removed" in text
    assert "test_delete_returns_the_bare_removed_value was overridden" in text
    assert "test_list_keys_returns_keys" not in text.split("DO_NOT_OVERRIDE", 1)[-1]


def test_cli_conformance_exit_codes(pytester: pytest.Pytester, tmp_path: object) -> None:
    """``iii-state conformance`` exits 0 on kv and non-zero on a broken adapter."""
    import subprocess

    exe = os.path.join(os.path.dirname(sys.executable), "iii-state")
    env = {**os.environ, "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}
    ok = subprocess.run(
        [exe, "conformance", "--adapter", "kv", "--quick", "-k", "FunctionTests"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert "conformance: PASS" in ok.stdout and "functions (contract § Functions)" in ok.stdout
    bad = subprocess.run(
        [
            exe,
            "conformance",
            "--adapter",
            "broken-empty-array",
            "--plugin",
            "broken_adapters",
            "--quick",
            "-k",
            "ValueTests",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert bad.returncode == 1, bad.stdout[-2000:] + bad.stderr[-2000:]
    assert "conformance: FAIL" in bad.stdout

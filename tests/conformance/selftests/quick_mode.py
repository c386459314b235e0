"""Which suite tests a quick run (``iii-state conformance --quick``) changes, for the selftests
that check the broken adapters are caught in both modes.

A quick run deselects the tests that open the store in other processes and runs some others
on smaller sizes (they call ``self.sized``); every other test runs exactly as in the full suite,
so only the resized ones need checking again in quick mode.
"""

from __future__ import annotations

import inspect

from iii_state_conformance import StateStoreSuite


def resized_in_quick_mode(test_id: str) -> bool:
    """Whether a quick run runs this test on smaller sizes (not when it takes ``spec``: quick
    mode deselects those with ``-k "not runs_processes"``)."""
    function = getattr(StateStoreSuite, test_id.split("[")[0])
    if "spec" in inspect.signature(function).parameters:
        return False
    return "self.sized(" in inspect.getsource(function)


def quick_catches(must_fail: set[str]) -> set[str]:
    """The tests of ``must_fail`` a quick run resizes, which must fail there too."""
    return {t for t in must_fail if resized_in_quick_mode(t)}


def quick_selection(tests: set[str]) -> str:
    """A ``-k`` expression naming these tests."""
    return " or ".join(sorted(tests))

"""Which suite tests a quick run (``iii-state conformance --quick``) keeps, for the selftests
that check the broken adapters are caught in both modes."""

from __future__ import annotations

import inspect

from iii_state_conformance import StateStoreSuite


def runs_in_quick_mode(test_id: str) -> bool:
    """Not when the test opens the store in other processes (it takes ``spec``): quick mode
    deselects those with ``-k "not runs_processes"``."""
    function = getattr(StateStoreSuite, test_id.split("[")[0])
    return "spec" not in inspect.signature(function).parameters


def quick_catches(must_fail: set[str]) -> set[str]:
    """The tests of ``must_fail`` a quick run still runs, so must still fail."""
    return {t for t in must_fail if runs_in_quick_mode(t)}

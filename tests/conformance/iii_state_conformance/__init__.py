"""The iii-state contract (docs/contract.md) as an installable pytest suite.

A third party's whole conformance file::

    import pytest
    from iii_state_conformance import StateStoreSuite

    class TestMyAdapter(StateStoreSuite):
        @pytest.fixture
        def store(self):
            with open_store(adapter="mine", adapter_config={...}) as store:
                yield store
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

# Before the suite modules are imported, so pytest rewrites their asserts into useful diffs.
pytest.register_assert_rewrite("iii_state_conformance.suite", "iii_state_conformance.checks")

if TYPE_CHECKING:
    from .suite import StateStoreSuite

__all__ = ["StateStoreSuite"]


def __getattr__(name: str) -> Any:
    if name == "StateStoreSuite":
        from .suite import StateStoreSuite

        return StateStoreSuite
    raise AttributeError(name)

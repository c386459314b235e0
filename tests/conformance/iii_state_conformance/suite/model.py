"""A Hypothesis state machine: random set/update/delete/compare-and-set/list against a dict model."""

from __future__ import annotations

import secrets
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from iii_state_core import StateStore
from iii_state_core.update_ops import apply_ops, parse_ops
from iii_state_core.values import copy_json, same_json

from ..checks import shown, strict_equal
from .base import Sized

KEYS = st.sampled_from(["a", "b", "", "a:b", "😀", "x" * 300])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(["n", "s", "l", "o", "", "x.y"])
OPS = st.lists(
    st.one_of(
        st.builds(lambda p, v: {"type": "set", "path": p, "value": v}, FIELDS, VALUES),
        st.builds(
            lambda p, v: {"type": "merge", "path": p, "value": v},
            st.sampled_from([None, "o", ["o", "p"]]),
            st.dictionaries(st.text(max_size=4), VALUES, max_size=3),
        ),
        st.builds(
            lambda p, b: {"type": "increment", "path": p, "by": b},
            FIELDS,
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
        ),
        st.builds(lambda p, b: {"type": "decrement", "path": p, "by": b}, FIELDS, st.integers(-5, 5)),
        st.builds(
            lambda p, v: {"type": "append", "path": p, "value": v},
            st.sampled_from([None, "l", "s", ["o", "l"]]),
            VALUES,
        ),
        st.builds(lambda p: {"type": "remove", "path": p}, FIELDS),
    ),
    max_size=4,
)
_ABSENT = object()


class _StoreMachine(RuleBasedStateMachine):
    store: StateStore
    scope: str

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, Any] = {}

    def _old(self, key: str) -> Any:
        return copy_json(self.model[key]) if key in self.model else None

    @rule(key=KEYS, value=VALUES)
    def set_value(self, key: str, value: Any) -> None:
        result = self.store.set(self.scope, key, value)
        assert strict_equal(result.old_value, self._old(key))
        self.model[key] = copy_json(value)

    @rule(key=KEYS, ops=OPS)
    def update(self, key: str, ops: list[dict[str, Any]]) -> None:
        missing = key not in self.model
        want, errors = apply_ops(self._old(key), missing, parse_ops(ops, max_depth=128))
        result = self.store.update(self.scope, key, ops)
        assert strict_equal(result.old_value, self._old(key))
        assert strict_equal(result.new_value, want), f"{shown(result.new_value)} != {shown(want)}"
        assert [(e.op_index, e.code) for e in result.errors] == [(e.op_index, e.code) for e in errors]
        self.model[key] = want

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        assert strict_equal(self.store.delete(self.scope, key), self._old(key))
        self.model.pop(key, None)

    @rule(key=KEYS, expect_current=st.booleans(), other=VALUES, new=VALUES)
    def compare_and_set(self, key: str, expect_current: bool, other: Any, new: Any) -> None:
        expected = self._old(key) if (expect_current and key in self.model) else other
        result = self.store.compare_and_set(self.scope, key, expected, new)
        stored = self.model.get(key)
        if expected is None:  # expects absent, and a stored null counts as absent
            matches = stored is None
        else:  # the contract's CAS comparison, not strict_equal
            matches = key in self.model and same_json(stored, expected)
        assert result.swapped is matches, (key, stored, expected, result)
        if matches:
            self.model[key] = copy_json(new)
        else:
            assert strict_equal(result.current, stored)

    @rule(key=KEYS, new=VALUES)
    def create_only(self, key: str, new: Any) -> None:
        result = self.store.compare_and_set(self.scope, key, None, new)
        assert result.swapped is (self.model.get(key) is None)
        if result.swapped:
            self.model[key] = copy_json(new)

    @invariant()
    def store_matches_model(self) -> None:
        keys = sorted(self.store.list_keys(self.scope))
        assert keys == sorted(self.model)
        for key in keys:
            assert strict_equal(self.store.get(self.scope, key), self.model[key])
        values = self.store.list(self.scope)
        assert len(values) == len(self.model)


class ModelTests(Sized):
    #: Subclasses may raise this for a longer run (the fault campaign does).
    model_examples = 25

    def test_random_operations_match_a_dict_model(self, store: StateStore, make_scope: Any) -> None:
        def build() -> _StoreMachine:
            machine = _StoreMachine()
            machine.store = store
            machine.scope = make_scope(f"-model-{secrets.token_hex(3)}")
            return machine

        run_state_machine_as_test(
            build,  # type: ignore[arg-type]  # any factory of machines works
            settings=settings(
                max_examples=self.sized(self.model_examples, 4),
                stateful_step_count=self.sized(25, 15),
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            ),
        )

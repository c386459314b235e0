"""Two store objects opened over one config in one process are one store, not two."""

from __future__ import annotations

from iii_state_core import StateStore

from ..processes import StoreSpec


class StoreObjectTests:
    def test_two_store_objects_over_one_config_see_each_others_writes(
        self, store: StateStore, spec: StoreSpec, scope: str
    ) -> None:
        """A program may open the same config twice (two modules, a pool): every write through
        one object is read by the other at once, and atomic calls stay atomic across them."""
        with spec.open() as other:
            store.set(scope, "a", {"n": 1})
            assert other.get(scope, "a") == {"n": 1}
            updated = other.update(scope, "a", [{"type": "increment", "path": "n", "by": 1}])
            assert updated.old_value == {"n": 1} and store.get(scope, "a") == {"n": 2}
            assert not other.compare_and_set(scope, "a", {"n": 1}, 0).swapped
            assert store.compare_and_set(scope, "a", {"n": 2}, 3).swapped
            assert other.set(scope, "b", []).old_value is None
            assert sorted(store.list_keys(scope)) == ["a", "b"] == sorted(other.list_keys(scope))
            assert scope in other.list_groups()
            assert store.delete(scope, "a") == 3
            assert other.get(scope, "a") is None and other.delete(scope, "b") == []
            assert store.list_keys(scope) == []

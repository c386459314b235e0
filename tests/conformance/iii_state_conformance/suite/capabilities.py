"""Declared capabilities, checked both ways: what is declared works; what is not is refused."""

from __future__ import annotations

from typing import Any

import pytest

from iii_state_core import Capabilities, StateStore

from ..processes import StoreSpec


class CapabilityTests:
    def test_capabilities_are_declared_as_typed_data_on_the_class(self, store: StateStore) -> None:
        caps = type(store.adapter).capabilities
        assert isinstance(caps, Capabilities)
        for name in ("max_scope_bytes", "max_key_bytes", "max_value_bytes"):
            value = getattr(caps, name)
            assert value is None or (isinstance(value, int) and value > 0), f"{name}={value!r}"
        assert caps.atomic_update in ("native", "emulated")
        assert isinstance(store.adapter.name, str) and store.adapter.name

    def test_atomic_update_declaration_matches_the_adapter(
        self, store: StateStore, scope: str, caps: Any
    ) -> None:
        """``native`` must implement ``modify``; ``emulated`` must leave it to the core's loop."""
        calls: list[Any] = []

        def change(old: bytes | None) -> bytes:
            calls.append(old)
            return b'{"modified":true}'

        result = store.adapter.modify(scope, "m", change)
        if caps.atomic_update == "native":
            assert result is not None, "atomic_update='native' is declared but modify() returned None"
            assert result == (None, b'{"modified":true}') and calls
            assert store.get(scope, "m") == {"modified": True}
        else:
            assert result is None, "modify() did the work, yet atomic_update='emulated' is declared"
            assert not calls and store.get(scope, "m") is None

    def test_durable_store_keeps_data_across_reopen(self, store: StateStore, scope: str, caps: Any) -> None:
        spec = StoreSpec.of(store)
        if not caps.durable:
            pytest.skip(f"{store.adapter.name} does not declare durable=True")
        if spec is None:
            pytest.skip("the store was not opened with open_store(); cannot reopen it")
        with spec.open() as writer:
            writer.set(scope, "kept", {"v": [1, 2]})
        with spec.open() as reader:
            assert reader.get(scope, "kept") == {"v": [1, 2]}

    def test_shared_store_is_seen_by_another_process(
        self, store: StateStore, scope: str, spec: StoreSpec
    ) -> None:
        from .. import processes

        store.set(scope, "seen", {"from": "parent"})
        (got,) = processes.run_processes(spec, processes.reopen_and_read, [(scope, "seen")])
        assert got == {"from": "parent"}

    def test_adapter_describe_and_repr_are_plain(self, store: StateStore) -> None:
        text = f"{store.adapter.describe()} {store!r} {store.adapter!r}"
        for secret in store.adapter.secrets():
            if secret:
                assert secret not in text, "a secret appears in describe() or a repr"

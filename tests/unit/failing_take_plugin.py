"""A plugin for the sweeper process tests (importable by name, so a sweeper process loads it too):
the kv file store under another name, whose ``take_expired`` fails while the file its config
names exists, with the config's password in the error (which must never be logged)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from iii_state_kvfile.file_store import KvFileStore

from iii_state_core import Adapter, hookimpl
from iii_state_core.adapter import Expired


class FailingTakeStore(KvFileStore):
    name = "kv-failing-take"
    _password = ""
    _fail_while = ""

    @classmethod
    def open(cls, config: Mapping[str, Any]) -> Adapter:
        rest = dict(config)
        password, fail_while = rest.pop("password"), rest.pop("fail_while")
        store = super().open(rest)
        assert isinstance(store, FailingTakeStore)
        store._password, store._fail_while = password, fail_while
        return store

    def secrets(self) -> list[str]:
        return [self._password]

    def take_expired(self, limit: int = 1000) -> list[Expired]:
        if os.path.exists(self._fail_while):
            raise RuntimeError(f"take refused (password {self._password})")
        return super().take_expired(limit)


@hookimpl
def iii_state_register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(FailingTakeStore)

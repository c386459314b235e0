"""Deliberately broken adapters: the suite must catch each one in the tests named for it.

Registered as a plugin module (``Registry(extra_plugins=[broken_adapters])``), never installed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

from iii_state_kvfile import KvFileStore, KvMemoryStore

from iii_state_core import Adapter, Capabilities, hookimpl
from iii_state_core.adapter import Page, Token


class NonAtomicUpdate(KvFileStore):
    """Read-modify-write without atomicity: ``write_if`` ignores the token."""

    name = "broken-non-atomic"
    capabilities = Capabilities(durable=True, shared=True, atomic_update="emulated", ordered_listing=True)

    @classmethod
    def open(cls, config: Any) -> Adapter:
        return cls(config.get("file_path") or tempfile.mkdtemp(prefix="broken-"))

    def modify(self, scope: str, key: str, change: Callable[[bytes | None], bytes]) -> None:
        return None

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        os.sched_yield()  # widen the window between the read and this write
        KvFileStore.write(self, scope, key, data)
        return True


class NonAtomicSet(NonAtomicUpdate):
    """``write`` reads the old value, then writes: two writers can both replace the same value."""

    name = "broken-non-atomic-set"

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        old = self.read(scope, key)
        os.sched_yield()
        super().write(scope, key, data)
        return old

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        return KvFileStore.write_if(self, scope, key, data, token)


class ReadThenDelete(NonAtomicUpdate):
    """The iii engine's old delete: read the value, then delete whatever is there by then."""

    name = "broken-read-then-delete"

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        return KvFileStore.write_if(self, scope, key, data, token)

    def remove(self, scope: str, key: str) -> bytes | None:
        old = self.read(scope, key)
        os.sched_yield()
        KvFileStore.remove(self, scope, key)
        return old


class PiecemealTransactions(NonAtomicUpdate):
    """``write_many_if`` applies each write on its own: one that finds its entry changed leaves the
    earlier ones applied (a half-applied transfer), and the core then retries the whole."""

    name = "broken-non-atomic-transact"
    capabilities = Capabilities(
        durable=True, shared=True, atomic_update="emulated", ordered_listing=True, transactions=True
    )

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        return KvFileStore.write_if(self, scope, key, data, token)

    def modify_many(self, entries: Any, change: Any) -> None:
        return None  # the core reads, then calls the piecemeal write_many_if below

    def write_many_if(self, checks: Any, writes: Any) -> bool:
        tokens = {(scope, key): token for scope, key, token in checks}
        for scope, key, data, _expires in writes:
            os.sched_yield()
            if data is None:
                KvFileStore.remove(self, scope, key)
            elif not KvFileStore.write_if(self, scope, key, data, tokens[(scope, key)]):
                return False
        return True


class _Memory(KvMemoryStore):
    @classmethod
    def open(cls, config: Any) -> Adapter:
        return cls()


class CollidingKeys(_Memory):
    """Joins scope and key with ':' and splits at the first ':', so a:b/c and a/b:c collide."""

    name = "broken-colliding-keys"

    @staticmethod
    def _map(scope: str, key: str) -> tuple[str, str]:
        head, _, tail = f"{scope}:{key}".partition(":")
        return head, tail

    def read(self, scope: str, key: str) -> bytes | None:
        return super().read(*self._map(scope, key))

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        return super().write(*self._map(scope, key), data)

    def remove(self, scope: str, key: str) -> bytes | None:
        return super().remove(*self._map(scope, key))

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        return super().write_if(*self._map(scope, key), data, token)

    def modify(
        self, scope: str, key: str, change: Callable[[bytes | None], bytes]
    ) -> tuple[bytes | None, bytes]:
        return super().modify(*self._map(scope, key), change)


class DropsSecondPage(_Memory):
    """A listing that skips its second page."""

    name = "broken-drops-second-page"

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        number, inner = (
            (0, None) if cursor is None else (int(cursor.partition("|")[0]), cursor.partition("|")[2])
        )
        page, following = super().scan(scope, inner, limit)
        if number == 1:  # this is the second page: drop it and hand out the third instead
            if following is None:
                return [], None
            page, following = super().scan(scope, following, limit)
        return page, (None if following is None else f"{number + 1}|{following}")


class FileStoreHidesAnEntry(KvFileStore):
    """A file store whose listing leaves out the last entry of every page: whoever cleans up by
    listing misses entries."""

    name = "broken-file-hides-an-entry"
    capabilities = Capabilities(durable=True, shared=True, atomic_update="native", ordered_listing=True)

    @classmethod
    def open(cls, config: Any) -> Adapter:
        return cls(config["file_path"])

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        page, following = KvFileStore.scan(self, scope, cursor, limit)
        return page[:-1], following


class KeepsEmptiedScopes(_Memory):
    """``list_groups`` keeps scopes whose last key was deleted."""

    name = "broken-keeps-emptied-scopes"

    def remove(self, scope: str, key: str) -> bytes | None:
        with self._lock:
            return self._drop(scope, key, keep_empty_scope=True)

    def list_scopes(self) -> list[str]:
        with self._lock:
            return list(self._scopes)


class EmptyArrayBecomesObject(_Memory):
    """A value codec that turns ``[]`` into ``{}`` (Lua cjson's classic bug)."""

    name = "broken-empty-array"

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        return super().write(scope, key, data.replace(b"[]", b"{}"))


BROKEN: dict[str, type[Adapter]] = {
    cls.name: cls
    for cls in (
        NonAtomicUpdate,
        NonAtomicSet,
        ReadThenDelete,
        PiecemealTransactions,
        CollidingKeys,
        DropsSecondPage,
        FileStoreHidesAnEntry,
        KeepsEmptiedScopes,
        EmptyArrayBecomesObject,
    )
}


@hookimpl
def iii_state_register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    for cls in BROKEN.values():
        register(cls)

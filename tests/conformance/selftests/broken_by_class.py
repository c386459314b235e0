"""Broken adapters by class of bug, each the kind an author writes starting from the template.

Each class of the conformance suite's areas (threads, tokens, durable/shared, names, values,
paths never taken) has at least two of these; ``test_suite_catches_broken_adapters`` names
the test that must fail for each, and CI runs that check several times: a catch that
happens on some runs only is a miss.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from iii_state_kvfile import KvFileStore
from iii_state_template.adapter import MISSING_VERSION, TemplateAdapter

from iii_state_core import Adapter, AsyncAdapter, Capabilities, Options, hookimpl
from iii_state_core.adapter import Page, Token
from iii_state_core.driver import ThreadedAsyncAdapter

# -- 1. threads: a lock missing around a check-then-act -------------------------------------------


class UnlockedWriteIf(TemplateAdapter):
    """``write_if`` without the lock: "dict operations are atomic under the GIL"."""

    name = "broken-unlocked-write-if"

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        found = self._entries.get(scope, {}).get(key)
        if (found[0] if found else MISSING_VERSION) != token:
            return False
        with self._lock:
            self._store(scope, key, data)
        return True


class TwoStepWrite(TemplateAdapter):
    """``write`` reads the old value under the lock, then stores under a second acquisition."""

    name = "broken-two-step-write"

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        old = self.read(scope, key)
        with self._lock:
            self._store(scope, key, data)
        return old


class TwoStepRemove(TemplateAdapter):
    """``remove`` reads, then pops whatever is there by then (the iii engine's old delete)."""

    name = "broken-two-step-remove"

    def remove(self, scope: str, key: str) -> bytes | None:
        old = self.read(scope, key)
        super().remove(scope, key)
        return old


# -- 2. tokens ------------------------------------------------------------------------------------


class PerKeyVersions(TemplateAdapter):
    """Versions count per key and restart at 1 when a key is re-created: ABA passes ``write_if``."""

    name = "broken-per-key-versions"

    def _store(self, scope: str, key: str, data: bytes) -> bytes | None:
        old = self._entries.setdefault(scope, {}).get(key)
        self._entries[scope][key] = ((old[0] if old else 0) + 1, data)
        return None if old is None else old[1]


class DeletedEntryMatchesAnyToken(TemplateAdapter):
    """``write_if`` treats a missing entry as "nothing to conflict with" and writes."""

    name = "broken-deleted-matches-any-token"

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        with self._lock:
            found = self._entries.get(scope, {}).get(key)
            if found is not None and found[0] != token:
                return False
            self._store(scope, key, data)
            return True


class MissingTokenWritesAnyway(TemplateAdapter):
    """The token of a missing entry is ``None``, and ``write_if(None)`` skips the check."""

    name = "broken-missing-token-writes-anyway"

    def read_versioned(self, scope: str, key: str) -> tuple[bytes | None, Token]:
        raw, version = super().read_versioned(scope, key)
        return raw, (None if raw is None else version)

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        if token is None:
            with self._lock:
                self._store(scope, key, data)
            return True
        return super().write_if(scope, key, data, token)


class ModifyReturnsFirstRead(TemplateAdapter):
    """A native ``modify`` with its own CAS loop that reports the old value of its first attempt."""

    name = "broken-modify-returns-first-read"
    capabilities = Capabilities(atomic_update="native", ordered_listing=True, shared=False)

    def modify(
        self, scope: str, key: str, change: Callable[[bytes | None], bytes]
    ) -> tuple[bytes | None, bytes]:
        first, token = self.read_versioned(scope, key)
        old, new = first, change(first)
        while not self.write_if(scope, key, new, token):
            old, token = self.read_versioned(scope, key)
            new = change(old)
        return first, new


# -- 3. durable and shared --------------------------------------------------------------------------


class _FileBacked(TemplateAdapter):
    capabilities = Capabilities(durable=True, shared=False, ordered_listing=True)

    def __init__(self, config: Mapping[str, Any]) -> None:
        opts = Options(f"adapter '{self.name}'", config)
        folder = opts.str("file_path", "")
        opts.finish()
        super().__init__({})
        self.path = os.path.join(folder or tempfile.mkdtemp(prefix="broken-"), "entries")


class SavesAtClose(_FileBacked):
    """Loads a JSON file when opened and saves it in ``close()``: a killed process loses everything."""

    name = "broken-saves-at-close"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as handle:
                for scope, entries in json.load(handle).items():
                    for key, text in entries.items():
                        self._store(scope, key, text.encode())

    def close(self) -> None:
        with self._lock:
            snapshot = {s: {k: v[1].decode() for k, v in e.items()} for s, e in self._entries.items()}
        with open(self.path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(snapshot, handle)
        os.replace(self.path + ".tmp", self.path)


class BufferedLog(_FileBacked):
    """Appends every write to a log through a buffered file that is flushed only when full."""

    name = "broken-buffered-log"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as handle:
                for line in handle:
                    scope, key, text = json.loads(line)
                    if text is None:
                        super().remove(scope, key)
                    else:
                        self._store(scope, key, text.encode())
        self._log = open(self.path, "a", encoding="utf-8", buffering=1 << 20)

    def _append(self, scope: str, key: str, data: bytes | None) -> None:
        self._log.write(json.dumps([scope, key, None if data is None else data.decode()]) + "\n")

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        with self._lock:
            self._append(scope, key, data)
            return self._store(scope, key, data)

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        with self._lock:
            found = self._entries.get(scope, {}).get(key)
            if (found[0] if found else MISSING_VERSION) != token:
                return False
            self._append(scope, key, data)
            self._store(scope, key, data)
            return True

    def remove(self, scope: str, key: str) -> bytes | None:
        with self._lock:
            self._append(scope, key, None)
        return super().remove(scope, key)

    def close(self) -> None:
        self._log.close()


class _SharedFile(KvFileStore):
    @classmethod
    def open(cls, config: Any) -> Adapter:
        return cls(config.get("file_path") or tempfile.mkdtemp(prefix="broken-"))


class CachesReads(_SharedFile):
    """Keeps every value it read or wrote in a per-process dict: another process's writes go unseen."""

    name = "broken-caches-reads"

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self._cache: dict[tuple[str, str], bytes | None] = {}

    def read(self, scope: str, key: str) -> bytes | None:
        if (scope, key) not in self._cache:
            self._cache[scope, key] = super().read(scope, key)
        return self._cache[scope, key]

    def read_versioned(self, scope: str, key: str) -> tuple[bytes | None, Token]:
        raw = self.read(scope, key)
        return raw, raw

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        self._cache[scope, key] = data
        return super().write(scope, key, data)

    def remove(self, scope: str, key: str) -> bytes | None:
        self._cache[scope, key] = None
        return super().remove(scope, key)


class CachesScopes(_SharedFile):
    """Remembers the scopes this process wrote to instead of asking the file."""

    name = "broken-caches-scopes"

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self._known: set[str] | None = None

    def list_scopes(self) -> list[str]:
        if self._known is None:
            self._known = set(super().list_scopes())
        return sorted(s for s in self._known if self.scan(s, None, 1)[0])

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        if self._known is not None:
            self._known.add(scope)
        return super().write(scope, key, data)


# -- 4. names -------------------------------------------------------------------------------------


class _MappedNames(TemplateAdapter):
    """Stores each name through ``_name``: every primitive maps, listing shows the mapped names."""

    def _name(self, name: str) -> str:
        raise NotImplementedError

    def read_versioned(self, scope: str, key: str) -> tuple[bytes | None, Token]:
        return super().read_versioned(self._name(scope), self._name(key))

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        return super().write(self._name(scope), self._name(key), data)

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        return super().write_if(self._name(scope), self._name(key), data, token)

    def remove(self, scope: str, key: str) -> bytes | None:
        return super().remove(self._name(scope), self._name(key))

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        return super().scan(self._name(scope), cursor, limit)


class CaseFoldingNames(_MappedNames):
    """A case-insensitive backend (a default SQL collation, a Windows folder): names fold."""

    name = "broken-case-folding-names"

    def _name(self, name: str) -> str:
        return name.casefold()


class NormalisedNames(_MappedNames):
    """A backend that stores text in NFC (HFS+ file names, some SQL types)."""

    name = "broken-normalised-names"

    def _name(self, name: str) -> str:
        return unicodedata.normalize("NFKC", name)


class TruncatedNames(_MappedNames):
    """Index keys cut at 200 UTF-8 bytes, "long enough for any real key"."""

    name = "broken-truncated-names"

    def _name(self, name: str) -> str:
        return name.encode("utf-8")[:200].decode("utf-8", "ignore")


class Utf16SortedListing(TemplateAdapter):
    """Pages sorted in UTF-16 order (a JavaScript or Java backend) but the cursor compared in Python."""

    name = "broken-utf16-sorted-listing"

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        with self._lock:
            entries = self._entries.get(scope, {})
            keys = sorted((k for k in entries if cursor is None or k > cursor), key=_utf16)[:limit]
            page = [(k, entries[k][1]) for k in keys]
        return page, (keys[-1] if len(keys) == limit else None)


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-be", "surrogatepass")


class ReadRegistersScope(TemplateAdapter):
    """``read_versioned`` uses ``setdefault``: reading an unknown scope registers it."""

    name = "broken-read-registers-scope"

    def read_versioned(self, scope: str, key: str) -> tuple[bytes | None, Token]:
        with self._lock:
            found = self._entries.setdefault(scope, {}).get(key)
        return (None, MISSING_VERSION) if found is None else (found[1], found[0])

    def list_scopes(self) -> list[str]:
        with self._lock:
            return list(self._entries)


# -- 5. values ------------------------------------------------------------------------------------

_NEGATIVE_ZERO = re.compile(rb"-0\.0(?![0-9eE])")


class NumbersLoseNegativeZero(TemplateAdapter):
    """The backend's number type has no negative zero (DynamoDB N, SQL NUMERIC, Lua cjson)."""

    name = "broken-numbers-lose-negative-zero"

    def _store(self, scope: str, key: str, data: bytes) -> bytes | None:
        return super()._store(scope, key, _NEGATIVE_ZERO.sub(b"0.0", data))


class NormalisedText(TemplateAdapter):
    """The backend normalises stored text to NFC, values and object keys alike."""

    name = "broken-normalised-text"

    def _store(self, scope: str, key: str, data: bytes) -> bytes | None:
        return super()._store(scope, key, unicodedata.normalize("NFC", data.decode()).encode())


# -- 6. paths never taken: the async twin, listing under writes, secrets -------------------------


class _TwinDrift(ThreadedAsyncAdapter):
    """An async twin written separately from the sync adapter, and wrong where they differ."""


class TwinIgnoresToken(TemplateAdapter):
    """Its ``async_twin`` writes in ``write_if`` without checking the token."""

    name = "broken-twin-ignores-token"

    def async_twin(self) -> AsyncAdapter:
        adapter = self

        class Twin(_TwinDrift):
            async def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
                await asyncio.to_thread(adapter.write, scope, key, data)
                return True

        return Twin(self)


class TwinForgetsRemoved(TemplateAdapter):
    """Its ``async_twin`` deletes without returning what it removed (a fire-and-forget DEL)."""

    name = "broken-twin-forgets-removed"

    def async_twin(self) -> AsyncAdapter:
        adapter = self

        class Twin(_TwinDrift):
            async def remove(self, scope: str, key: str) -> bytes | None:
                await asyncio.to_thread(adapter.remove, scope, key)
                return None

        return Twin(self)


class OffsetCursor(TemplateAdapter):
    """The cursor is a position in the sorted keys: a write before it shifts every later key."""

    name = "broken-offset-cursor"

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        start = int(cursor or 0)
        with self._lock:
            entries = self._entries.get(scope, {})
            keys = sorted(entries)[start : start + limit]
            page = [(k, entries[k][1]) for k in keys]
        return page, (str(start + limit) if len(keys) == limit else None)


class InclusiveCursor(TemplateAdapter):
    """Pages start *at* the cursor key and drop the first row, assuming it is that key."""

    name = "broken-inclusive-cursor"

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        with self._lock:
            entries = self._entries.get(scope, {})
            keys = sorted(k for k in entries if cursor is None or k >= cursor)
            if cursor is not None:
                keys = keys[1:]  # "the first one is the cursor key, already returned"
            keys = keys[:limit]
            page = [(k, entries[k][1]) for k in keys]
        return page, (keys[-1] if len(keys) == limit else None)


class UndeclaredPassword(TemplateAdapter):
    """Takes a ``password`` option but forgets to return it from ``secrets()``."""

    name = "broken-undeclared-password"

    def __init__(self, config: Mapping[str, Any]) -> None:
        opts = Options(f"adapter '{self.name}'", config)
        self.password = opts.str("password", "")
        opts.finish()
        super().__init__({})


class UrlInDescribe(TemplateAdapter):
    """Shows its URL in ``describe()``; ``secrets()`` holds only the separate ``password`` option."""

    name = "broken-url-in-describe"

    def __init__(self, config: Mapping[str, Any]) -> None:
        opts = Options(f"adapter '{self.name}'", config)
        self.url = opts.str("url", "mem://localhost")
        self.password = opts.str("password", "")
        opts.finish()
        super().__init__({})

    def describe(self) -> str:
        return f"{self.name} at {self.url}"

    def secrets(self) -> list[str]:
        return [self.password] if self.password else []


BROKEN: dict[str, type[Adapter]] = {
    cls.name: cls
    for cls in (
        UnlockedWriteIf,
        TwoStepWrite,
        TwoStepRemove,
        PerKeyVersions,
        DeletedEntryMatchesAnyToken,
        MissingTokenWritesAnyway,
        ModifyReturnsFirstRead,
        SavesAtClose,
        BufferedLog,
        CachesReads,
        CachesScopes,
        CaseFoldingNames,
        NormalisedNames,
        TruncatedNames,
        Utf16SortedListing,
        ReadRegistersScope,
        NumbersLoseNegativeZero,
        NormalisedText,
        TwinIgnoresToken,
        TwinForgetsRemoved,
        OffsetCursor,
        InclusiveCursor,
        UndeclaredPassword,
        UrlInDescribe,
    )
}


@hookimpl
def iii_state_register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    for cls in BROKEN.values():
        register(cls)

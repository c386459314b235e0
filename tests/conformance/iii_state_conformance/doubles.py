"""Test doubles for adapter authors and our own tests: adapters that fail on purpose."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iii_state_core import Adapter, Capabilities
from iii_state_core.adapter import Page, Token


class FailingAdapter(Adapter):
    """Every primitive raises :meth:`failure`; subclasses say what a broken backend raises.

    Use it to test error paths: wire codes, secret redaction, logs, what callers see.
    """

    name = "failing"
    capabilities = Capabilities()

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)

    def failure(self) -> BaseException:
        """The exception every primitive raises."""
        return ConnectionError("the backend is down")

    def _boom(self) -> Any:
        raise self.failure()

    def describe(self) -> str:
        return "failing adapter at db:6379"

    def read(self, scope: str, key: str) -> bytes | None:
        return self._boom()  # type: ignore[no-any-return]

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        return self._boom()  # type: ignore[no-any-return]

    def remove(self, scope: str, key: str) -> bytes | None:
        return self._boom()  # type: ignore[no-any-return]

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        return self._boom()  # type: ignore[no-any-return]

    def list_scopes(self) -> list[str]:
        return self._boom()  # type: ignore[no-any-return]

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        return self._boom()  # type: ignore[no-any-return]

"""What every raw-client side offers: the same work as the adapter, written against the client."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

#: Operations of the standard table, in order.
OPERATIONS = ("get", "set", "delete", "update1", "update10", "compare_and_set", "list_entries")


class RawSide(ABC):
    """The raw client doing the minimum the adapter does for each operation.

    ``i`` picks one of ``workload.KEYS`` entries; ``delete`` takes a fresh pool index each call.
    An operation the backend has no equivalent for is left out of ``supported``.
    """

    supported: tuple[str, ...] = OPERATIONS
    #: One line per operation saying what the raw side does, for the report.
    described: ClassVar[dict[str, str]] = {}

    @abstractmethod
    def populate(self) -> None:
        """Write the ``KEYS`` entries, the ``LISTED`` list entries and the compare-and-set entry."""

    @abstractmethod
    def fill_deletes(self, start: int, count: int) -> None:
        """Create pool entries ``start … start + count - 1`` for ``delete`` to remove."""

    @abstractmethod
    def get(self, i: int) -> Any: ...

    @abstractmethod
    def set(self, i: int) -> Any: ...

    @abstractmethod
    def delete(self, j: int) -> Any:
        """Remove pool entry ``j`` and return its decoded value (``None`` if it was missing)."""

    @abstractmethod
    def update1(self, i: int) -> Any: ...

    @abstractmethod
    def update10(self, i: int) -> Any: ...

    @abstractmethod
    def compare_and_set(self, n: int) -> bool:
        """Replace ``{"v": n}`` by ``{"v": n + 1}`` in the compare-and-set entry; ``True`` if applied."""

    def list_entries(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional
        """Release the client."""

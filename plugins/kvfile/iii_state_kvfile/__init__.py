"""iii-state-kvfile: the ``kv`` adapter — an embedded SQLite file store, or process memory."""

from .file_store import KvFileStore
from .memory_store import KvMemoryStore

__all__ = ["KvFileStore", "KvMemoryStore"]

"""Task record stores: :class:`MemoryStore` (default) and :class:`SQLiteStore` (persistent),
behind the :class:`TaskStore` interface. ``SQLiteStore`` (and so ``sqlite3``) is imported only
when asked for: a controller with the default store starts without it."""

from typing import Any

from .base import TaskRecord, TaskStore
from .memory import MemoryStore

__all__ = ["MemoryStore", "SQLiteStore", "TaskRecord", "TaskStore"]


def __getattr__(name: str) -> Any:
    if name == "SQLiteStore":
        from .sqlite import SQLiteStore

        return SQLiteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

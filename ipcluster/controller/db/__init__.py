"""Task record stores: :class:`MemoryStore` (default) and :class:`SQLiteStore` (persistent),
behind the :class:`TaskStore` interface."""

from .base import TaskRecord, TaskStore
from .memory import MemoryStore
from .sqlite import SQLiteStore

__all__ = ["MemoryStore", "SQLiteStore", "TaskRecord", "TaskStore"]

"""Task record stores: :class:`MemoryStore` (default), behind the :class:`TaskStore` interface."""

from .base import TaskRecord, TaskStore
from .memory import MemoryStore

__all__ = ["MemoryStore", "TaskRecord", "TaskStore"]

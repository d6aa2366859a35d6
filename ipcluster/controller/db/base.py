"""The task record store interface.

The controller records every task it routes: who asked, which engine ran it, when it was
submitted, started and completed, its status and (within configured bounds) its reply, so that
another client can fetch a result later (`get_result`) or ask what happened (`result_status`).
The in-memory store is the default; a persistent store (SQLite) implements the same interface.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class TaskRecord:
    """What the controller knows about one task. Reply frames are kept raw and parsed on demand,
    so recording a completion costs no JSON work on the hot path."""

    msg_id: str
    msg_type: str
    client: bytes
    header: dict[str, Any]
    engine_id: int | None = None
    submitted: float = 0.0
    received: float | None = None
    reply: list[bytes] | None = None  # [header, parent, metadata, content] JSON frames
    buffers: list[Any] | None = None  # result buffers, when kept
    nbytes: int = 0
    result_dropped: bool = False
    aborted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.reply is not None


class TaskStore(abc.ABC):
    """Where task records live. Implementations must keep ``history()`` in submission order."""

    @abc.abstractmethod
    def add(self, record: TaskRecord) -> None: ...

    @abc.abstractmethod
    def get(self, msg_id: str) -> TaskRecord | None: ...

    @abc.abstractmethod
    def complete(self, record: TaskRecord, reply: list[bytes], buffers: list[Any], received: float) -> None:
        """Record a task's reply (the store decides whether to keep the buffers)."""

    @abc.abstractmethod
    def drop(self, msg_ids: Iterable[str]) -> list[str]:
        """Forget finished records; returns the ids that were dropped."""

    @abc.abstractmethod
    def history(self) -> list[str]: ...

    @abc.abstractmethod
    def completed_ids(self, engine_ids: Iterable[int] | None = None) -> list[str]: ...

    @abc.abstractmethod
    def __len__(self) -> int: ...

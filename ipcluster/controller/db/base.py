"""The task record store interface.

The controller records every task it routes: who asked, which engine ran it, when it was
submitted, started and completed, its status and (within configured bounds) its reply, so that
another client can fetch a result later (`get_result`) or ask what happened (`result_status`).
The in-memory store is the default; the persistent store (:mod:`.sqlite`) keeps the same records in
memory and mirrors the finished ones in an SQLite file.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True, eq=False)
class TaskRecord:
    """What the controller knows about one task. The reply is kept as the frames received (the
    signed packet and any large buffers), within the store's bounds, and decoded only when a
    client asks for it; recording a completion costs one tiny JSON parse (the reply's status)."""

    msg_id: str
    msg_type: str
    client: bytes
    header: dict[str, Any]
    engine_id: int | None = None
    submitted: float = 0.0
    received: float | None = None
    reply: list[Any] | None = None  # the reply's frames after the delimiter, while kept
    status: str | None = None  # the reply's status: ok, error, aborted
    ename: str | None = None
    request: list[Any] | None = None  # frames from the delimiter on, kept for retries and resubmit
    nbytes: int = 0
    result_dropped: bool = False
    # load balancing
    balanced: bool = False
    retries: int = 0
    tried: set[int] | None = None  # engines where the task failed or found its dependencies unmet
    allowed: frozenset[int] | None = None
    after: Any = None  # dependencies.Dependency
    follow: Any = None
    timeout: float | None = None
    broadcast: set[int] | None = None  # engines a broadcast still waits for
    queued: bool = False  # in the hub's queue of unassigned tasks (not yet given to an engine)
    tag: Any = None  # taskstats.Tag: its group, function and items, for live views
    killed: list[int] | None = None  # engines that died while running it (see Hub.task_kill_limit)

    @property
    def completed(self) -> bool:
        return self.received is not None

    @property
    def succeeded(self) -> bool:
        return self.status == "ok"


class TaskStore(abc.ABC):
    """Where task records live. Implementations must keep ``history()`` in submission order."""

    @abc.abstractmethod
    def add(self, record: TaskRecord) -> None: ...

    @abc.abstractmethod
    def get(self, msg_id: str) -> TaskRecord | None: ...

    @abc.abstractmethod
    def complete(self, record: TaskRecord, reply: list[Any], received: float) -> None:
        """Record a task's reply frames (the store decides whether to keep them, and the request)."""

    @abc.abstractmethod
    def drop(self, msg_ids: Iterable[str]) -> list[str]:
        """Forget finished records; returns the ids that were dropped."""

    @abc.abstractmethod
    def history(self) -> list[str]: ...

    @abc.abstractmethod
    def completed_ids(self, engine_ids: Iterable[int] | None = None) -> list[str]: ...

    @abc.abstractmethod
    def __len__(self) -> int: ...

    def close(self) -> None:
        """Write whatever is not written yet and release the store's files (in memory: nothing)."""

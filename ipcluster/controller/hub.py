"""The controller's registry state: engines, outstanding tasks, and the record store.

Plain objects fed with events ("engine registered", "task submitted", "reply arrived") that
return decisions; no sockets and no awaits, so all of it is unit-tested without processes. The
router turns socket traffic into these calls and sends what they decide.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..error import NoEnginesError
from .db import TaskRecord, TaskStore
from .schedulers import Scheduler


@dataclass(slots=True, eq=False)
class EngineInfo:
    id: int
    uuid: bytes
    hostname: str = ""
    pid: int = 0
    registered: float = 0.0
    queue: dict[str, None] = field(default_factory=dict)  # direct tasks outstanding (ordered set)
    tasks: dict[str, None] = field(default_factory=dict)  # load-balanced tasks outstanding
    completed: int = 0

    def outstanding(self) -> list[str]:
        return [*self.queue, *self.tasks]


@dataclass(slots=True, eq=False)
class QueuedTask:
    """A load-balanced task waiting for an engine; ``frames`` is opaque to the hub."""

    record: TaskRecord
    allowed: frozenset[int] | None
    frames: list[Any]


class Hub:
    def __init__(self, store: TaskStore, scheduler: Scheduler) -> None:
        self.store = store
        self.scheduler = scheduler
        self.engines: dict[int, EngineInfo] = {}
        self.by_uuid: dict[bytes, EngineInfo] = {}
        self.unassigned: deque[QueuedTask] = deque()
        self.clients: dict[bytes, float] = {}  # connected client idents -> connection time
        self._next_id = 0

    # -- engines ---------------------------------------------------------------------------
    def register_engine(self, uuid: bytes, hostname: str = "", pid: int = 0) -> EngineInfo:
        if uuid in self.by_uuid:
            raise ValueError(f"an engine with uuid {uuid!r} is already registered")
        info = EngineInfo(self._next_id, uuid, hostname, pid, time.time())
        self._next_id += 1
        self.engines[info.id] = info
        self.by_uuid[uuid] = info
        self.scheduler.add_engine(info.id)
        return info

    def unregister_engine(self, uuid: bytes) -> tuple[EngineInfo, list[TaskRecord]] | None:
        """Remove an engine; return it and the records of the tasks it had not finished."""
        info = self.by_uuid.pop(uuid, None)
        if info is None:
            return None
        del self.engines[info.id]
        self.scheduler.remove_engine(info.id)
        lost = []
        for msg_id in info.outstanding():
            rec = self.store.get(msg_id)
            if rec is not None and not rec.completed:
                lost.append(rec)
        return info, lost

    def engine(self, eid: Any) -> EngineInfo:
        info = self.engines.get(eid) if isinstance(eid, int) else None
        if info is None:
            raise NoEnginesError(f"engine {eid!r} is not registered (engines: {sorted(self.engines)})")
        return info

    # -- tasks -----------------------------------------------------------------------------
    def new_record(self, header: dict[str, Any], client: bytes) -> TaskRecord:
        rec = TaskRecord(header["msg_id"], header["msg_type"], client, header, submitted=time.time())
        self.store.add(rec)
        return rec

    def assign_direct(self, rec: TaskRecord, eid: Any) -> EngineInfo:
        info = self.engine(eid)
        rec.engine_id = info.id
        info.queue[rec.msg_id] = None
        return info

    def assign_balanced(self, rec: TaskRecord, allowed: frozenset[int] | None, frames: list[Any]) -> EngineInfo | None:
        """Pick an engine now, or queue the task until one is free (returns None)."""
        if allowed is not None and not allowed & self.engines.keys() and self.engines:
            raise NoEnginesError(f"none of the requested targets {sorted(allowed)} is registered")
        eid = self.scheduler.pick(allowed) if not self.unassigned else None
        if eid is None:
            self.unassigned.append(QueuedTask(rec, allowed, frames))
            return None
        return self._give(rec, eid)

    def _give(self, rec: TaskRecord, eid: int) -> EngineInfo:
        info = self.engines[eid]
        rec.engine_id = eid
        info.tasks[rec.msg_id] = None
        self.scheduler.assigned(eid)
        return info

    def drain_unassigned(self) -> list[tuple[QueuedTask, EngineInfo]]:
        """Give queued tasks to engines that can take them, in order; return what was given."""
        given = []
        while self.unassigned:
            q = self.unassigned[0]
            eid = self.scheduler.pick(q.allowed)
            if eid is None:
                break
            self.unassigned.popleft()
            given.append((q, self._give(q.record, eid)))
        return given

    def finish(self, engine_uuid: bytes, msg_id: str, reply: list[bytes], buffers: list[Any]) -> TaskRecord | None:
        """A reply came back from an engine: close the task and store the reply."""
        rec = self.store.get(msg_id)
        info = self.by_uuid.get(engine_uuid)
        if info is not None:
            if info.tasks.pop(msg_id, 0) is None:
                self.scheduler.finished(info.id)
            else:
                info.queue.pop(msg_id, None)
            info.completed += 1
        if rec is not None:
            self.store.complete(rec, reply, buffers, time.time())
        return rec

    def fail(self, rec: TaskRecord, reply: list[bytes]) -> None:
        """Close a task the controller answered itself (engine died, aborted)."""
        self.store.complete(rec, reply, [], time.time())

    def abort_unassigned(self, msg_ids: Iterable[str] | None) -> list[TaskRecord]:
        wanted = None if msg_ids is None else set(msg_ids)
        keep: deque[QueuedTask] = deque()
        aborted = []
        for q in self.unassigned:
            if wanted is None or q.record.msg_id in wanted:
                q.record.aborted = True
                aborted.append(q.record)
            else:
                keep.append(q)
        self.unassigned = keep
        return aborted

    # -- queries ---------------------------------------------------------------------------
    def queue_status(self, targets: Iterable[int] | None = None, verbose: bool = False) -> dict[str, Any]:
        ids = sorted(self.engines) if targets is None else [self.engine(t).id for t in targets]
        out: dict[str, Any] = {}
        completed_by_engine: dict[int, list[str]] = {}
        if verbose:
            for msg_id in self.store.completed_ids(ids):
                rec = self.store.get(msg_id)
                if rec is not None and rec.engine_id is not None:
                    completed_by_engine.setdefault(rec.engine_id, []).append(msg_id)
        for eid in ids:
            info = self.engines[eid]
            if verbose:
                out[str(eid)] = {"queue": list(info.queue), "tasks": list(info.tasks),
                                 "completed": completed_by_engine.get(eid, [])}
            else:
                out[str(eid)] = {"queue": len(info.queue), "tasks": len(info.tasks),
                                 "completed": info.completed}
        out["unassigned"] = [q.record.msg_id for q in self.unassigned] if verbose else len(self.unassigned)
        return out

    def engine_table(self) -> dict[str, str]:
        return {str(eid): info.uuid.decode(errors="replace") for eid, info in sorted(self.engines.items())}

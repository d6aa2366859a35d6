"""What the hub (:mod:`.hub`) knows of an engine, and the decisions it returns for the router to
carry out: :class:`Assign` a task to an engine, or :class:`Fail` it with an error reply."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..error import IPClusterError
from .db import TaskRecord


@dataclass(slots=True, eq=False)
class EngineInfo:
    id: int
    uuid: bytes
    hostname: str = ""
    pid: int = 0
    registered: float = 0.0
    data_url: str = ""  # the engine's direct data channel (same-host clients send large buffers there)
    queue: dict[str, None] = field(default_factory=dict)  # direct tasks outstanding (ordered set)
    tasks: dict[str, None] = field(default_factory=dict)  # load-balanced tasks outstanding
    completed: int = 0
    busy_since: float | None = None  # last completion after which it still had tasks queued

    def outstanding(self) -> list[str]:
        return [*self.queue, *self.tasks]

    def details(self) -> dict[str, Any]:
        """What clients are told of the engine."""
        out: dict[str, Any] = {"id": self.id, "uuid": self.uuid.decode(errors="replace"), "pid": self.pid,
                               "hostname": self.hostname}
        if self.data_url:
            out["data_url"] = self.data_url
        return out


@dataclass(slots=True)
class Assign:
    """Send the task's request frames to this engine."""

    record: TaskRecord
    engine: EngineInfo


@dataclass(slots=True)
class Fail:
    """Answer the task's client with this error instead of a reply from an engine."""

    record: TaskRecord
    error: IPClusterError
    status: str = "error"
    engine_id: int | None = None  # for a broadcast: which engine's part failed


Action = Assign | Fail


class EngineIdTaken(ValueError):
    """A registration asked for an engine id that a registered engine holds."""

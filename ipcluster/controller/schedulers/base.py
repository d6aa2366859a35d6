"""The interface every load-balancing scheme implements.

A scheme only ranks engines: the hub tells it which engines exist, when a task is given to one
and when one finishes, and asks it to pick among the engines a task may use. Engines at the
high-water mark are never offered, so a scheme never has to know about limits.
"""

from __future__ import annotations

import abc
from collections.abc import Collection
from typing import ClassVar


class Scheduler(abc.ABC):
    name: ClassVar[str] = "base"

    def __init__(self, hwm: int = 0, seed: int | None = None, queue_time: float = 0.05) -> None:
        #: the configured ceiling of tasks outstanding per engine (0: unlimited)
        self.max_hwm = hwm
        #: the limit in force: adapted to how long tasks take (see observe)
        self.hwm = min(hwm, 2) if hwm else 0
        #: seconds of work to keep queued on an engine
        self.queue_time = queue_time
        self.loads: dict[int, int] = {}
        self._task_time: float | None = None

    def observe(self, seconds: float) -> None:
        """An engine went from one queued task to the next in ``seconds``: adapt the limit so an
        engine holds about ``queue_time`` of work. Tiny tasks then queue deep (no engine idles
        between them while the controller is busy), long ones shallow (none waits behind a long
        task on a busy engine while another engine is free, and late-joining engines get work)."""
        if self.max_hwm <= 2:
            return
        avg = self._task_time
        avg = seconds if avg is None else 0.9 * avg + 0.1 * seconds
        self._task_time = avg
        self.hwm = max(2, min(self.max_hwm, int(self.queue_time / max(avg, 1e-6))))

    def add_engine(self, eid: int) -> None:
        self.loads[eid] = 0

    def remove_engine(self, eid: int) -> None:
        self.loads.pop(eid, None)

    def assigned(self, eid: int) -> None:
        self.loads[eid] += 1

    def finished(self, eid: int) -> None:
        if eid in self.loads:
            self.loads[eid] -= 1

    def candidates(self, allowed: Collection[int] | None, exclude: Collection[int] = ()) -> list[int]:
        """Engines the task may go to now: allowed, not excluded, below the high-water mark."""
        hwm = self.hwm
        return [eid for eid, load in self.loads.items()
                if (allowed is None or eid in allowed) and (not hwm or load < hwm) and eid not in exclude]

    @abc.abstractmethod
    def pick(self, allowed: Collection[int] | None = None, exclude: Collection[int] = ()) -> int | None:
        """The engine for the next task, or None if none can take it now."""

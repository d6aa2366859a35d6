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

    def __init__(self, hwm: int = 0, seed: int | None = None) -> None:
        #: most tasks outstanding per engine (0: unlimited)
        self.hwm = hwm
        self.loads: dict[int, int] = {}

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

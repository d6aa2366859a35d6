"""The default scheme: give each task to the engine with the fewest outstanding tasks.

Loads are kept in a dict; picking scans only the engines (a handful to hundreds), never tasks.
"""

from __future__ import annotations

from collections.abc import Collection


class Scheduler:
    """Interface of a scheme: told about engines and task completions, asked to pick an engine."""

    name = "base"

    def __init__(self, hwm: int = 0) -> None:
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

    def pick(self, allowed: Collection[int] | None = None) -> int | None:
        raise NotImplementedError


class LeastLoad(Scheduler):
    name = "leastload"

    def pick(self, allowed: Collection[int] | None = None) -> int | None:
        best, best_load = None, None
        hwm = self.hwm
        for eid, load in self.loads.items():
            if allowed is not None and eid not in allowed:
                continue
            if hwm and load >= hwm:
                continue
            if best_load is None or load < best_load:
                best, best_load = eid, load
                if load == 0:
                    break
        return best

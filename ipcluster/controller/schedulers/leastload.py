"""``leastload`` (default): the engine with the fewest outstanding tasks; ties go to the engine
that has waited longest, so equal engines share work evenly."""

from __future__ import annotations

from collections.abc import Collection

from .base import Scheduler


class LeastLoad(Scheduler):
    name = "leastload"

    def pick(self, allowed: Collection[int] | None = None, exclude: Collection[int] = ()) -> int | None:
        best, best_load = None, None
        hwm = self.hwm
        loads = self.loads
        for eid in loads:  # dict order = least recently assigned first (see assigned)
            if allowed is not None and eid not in allowed or eid in exclude:
                continue
            load = loads[eid]
            if hwm and load >= hwm:
                continue
            if best_load is None or load < best_load:
                best, best_load = eid, load
                if load == 0:
                    break
        return best

    def assigned(self, eid: int) -> None:
        # move to the end: among equally loaded engines, the one assigned longest ago comes first
        self.loads[eid] = self.loads.pop(eid) + 1

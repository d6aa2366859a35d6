"""``leastload`` (default): the engine with the fewest outstanding tasks; ties go to the engine
that has waited longest, so equal engines share work evenly."""

from __future__ import annotations

from collections.abc import Collection

from .base import Scheduler


class LeastLoad(Scheduler):
    """Engines are kept in buckets by load, so picking one for an unrestricted task looks at a
    few load levels, not at every engine: with 256 engines each holding a few tasks, a scan of
    all of them per task cost more than the rest of the controller's work on it."""

    name = "leastload"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        #: engines by load; each bucket in the order engines came to that load (oldest first)
        self._levels: list[dict[int, None]] = [{}]

    def _move(self, eid: int, old: int, new: int) -> None:
        del self._levels[old][eid]
        while len(self._levels) <= new:
            self._levels.append({})
        self._levels[new][eid] = None

    def add_engine(self, eid: int) -> None:
        super().add_engine(eid)
        self._levels[0][eid] = None

    def remove_engine(self, eid: int) -> None:
        load = self.loads.get(eid)
        if load is not None:
            del self._levels[load][eid]
        super().remove_engine(eid)

    def assigned(self, eid: int) -> None:
        load = self.loads.pop(eid)  # re-inserted at the end: see pick's slow path
        self.loads[eid] = load + 1
        self._move(eid, load, load + 1)

    def finished(self, eid: int) -> None:
        load = self.loads.get(eid)
        if load:
            self.loads[eid] = load - 1
            self._move(eid, load, load - 1)

    def pick(self, allowed: Collection[int] | None = None, exclude: Collection[int] = ()) -> int | None:
        hwm = self.hwm
        if allowed is None and not exclude:
            levels = self._levels
            for load in range(min(hwm, len(levels)) if hwm else len(levels)):
                bucket = levels[load]
                if bucket:
                    return next(iter(bucket))
            return None
        best, best_load = None, None
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

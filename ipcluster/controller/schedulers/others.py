"""The other schemes, each a few lines: ``lru``, ``plainrandom``, ``twobin``, ``weighted``."""

from __future__ import annotations

import random
from collections.abc import Collection

from .base import Scheduler


class LRU(Scheduler):
    """Round robin: the engine given a task longest ago, regardless of load."""

    name = "lru"

    def pick(self, allowed: Collection[int] | None = None, exclude: Collection[int] = ()) -> int | None:
        hwm = self.hwm
        for eid, load in self.loads.items():  # least recently assigned first
            if (allowed is None or eid in allowed) and eid not in exclude and (not hwm or load < hwm):
                return eid
        return None

    def assigned(self, eid: int) -> None:
        self.loads[eid] = self.loads.pop(eid) + 1


class PlainRandom(Scheduler):
    """Any eligible engine, uniformly at random."""

    name = "plainrandom"

    def __init__(self, hwm: int = 0, seed: int | None = None, queue_time: float = 0.05) -> None:
        super().__init__(hwm, seed, queue_time)
        self.rng = random.Random(seed)

    def pick(self, allowed: Collection[int] | None = None, exclude: Collection[int] = ()) -> int | None:
        c = self.candidates(allowed, exclude)
        return self.rng.choice(c) if c else None


class TwoBin(PlainRandom):
    """Two engines at random, then the one given a task longest ago: LRU's fairness at O(1) cost."""

    name = "twobin"

    def __init__(self, hwm: int = 0, seed: int | None = None, queue_time: float = 0.05) -> None:
        super().__init__(hwm, seed, queue_time)
        self._clock = 0
        self.last: dict[int, int] = {}

    def assigned(self, eid: int) -> None:
        super().assigned(eid)
        self._clock += 1
        self.last[eid] = self._clock

    def pick(self, allowed: Collection[int] | None = None, exclude: Collection[int] = ()) -> int | None:
        c = self.candidates(allowed, exclude)
        if len(c) < 2:
            return c[0] if c else None
        a, b = self.rng.sample(c, 2)
        return a if self.last.get(a, 0) <= self.last.get(b, 0) else b


class Weighted(PlainRandom):
    """Random, weighted towards idle engines (weight 1 / (1 + outstanding tasks))."""

    name = "weighted"

    def pick(self, allowed: Collection[int] | None = None, exclude: Collection[int] = ()) -> int | None:
        c = self.candidates(allowed, exclude)
        if not c:
            return None
        return self.rng.choices(c, weights=[1.0 / (1 + self.loads[e]) for e in c])[0]

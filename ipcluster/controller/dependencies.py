"""Task dependencies as the scheduler sees them: ``after`` (run once these tasks are done) and
``follow`` (run where these tasks ran).

A dependency names msg_ids and says whether ``all`` or any of them must be satisfied, and whether
a task that succeeded, failed, or either, satisfies it. Checking one costs a dict lookup per
msg_id; the hub re-checks a waiting task only when one of the tasks it names completes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from ..error import InvalidDependency
from .db import TaskStore


class State(enum.Enum):
    MET = "met"
    UNMET = "unmet"
    IMPOSSIBLE = "impossible"


@dataclass(slots=True, frozen=True)
class Dependency:
    msg_ids: tuple[str, ...]
    all: bool = True
    success: bool = True
    failure: bool = False

    @classmethod
    def parse(cls, spec: Any) -> "Dependency | None":
        """From request metadata: a list of msg_ids, or ``{"msg_ids", "all", "success", "failure"}``."""
        if not spec:
            return None
        if isinstance(spec, str):
            return cls((spec,))
        if isinstance(spec, list | tuple) and all(isinstance(m, str) for m in spec):
            return cls(tuple(spec))
        if isinstance(spec, dict):
            ids = spec.get("msg_ids", spec.get("dependencies", []))
            if isinstance(ids, list | tuple) and all(isinstance(m, str) for m in ids):
                if not ids:
                    return None
                dep = cls(tuple(ids), bool(spec.get("all", True)), bool(spec.get("success", True)),
                          bool(spec.get("failure", False)))
                if not (dep.success or dep.failure):
                    raise InvalidDependency("a dependency must accept success, failure, or both")
                return dep
        raise InvalidDependency(f"cannot understand dependency {spec!r}: expected a list of msg_ids")

    def check(self, store: TaskStore) -> tuple[State, str]:
        """Whether the dependency is met now, may still be met, or never can be (with why)."""
        satisfied = unfinished = 0
        why = ""
        for msg_id in self.msg_ids:
            rec = store.get(msg_id)
            if rec is None:
                return State.IMPOSSIBLE, f"dependency {msg_id!r} is not a known task"
            if not rec.completed:
                unfinished += 1
            elif (rec.succeeded and self.success) or (not rec.succeeded and self.failure):
                satisfied += 1
            else:
                why = f"dependency {msg_id!r} {'succeeded' if rec.succeeded else 'failed'}"
                if self.all:
                    return State.IMPOSSIBLE, why
        if self.all:
            return (State.MET, "") if unfinished == 0 else (State.UNMET, "")
        if satisfied:
            return State.MET, ""
        return (State.UNMET, "") if unfinished else (State.IMPOSSIBLE, why or "no dependency was satisfied")

    def engines(self, store: TaskStore) -> set[int]:
        """For ``follow``: the engines the task may run on (where the satisfying tasks ran)."""
        where: list[int] = []
        for msg_id in self.msg_ids:
            rec = store.get(msg_id)
            if rec is not None and rec.completed and rec.engine_id is not None:
                if (rec.succeeded and self.success) or (not rec.succeeded and self.failure):
                    where.append(rec.engine_id)
        if self.all:
            return set(where) if len(set(where)) == 1 else set()
        return set(where)

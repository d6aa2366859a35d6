"""The panel's view of a cluster's work, from the controller's task statistics: progress of each
map and label in items, completions per engine and function for the task stream, and recent
failures with their tracebacks.

Plain state, like :mod:`.livestate`: :meth:`TaskLive.take` is fed each ``task_stats`` reply
(``Client.task_stats(since)``, see docs/protocol.md) with the time it was taken, and returns this
sample's task-stream entry; :meth:`TaskLive.view` is the JSON-able part of the live view. The
controller reports totals changed since the revision asked for, so each sample costs the size of
what changed, and a sample in which nothing changed adds nothing to the view's delta.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

#: seconds of progress kept for a group's rate (as the cluster's throughput)
RATE_WINDOW_S = 10.0
#: seconds a finished group stays in the view
GROUP_LINGER_S = 60.0
#: groups in the view at most (running ones first, newest first) and kept here at most
GROUPS_SHOWN = 8
GROUPS_KEPT = 64
#: distinct failures in the view (a failure like one shown, same group and exception type, counts there)
FAILURES_SHOWN = 8
#: function names given colours; later ones share OTHER's
FUNCTIONS_SHOWN = 24
OTHER = "(other)"



def rate_of(history: "deque[tuple[float, int]]") -> float:
    """Counts per second between the first and last ``(time, count)`` samples of ``history``."""
    if len(history) < 2:
        return 0.0
    (t0, c0), (t1, c1) = history[0], history[-1]
    return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0

class GroupLive:
    """One label, map or function as the panel shows it: items done of submitted, rate, ETA."""

    __slots__ = ("id", "kind", "name", "fn", "n", "d", "f", "history", "finished_at")

    def __init__(self, gid: str, kind: str, name: str, fn: str) -> None:
        self.id = gid  # the panel's id, small: the view's key
        self.kind = kind
        self.name = name
        self.fn = fn
        self.n = self.d = self.f = 0
        self.history: deque[tuple[float, int]] = deque()  # (time, items finished) for the rate
        self.finished_at: float | None = None

    def update(self, now: float, entry: dict[str, Any]) -> None:
        self.n, self.d, self.f = int(entry.get("n", 0)), int(entry.get("d", 0)), int(entry.get("f", 0))
        self.observe(now)
        if self.d + self.f >= self.n:
            if self.finished_at is None:
                self.finished_at = now
        else:
            self.finished_at = None

    def observe(self, now: float) -> None:
        self.history.append((now, self.d + self.f))
        while len(self.history) > 2 and now - self.history[0][0] > RATE_WINDOW_S:
            self.history.popleft()

    def rate(self) -> float:
        """Items finished per second over the last :data:`RATE_WINDOW_S` seconds."""
        return rate_of(self.history)

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "fn": self.fn, "n": self.n, "d": self.d}
        if self.f:
            out["f"] = self.f
        if self.finished_at is None:
            rate = self.rate()
            out["rate"] = round(rate, 1)
            left = self.n - self.d - self.f
            if rate > 0:
                out["eta"] = round(left / rate, 1)
        else:
            out["done"] = True
        return out


class TaskLive:
    """Groups, per-engine counts and failures of one cluster, from task_stats replies."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.rev = 0  # what to ask the controller for next: changes after this revision
        self.groups: dict[str, GroupLive] = {}  # by the controller's group id
        self._ids = itertools.count(1)
        self.fns: list[str] = []  # colour order: the stream's function indices
        self.counts: dict[str, dict[str, list[int]]] = {}  # engine -> function -> [done, failed] totals
        self.failures: dict[str, dict[str, Any]] = {}  # the panel's id -> failure, oldest first
        self._failure_ids = itertools.count(1)
        self.now = 0.0

    def fn_index(self, fn: str) -> int:
        """The colour index of function ``fn``: stable for as long as the server watches."""
        try:
            return self.fns.index(fn)
        except ValueError:
            pass
        if len(self.fns) >= FUNCTIONS_SHOWN:
            fn = OTHER
            if fn in self.fns:
                return self.fns.index(fn)
        self.fns.append(fn)
        return len(self.fns) - 1

    def take(self, now: float, reply: dict[str, Any]) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
        """Take one task_stats reply; return this sample's stream entry: items done per function
        index per engine, and items failed per engine. What happened before the first reply is
        not news: the first one only sets the baseline."""
        self.now = now
        rev = int(reply.get("rev", 0))
        baseline = self.rev == 0 or rev <= self.rev  # the first reply, or a controller that restarted
        if baseline and self.rev:
            self._reset()  # a new controller: start again
            self.now = now
        self.rev = rev
        for gid, entry in (reply.get("groups") or {}).items():
            self._group(now, str(gid), entry, baseline)
        done: dict[str, dict[str, int]] = {}
        failed: dict[str, int] = {}
        for eid, by_fn in (reply.get("engines") or {}).items():
            seen = self.counts.setdefault(str(eid), {})
            for fn, (d, f) in by_fn.items():
                before = seen.get(fn, [0, 0])
                seen[fn] = [int(d), int(f)]
                if baseline:
                    continue
                if d > before[0]:
                    done.setdefault(str(self.fn_index(fn)), {})[str(eid)] = int(d) - before[0]
                if f > before[1]:
                    failed[str(eid)] = failed.get(str(eid), 0) + int(f) - before[1]
        for failure in reply.get("failures") or ():
            self._failure(failure)
        for group in self.groups.values():  # the rate of a group with nothing new falls
            if group.finished_at is None and group.history and group.history[-1][0] < now:
                group.observe(now)
        return done, failed

    def forget_engine(self, eid: int) -> None:
        self.counts.pop(str(eid), None)

    def _group(self, now: float, gid: str, entry: dict[str, Any], baseline: bool) -> None:
        group = self.groups.get(gid)
        if group is None:
            if len(self.groups) >= GROUPS_KEPT:
                finished = [k for k, g in self.groups.items() if g.finished_at is not None]
                del self.groups[(finished or list(self.groups))[0]]
            group = self.groups[gid] = GroupLive(str(next(self._ids)), str(entry.get("kind", "")),
                                                 str(entry.get("name", "")), str(entry.get("fn", "")))
        group.update(now, entry)
        if baseline and group.finished_at is not None:
            group.finished_at = float("-inf")  # finished before we watched: not shown

    def _failure(self, failure: dict[str, Any]) -> None:
        group_id = self.groups[failure["group_id"]].id if failure.get("group_id") in self.groups else ""
        for shown in self.failures.values():
            if shown["gid"] == group_id and shown["n"] == failure.get("ename"):
                shown["c"] = shown.get("c", 1) + 1
                return
        if len(self.failures) >= FAILURES_SHOWN:
            del self.failures[next(iter(self.failures))]
        self.failures[str(next(self._failure_ids))] = {
            "n": str(failure.get("ename", "")),
            "v": str(failure.get("evalue", "")),
            "tb": str(failure.get("traceback", "")),
            "e": failure.get("engine_id"),
            "g": str(failure.get("group", "")),
            "gid": group_id,
            "k": str(failure.get("kind", "")),
            "t": failure.get("time"),
        }

    def view(self) -> dict[str, Any]:
        """``{"fns": [...], "groups": {id: ...}, "failures": {id: ...}}`` (the keys a live view adds)."""
        now = self.now
        shown = [g for g in self.groups.values()
                 if g.finished_at is None or now - g.finished_at <= GROUP_LINGER_S]
        shown.sort(key=lambda g: (g.finished_at is not None, -int(g.id)))  # running, then newest
        failures = {k: {key: v for key, v in f.items() if v is not None and v != ""} for k, f in self.failures.items()}
        return {
            "fns": list(self.fns),
            "groups": {g.id: g.view() for g in shown[:GROUPS_SHOWN]},
            "failures": failures,
        }

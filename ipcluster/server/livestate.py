"""The panel's live state: plain classes that take events and return what changed.

Nothing here touches a socket, a process or a clock of its own: the manager feeds in cluster
summaries and controller samples with the time they were taken, and the websocket handler asks
for deltas. That keeps the rules that matter to the browser (what an engine's state is, how
throughput and the ETA are computed, how small a delta is) testable without processes, as
``controller/hub.py`` is for the controller.

A *view* is a JSON-able tree of dicts. A *delta* between two views holds only the keys whose
values changed, with ``None`` for a removed key, and replaces lists and scalars whole; the
browser merges deltas into its copy (``labextension/src/model.ts``). Values of ``None`` are
therefore never stored in a view: an absent key means "unknown".
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .livetasks import TaskLive, rate_of

#: seconds of completions kept for throughput (long enough to smooth chunky maps)
THROUGHPUT_WINDOW_S = 10.0
#: ticks of the task stream kept on the server for a browser that resumes
STREAM_TICKS = 120


def diff(old: Any, new: Any) -> Any:
    """The compact delta that turns ``old`` into ``new`` (``{}`` when they are equal dicts).

    Dicts are compared key by key, recursively; anything else is replaced whole. Callers check
    ``delta == {}`` (dicts) to skip sending.
    """
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return new
    out: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            out[key] = value
        elif old[key] != value:
            out[key] = diff(old[key], value) if isinstance(value, dict) and isinstance(old[key], dict) else value
    for key in old:
        if key not in new:
            out[key] = None
    return out


def merge(base: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """Apply ``delta`` to a copy of ``base`` (what the browser does; here for tests and tools)."""
    out = dict(base)
    for key, value in delta.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def drop_none(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` without its ``None`` values (an absent key is how a view says 'unknown')."""
    return {k: v for k, v in d.items() if v is not None}


class EngineLive:
    """What the panel shows of one engine; updated from controller samples."""

    __slots__ = ("state", "queue", "done", "busy_since", "mem_mb", "host")

    def __init__(self, host: str = "") -> None:
        self.state = "idle"
        self.queue = 0
        self.done = 0
        self.busy_since: float | None = None
        self.mem_mb: int | None = None
        self.host = host

    def view(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {"s": self.state, "q": self.queue, "d": self.done}
        if self.busy_since is not None:
            # whole seconds, so an engine busy with one long task changes once a second, not every tick
            out["e"] = int(now - self.busy_since)
        if self.mem_mb is not None:
            out["m"] = self.mem_mb
        return out


class ClusterLive:
    """Live statistics of one running cluster, from periodic controller samples.

    Feed it :meth:`sample` with the controller's ``queue_status()`` (per engine id: ``queue``,
    ``tasks``, ``completed``; plus ``unassigned``), the engines it knows, and its ``task_stats``
    (see :mod:`.livetasks`). It derives engine states, throughput over a sliding window and the
    progress and ETA of the current *burst* of work, in tasks as the controller schedules them (a
    burst starts when outstanding work appears on an idle cluster and ends when none is left);
    from the task statistics, the progress of each map and label in items, recent failures, and
    the task stream: items finished per engine per tick, by function, and failed ones. Without
    task statistics (a controller that does not answer them) the stream counts tasks.
    """

    def __init__(self) -> None:
        self.engines: dict[int, EngineLive] = {}
        self.dead: set[int] = set()
        self.completed_total = 0
        self.outstanding = 0
        self.burst_start_done: int | None = None
        self.burst_start_time: float | None = None
        self.history: deque[tuple[float, int]] = deque()  # (time, completed_total) for throughput
        # (tick, time, {function index: {engine id: items done}}, {engine id: items failed})
        self.stream: deque[tuple[int, float, dict[str, dict[str, int]], dict[str, int]]] = deque(maxlen=STREAM_TICKS)
        self.tasks = TaskLive()
        self.tick = 0
        self.now = 0.0

    def sample(
        self,
        now: float,
        queue_status: dict[Any, Any],
        engine_hosts: dict[int, str] | None = None,
        memory_mb: dict[int, int] | None = None,
        task_stats: dict[str, Any] | None = None,
    ) -> None:
        """Take one controller sample taken at ``now``: its queue status and, when it has them,
        its task statistics changed since :attr:`TaskLive.rev`."""
        self.now = now
        engine_hosts = engine_hosts or {}
        seen: set[int] = set()
        completions: dict[str, int] = {}
        outstanding = int(queue_status.get("unassigned", 0) or 0)
        for key, status in queue_status.items():
            if key == "unassigned" or not isinstance(status, dict):
                continue
            eid = int(key)
            seen.add(eid)
            engine = self.engines.get(eid)
            queue = int(status.get("queue", 0)) + int(status.get("tasks", 0))
            done = int(status.get("completed", 0))
            if engine is None:
                # what an engine finished before we watched it is not news for the stream or the rate
                engine = self.engines[eid] = EngineLive(engine_hosts.get(eid, ""))
                engine.done = done
                self.dead.discard(eid)
            if done > engine.done:
                completions[str(eid)] = done - engine.done
            busy = queue > 0
            if busy and engine.busy_since is None:
                engine.busy_since = now
            elif not busy:
                engine.busy_since = None
            elif done > engine.done:
                engine.busy_since = now  # finished one task, started the next
            engine.state = "busy" if busy else "idle"
            engine.queue, engine.done = queue, done
            if memory_mb and eid in memory_mb:
                engine.mem_mb = memory_mb[eid]
            outstanding += queue
        for eid in list(self.engines):
            if eid not in seen:
                del self.engines[eid]
                self.dead.add(eid)
                self.tasks.forget_engine(eid)
        # monotonic, so an engine leaving does not make the throughput negative
        self.completed_total += sum(completions.values())
        self.history.append((now, self.completed_total))
        while len(self.history) > 2 and now - self.history[0][0] > THROUGHPUT_WINDOW_S:
            self.history.popleft()
        if outstanding and not self.outstanding:
            self.burst_start_done, self.burst_start_time = self.completed_total, now
        elif not outstanding:
            self.burst_start_done = self.burst_start_time = None
        self.outstanding = outstanding
        self.tick += 1
        finished: dict[str, dict[str, int]] = {}
        failed: dict[str, int] = {}
        if task_stats is not None:
            finished, failed = self.tasks.take(now, task_stats)
        elif completions:
            finished = {str(self.tasks.fn_index("tasks")): completions}
        if finished or failed:
            self.stream.append((self.tick, now, finished, failed))

    def throughput(self) -> float:
        """Tasks completed per second over the last :data:`THROUGHPUT_WINDOW_S` seconds."""
        return rate_of(self.history)

    def view(self) -> dict[str, Any]:
        """The JSON-able live view sent to browsers (diffed, so keep it stable between samples)."""
        counts = {"idle": 0, "busy": 0, "dead": len(self.dead)}
        for engine in self.engines.values():
            counts[engine.state] += 1
        rate = self.throughput()
        progress: dict[str, Any] = {"outstanding": self.outstanding, "rate": round(rate, 1)}
        if self.burst_start_done is not None:
            done = self.completed_total - self.burst_start_done
            progress["done"] = done
            progress["total"] = done + self.outstanding
            if rate > 0:
                progress["eta"] = round(self.outstanding / rate, 1)
        return {
            "counts": counts,
            "completed": self.completed_total,
            "progress": progress,
            "engines": {str(eid): e.view(self.now) for eid, e in sorted(self.engines.items())},
            **self.tasks.view(),
        }

    def stream_since(self, tick: int) -> list[list[Any]]:
        """Task-stream ticks after ``tick``: ``[tick, time, {function index: {engine id: items
        done}}]``, plus ``{engine id: items failed}`` when some failed (indices into ``fns``)."""
        return [[t, round(when, 2), done, *([failed] if failed else [])] for t, when, done, failed in self.stream
                if t > tick]


class TabStream:
    """What one browser tab has been sent, and the next message for it.

    :meth:`message` takes the current view (``{"clusters": ..., "live": ...}``) and the task-stream
    ticks of each live cluster, and returns a snapshot the first time (and after :meth:`reset`,
    when a hidden panel is shown again), a delta of what changed after that, or ``None`` when
    nothing did: an idle cluster costs no traffic.
    """

    def __init__(self) -> None:
        self.sent: dict[str, Any] | None = None
        self.ticks: dict[str, int] = {}  # last task-stream tick sent, per cluster

    def reset(self) -> None:
        self.sent = None

    def message(self, view: dict[str, Any], stream: dict[str, list[list[Any]]]) -> dict[str, Any] | None:
        fresh = {key: [t for t in ticks if t[0] > self.ticks.get(key, 0)] for key, ticks in stream.items()}
        fresh = {key: ticks for key, ticks in fresh.items() if ticks}
        if self.sent is None:
            msg: dict[str, Any] = {"t": "snapshot", **view}
        else:
            delta = diff(self.sent, view)
            if not delta and not fresh:
                return None
            msg = {"t": "delta", **delta}
        if fresh:
            msg["stream"] = fresh
            for key, ticks in fresh.items():
                self.ticks[key] = ticks[-1][0]
        self.sent = view
        return msg

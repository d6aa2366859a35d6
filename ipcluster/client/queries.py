"""Controller queries of the client: status, results by msg_id (including other clients'
tasks), task records by query (``db_query``), abort, resubmit, purge, shutdown.

:class:`ControllerQueries` is composed into :class:`~ipcluster.client.client.Client`, whose public
methods of the same names delegate to it. It is kept apart because it changes with the
controller's query protocol rather than with the hot path of sending tasks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..error import ControllerError, IPClusterError
from ..protocol.serialize import deserialize_result
from ..protocol.session import Message
from ._io import ClientIO
from .cache import on_io_thread
from .hubresult import AsyncHubResult
from .task import Broadcast, ExecuteReply, Task, _when, task_error

if TYPE_CHECKING:
    from .client import Client


#: the keys of a task record that are times (epoch seconds on the wire, datetimes here)
TIME_KEYS = ("submitted", "started", "completed", "received", "resubmitted")


def _epoch(value: Any) -> Any:
    """A query with its datetimes as epoch seconds to the microsecond, as the controller gives
    the records' times (a naive datetime is local time)."""
    if isinstance(value, datetime):
        return round(value.timestamp(), 6)
    if isinstance(value, dict):
        return {k: _epoch(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_epoch(v) for v in value]
    return value


def _single(jobs: Any) -> bool:
    """Whether ``jobs`` names one task whose result is a single value (not a list)."""
    if isinstance(jobs, (str, int)):
        return True
    return bool(getattr(jobs, "_single_result", False)) and len(getattr(jobs, "msg_ids", ())) == 1


class ControllerQueries:
    """The Client's requests answered by the controller itself.

    Parameters
    ----------
    client:
        Read for the settings users may change on it (``timeout``, ``block``) and its
        ``history``; AsyncHubResults belong to it.
    io:
        The client's I/O: the controller connection and the task tables.
    targets:
        Engine ids from a ``targets`` argument (``Submitter.targets``).
    """

    def __init__(self, client: "Client", io: ClientIO, targets: Callable[[Any], list[int]]) -> None:
        self.client = client
        self._io = io
        self._build_targets = targets

    @property
    def timeout(self) -> float:
        return self.client.timeout

    @property
    def block(self) -> bool:
        return self.client.block

    @property
    def history(self) -> list[str]:
        return self.client.history

    def msg_ids(self, jobs: Any) -> list[str]:
        """msg_ids from ``jobs``: msg_ids, indices into the client's history, AsyncResults."""
        if jobs is None:
            return []
        if isinstance(jobs, (str, int)) or hasattr(jobs, "msg_ids"):
            jobs = [jobs]
        out: list[str] = []
        for job in jobs:
            if isinstance(job, str):
                out.append(job)
            elif isinstance(job, int):
                out.append(self.history[job])
            elif hasattr(job, "msg_ids"):
                out.extend(job.msg_ids)
            else:
                raise TypeError(f"a job is a msg_id, a history index or an AsyncResult, not {job!r}")
        return out

    def _query(self, msg_type: str, content: dict[str, Any], block: bool = True) -> Any:
        coro = self._io.query(msg_type, content, self.timeout)
        if block:
            return self._io.run(coro, self.timeout + 5)
        return self._io.submit(coro)

    def abort(self, jobs: Any = None, targets: Any = None, block: bool | None = None, running: bool = False) -> Any:
        """Abort tasks that have not started: ``jobs`` (default all queued ones) on ``targets``.
        With ``running``, also those of ``jobs`` that engines are running: the controller answers
        them with ``TaskAborted`` and interrupts their engines (SIGINT, then SIGKILL after
        ``ControllerApp.interrupt_grace_period`` seconds). They finish with ``TaskAborted``."""
        block = self.block if block is None else block
        msg_ids = None if jobs is None else self.msg_ids(jobs)
        tids = None if targets is None or targets == "all" else self._build_targets(targets)
        request: dict[str, Any] = {"msg_ids": msg_ids, "targets": tids}
        if running:
            request["running"] = True
        result = self._query("abort_request", request, block)
        return None if block else result

    def send_signal(self, sig: int, targets: Any = None, block: bool | None = None) -> Any:
        """Send signal ``sig`` to the engines' processes (``signal.SIGINT`` interrupts the code they
        are running). It goes through each engine's control channel, which answers even while the
        engine is busy, so this works for engines on other hosts too."""
        block = self.block if block is None else block
        tids = None if targets is None or targets == "all" else self._build_targets(targets)
        result = self._query("signal_request", {"signum": int(sig), "targets": tids}, block)
        return None if block else result

    def report_engine_death(self, engine_id: int | None, pid: int, reason: str, hostname: str = "") -> int | None:
        """Tell the controller that engine ``engine_id``'s process (``pid``; ``engine_id`` None: the
        engine of that pid on ``hostname``) exited; return the engine's id as the controller knew it."""
        content = {"id": engine_id, "pid": int(pid), "reason": str(reason), "hostname": hostname}
        eid = self._query("engine_died_request", content)["content"].get("id")
        return eid if isinstance(eid, int) else None

    def shutdown(self, targets: Any = "all", restart: bool = False, hub: bool = False, block: bool | None = None) -> Any:
        """Stop engines (all by default); with ``hub=True`` the controller too."""
        if restart:
            raise NotImplementedError("engines cannot be restarted through the client: start new ones")
        block = self.block if block is None else block
        tids = None if targets is None or targets == "all" else self._build_targets(targets)
        if hub:
            self._io.expect_disconnect = True
        result = self._query("shutdown_request", {"targets": tids, "hub": bool(hub)}, block)
        return None if block else result

    def queue_status(self, targets: Any = "all", verbose: bool = False) -> dict[Any, Any]:
        """Per engine id: ``{"queue", "tasks", "completed"}`` counts (msg_id lists when verbose),
        and ``"unassigned"``: load-balanced tasks not yet given to an engine."""
        tids = None if targets is None or targets == "all" else self._build_targets(targets)
        msg = self._query("queue_request", {"targets": tids, "verbose": bool(verbose)})
        out: dict[Any, Any] = {}
        for key, value in msg["content"].items():
            if key == "status":
                continue
            out[int(key) if key.lstrip("-").isdigit() else key] = value
        if isinstance(targets, int) and tids:
            return out[tids[0]]
        return out

    def task_stats(self, since: int = 0) -> dict[str, Any]:
        """Task counts per group and per engine, and the last failures, changed after ``since``."""
        content = dict(self._query("task_stats_request", {"since": int(since)})["content"])
        content.pop("status", None)
        return content

    def result_status(self, msg_ids: Any, status_only: bool = True) -> dict[str, Any]:
        """``{"pending": [...], "completed": [...]}`` from the controller; without
        ``status_only``, also each completed task's result (or exception) by msg_id."""
        ids = self.msg_ids(msg_ids)
        msg = self._query("result_request", {"msg_ids": ids, "status_only": bool(status_only)})
        content = msg["content"]
        out: dict[str, Any] = {"pending": list(content.get("pending", [])),
                               "completed": list(content.get("completed", []))}
        if not status_only:
            for msg_id, task in self._records(msg).items():
                out[msg_id] = task.value
        return out

    def _records(self, msg: Message, tasks: dict[str, Task] | None = None) -> dict[str, Task]:
        """Tasks filled from a result_reply's records (into ``tasks`` when given)."""
        content = msg["content"]
        records = content.get("results") or {}
        buffers = msg["buffers"]
        out: dict[str, Task] = {}
        i = 0
        for msg_id in content.get("completed", []):
            rec = records.get(msg_id)
            if rec is None:
                continue
            n = int(rec.get("nbuffers", 0))
            bufs, i = buffers[i : i + n], i + n
            header = rec.get("header") or {}
            method = str(header.get("msg_type", "apply_reply")).partition("_")[0]
            if method not in ("apply", "execute", "clear"):
                method = "apply"
            md = rec.get("metadata") or {}
            task = (tasks or {}).get(msg_id) or Task(msg_id, method, md.get("engine_id"),
                                                     float(rec.get("submitted") or time.time()))
            task.method = method
            task.reply_md = md
            task.content = reply = rec.get("content") or {}
            task.received = float(rec.get("received") or time.time())
            if reply.get("status") != "ok":
                task.value, task.failed = task_error(task, reply, md), True
            elif method == "apply":
                if n:
                    try:
                        task.value = deserialize_result(bufs)
                        task.nbytes = sum(map(len, bufs))
                    except Exception as e:
                        task.value, task.failed = IPClusterError(f"could not unpickle the result of {msg_id}: {e}"), True
                else:
                    task.value, task.failed = ControllerError(
                        f"the controller did not keep the result of {msg_id} (too large, delivered straight to its client, or dropped)"), True
            elif method == "execute":
                task.value = ExecuteReply(msg_id, reply, task.metadata())
            task.expected = 0
            out[msg_id] = task
        return out

    async def _resolve(self, msg_ids: list[str]) -> list[Task]:
        """I/O thread: the tasks for msg_ids, asking the controller about those unknown here."""
        io = self._io
        found: dict[str, list[Task]] = {}
        unknown = []
        for msg_id in msg_ids:
            entry = io.replies.pending.get(msg_id) or io.replies.finished.get(msg_id)
            if entry is None:
                unknown.append(msg_id)
            elif isinstance(entry, Broadcast):
                found[msg_id] = list(entry.tasks.values())
            else:
                found[msg_id] = [entry]
        if unknown:
            msg = await io.query("result_request", {"msg_ids": unknown, "status_only": False}, self.timeout)
            for msg_id, task in self._records(msg).items():
                task.done = True
                io.replies.finished.add(task)
                found[msg_id] = [task]
            waiting = {}
            for msg_id in msg["content"].get("pending", []):
                task = Task(msg_id, "apply", None, time.time())
                io.replies.pending[msg_id] = task
                waiting[msg_id] = task
                found[msg_id] = [task]
            if waiting:
                io._spawn(self._poll(waiting))
        return [t for msg_id in msg_ids for t in found.get(msg_id, ())]

    def _tasks_for(self, msg_ids: list[str]) -> list[Task]:
        return self._io.run(self._resolve(list(msg_ids)), self.timeout + 5)  # type: ignore[no-any-return]

    async def _poll(self, waiting: dict[str, Task]) -> None:
        """I/O thread: ask the controller about tasks of other clients until they finish."""
        io = self._io
        delay = 0.05
        while waiting:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 1.0)
            waiting = {k: t for k, t in waiting.items() if not t.done}
            if not waiting:
                return
            try:
                msg = await io.query("result_request", {"msg_ids": list(waiting), "status_only": False}, self.timeout)
            except IPClusterError as e:
                for task in waiting.values():
                    io.replies.fail_task(task, e)
                io.replies.notify()
                return
            for msg_id, task in self._records(msg, waiting).items():
                waiting.pop(msg_id, None)
                if not task.done:
                    io.replies.complete(task)
            io.replies.notify()

    def get_result(self, indices_or_msg_ids: Any = None, block: bool | None = None, owner: bool = True) -> Any:
        """Results by msg_id or history index (default: the last), including tasks submitted by
        other clients (fetched from the controller). An AsyncHubResult, or its value if blocking."""
        block = self.block if block is None else block
        if indices_or_msg_ids is None:
            indices_or_msg_ids = -1
        single = _single(indices_or_msg_ids)
        ids = self.msg_ids(indices_or_msg_ids)
        ar = AsyncHubResult(self.client, self._tasks_for(ids), fname="get_result", owner=owner, single=single)
        return ar.get() if block else ar

    def resubmit(self, indices_or_msg_ids: Any = None, metadata: Any = None, block: bool | None = None) -> Any:
        """Run finished tasks again (as new tasks); an AsyncHubResult for the new ones."""
        block = self.block if block is None else block
        if indices_or_msg_ids is None:
            indices_or_msg_ids = -1
        single = _single(indices_or_msg_ids)
        ids = self.msg_ids(indices_or_msg_ids)
        new_ids = self._io.run(self._resubmit(ids), self.timeout + 5)
        ar = AsyncHubResult(self.client, self._tasks_for(new_ids), fname="resubmit", single=single)
        return ar.get() if block else ar

    async def _resubmit(self, ids: list[str]) -> list[str]:
        io = self._io
        msg = await io.query("resubmit_request", {"msg_ids": ids}, self.timeout)
        mapping = msg["content"].get("resubmitted") or {}
        new_ids = []
        for old in ids:
            new = mapping[old]
            old_task = io.replies.finished.get(old)
            task = Task(new, old_task.method if old_task else "apply", old_task.target if old_task else None, time.time())
            io.replies.pending[new] = task
            self.history.append(new)
            new_ids.append(new)
            orphan = io.replies.take_orphan(new)
            if orphan is not None:
                io.replies.on_reply(orphan)
        return new_ids

    def purge_local_results(self, jobs: Any = (), targets: Any = ()) -> None:
        """Forget finished results kept by this client (``'all'``, or by msg_id / engine).

        The cache's own evictions (see :mod:`.cache`) leave a msg_id as this does: absent here,
        so that ``get_result`` asks the controller."""
        finished = self._io.replies.finished
        if jobs == "all":
            on_io_thread(self._io, finished.clear, self.timeout + 5)
            return
        drop = set(self.msg_ids(jobs))
        engines = set(self._build_targets(targets)) if targets else set()

        def purge() -> None:
            for msg_id, task in finished.items():
                if msg_id in drop or task.engine_id in engines:
                    finished.discard(msg_id)

        on_io_thread(self._io, purge, self.timeout + 5)

    def purge_hub_results(self, jobs: Any = (), targets: Any = ()) -> None:
        """Make the controller forget finished task records."""
        msg_ids = "all" if jobs == "all" else self.msg_ids(jobs)
        engine_ids = self._build_targets(targets) if targets else []
        self._query("purge_request", {"msg_ids": msg_ids, "engine_ids": engine_ids})

    def purge_results(self, jobs: Any = (), targets: Any = (), owner: bool = True) -> None:
        """Forget finished results, here and in the controller: ``jobs`` (``'all'``, msg_ids,
        AsyncResults) and/or the results of ``targets`` engines."""
        if not jobs and not targets:
            raise ValueError("purge_results needs jobs or targets")
        self.purge_hub_results(jobs, targets)
        self.purge_local_results(jobs, targets)

    def purge_everything(self) -> None:
        """Forget all finished results and the local history."""
        self.purge_results("all")
        self.history.clear()

    def db_query(self, query: dict[str, Any], keys: Any = None) -> list[dict[str, Any]]:
        """Task records of the controller matching a MongoDB-style ``query``, oldest first.

        ``query`` maps record keys to a value or to ``{operator: argument}`` (``$lt $gt $lte $gte
        $eq $ne $in $nin $all $mod $exists``); datetimes in it compare with the records' times.
        ``keys``: the keys to return (default: all but ``buffers`` and ``result_buffers``);
        ``msg_id`` always comes. Times come back as aware datetimes. An unknown operator or a
        malformed query raises ``ControllerError`` naming it.
        """
        if isinstance(keys, str):
            keys = [keys]
        content = {"query": _epoch(query), "keys": None if keys is None else list(keys)}
        msg = self._query("db_request", content)
        reply, buffers = msg["content"], list(msg["buffers"])
        blens, rblens = reply.get("buffer_lens"), reply.get("result_buffer_lens")
        records: list[dict[str, Any]] = reply.get("records") or []
        for i, rec in enumerate(records):
            for key in TIME_KEYS:
                if rec.get(key) is not None:
                    rec[key] = _when(rec[key])
            for key in ("header", "result_header"):
                if isinstance(rec.get(key), dict) and isinstance(rec[key].get("date"), (int, float)):
                    rec[key] = {**rec[key], "date": _when(rec[key]["date"])}
            for key, lens in (("buffers", blens), ("result_buffers", rblens)):
                if lens is not None:
                    rec[key], buffers = buffers[: lens[i]], buffers[lens[i] :]
        return records

    def hub_history(self) -> list[str]:
        """msg_ids of every task the controller has a record of, in submission order."""
        return list(self._query("history_request", {})["content"].get("history", []))

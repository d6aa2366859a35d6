"""The controller's registry state: engines, outstanding tasks, dependencies and the record store.

Plain objects fed with events ("engine registered", "task submitted", "reply arrived") that
return decisions (:class:`Assign`, :class:`Fail`); no sockets and no awaits, so all of it is
unit-tested without processes. The router turns socket traffic into these calls and carries out
what they decide.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from ..error import (
    EngineError,
    IPClusterError,
    ImpossibleDependency,
    InvalidDependency,
    NoEnginesError,
    TaskAborted,
    TaskKilledEngines,
    TaskTimeout,
)
from ..protocol.messages import TASK_REQUESTS
from .db import TaskRecord, TaskStore
from .decisions import Action, Assign, EngineIdTaken, EngineInfo, Fail
from .dependencies import Dependency, State
from .schedulers import Scheduler
from .taskstats import TaskStats

#: how far down the queue to look for a task some engine can take, when the head cannot be placed
SCAN_LIMIT = 1000
GONE_KEPT = 1000  # engines gone whose (hostname, pid) -> id the hub remembers (Cluster death reports)


class Hub:
    def __init__(self, store: TaskStore, scheduler: Scheduler, task_kill_limit: int = 2) -> None:
        self.store = store
        self.scheduler = scheduler
        #: a load-balanced task running on this many engines when they died is not retried again (0: no limit)
        self.task_kill_limit = task_kill_limit
        self.engines: dict[int, EngineInfo] = {}
        self.by_uuid: dict[bytes, EngineInfo] = {}
        self.gone: dict[tuple[str, int], int] = {}  # (hostname, pid) -> id, oldest first
        # Load-balanced tasks no engine has room for, oldest first. One taken out of the middle (aborted,
        # timed out, its client gone) is only marked (``queued = False``) and skipped later: removing it from
        # a deque costs O(queue) each, and aborting a queued map of 100,000 tasks would cost 10^10 steps.
        self.unassigned: deque[TaskRecord] = deque()
        self._stale = 0  # records in ``unassigned`` that are no longer queued
        self.waiting: dict[str, TaskRecord] = {}  # tasks whose dependencies are not met yet
        self.dependents: dict[str, set[str]] = {}  # msg_id -> waiting tasks naming it
        self.clients: dict[bytes, float] = {}  # connected client idents -> connection time
        self.pinged: dict[bytes, float] = {}  # clients that ping -> time.monotonic() of the last ping
        self.no_engines_since: float | None = time.time()  # None while any engine is registered
        self.stats = TaskStats()  # progress per group, completions per engine, last failures
        self._next_id = 0

    # -- engines ---------------------------------------------------------------------------
    def register_engine(self, uuid: bytes, hostname: str = "", pid: int = 0, data_url: str = "",
                        requested_id: int | None = None) -> EngineInfo:
        """Register an engine under the next id, or ``requested_id``: a gone engine's (a restart). Raises
        :class:`EngineIdTaken` while a registered engine holds that id, ValueError for an id never given out."""
        if uuid in self.by_uuid:
            raise ValueError(f"an engine with uuid {uuid!r} is already registered")
        eid = self._next_id if requested_id is None else requested_id
        if requested_id is None:
            self._next_id += 1
        elif requested_id in self.engines:
            raise EngineIdTaken(f"engine id {requested_id} is held by a registered engine")
        elif not 0 <= requested_id < self._next_id:
            raise ValueError(f"engine id {requested_id} was never given out: only the id of an engine "
                             "that went away can be asked for")
        info = EngineInfo(eid, uuid, hostname, pid, time.time(), data_url=data_url)
        self.engines[info.id] = info
        self.by_uuid[uuid] = info
        self.scheduler.add_engine(info.id)
        self.no_engines_since = None
        return info

    def unregister_engine(self, uuid: bytes, died: bool = False) -> tuple[EngineInfo, list[Action]] | None:
        """Remove an engine. Its unfinished load-balanced tasks with retries left go elsewhere;
        the others fail with EngineError. Tasks that could only follow it become impossible.
        ``died`` (it did not unregister): the task it ran (:meth:`running_on`) is charged with the death,
        and one charged ``task_kill_limit`` times fails with TaskKilledEngines instead of a retry."""
        info = self.by_uuid.pop(uuid, None)
        if info is None:
            return None
        running = next(iter(info.tasks), None) if died and not info.queue else None  # see running_on
        self.gone[(info.hostname, info.pid)] = info.id
        if len(self.gone) > GONE_KEPT:
            del self.gone[next(iter(self.gone))]
        del self.engines[info.id]
        self.scheduler.remove_engine(info.id)
        if not self.engines:
            self.no_engines_since = time.time()
        self.stats.engine_gone(info.id)
        actions: list[Action] = []
        lost = EngineError(f"engine {info.id} went away before finishing the task")
        for msg_id in info.outstanding():
            rec = self.store.get(msg_id)
            if rec is None or rec.completed:
                continue
            if msg_id == running:
                rec.killed, limit = [*(rec.killed or ()), info.id], self.task_kill_limit
                if rec.balanced and limit and len(rec.killed) >= limit:
                    actions.append(Fail(rec, TaskKilledEngines(
                        f"task {msg_id} was running on {len(rec.killed)} engines when they died (engines "
                        f"{', '.join(map(str, rec.killed))}): it is not retried again, to spare the other "
                        f"engines (ControllerApp.task_kill_limit = {limit})"), engine_id=info.id))
                    continue
            if rec.broadcast is not None:
                rec.broadcast.discard(info.id)
                actions.append(Fail(rec, lost, engine_id=info.id))
            elif rec.balanced and rec.retries > 0:
                rec.retries -= 1
                actions.extend(self._place(rec))
            else:
                actions.append(Fail(rec, lost))
        # queued tasks restricted to engines that are all gone can never run
        if self.unassigned:
            keep: deque[TaskRecord] = deque()
            for rec in self.unassigned:
                if not rec.queued:
                    continue
                allowed = self._allowed(rec)
                if allowed is not None and not allowed & self.engines.keys():
                    rec.queued = False
                    actions.append(Fail(rec, ImpossibleDependency(
                        f"no registered engine can run this task any more (engine {info.id} went away)")))
                else:
                    keep.append(rec)
            self.unassigned = keep
            self._stale = 0
        return info, actions

    def engine(self, eid: Any) -> EngineInfo:
        info = self.engines.get(eid) if isinstance(eid, int) else None
        if info is None:
            raise NoEnginesError(f"engine {eid!r} is not registered (engines: {sorted(self.engines)})")
        return info

    # -- submitting --------------------------------------------------------------------------
    def new_record(self, header: dict[str, Any], client: bytes, request: list[Any] | None = None,
                   metadata: dict[str, Any] | None = None) -> TaskRecord:
        """Record a new request; a task (apply, execute) is counted in :attr:`stats` under the
        group its ``metadata`` names."""
        msg_type = header["msg_type"]
        rec = TaskRecord(header["msg_id"], msg_type, client, header, submitted=time.time(), request=request)
        if msg_type in TASK_REQUESTS:
            target = header.get("target")
            parts = len(target) if type(target) is list else 1
            md = metadata if type(metadata) is dict else {}
            rec.tag = self.stats.submitted(msg_type, md, client, rec.submitted, parts)
        self.store.add(rec)
        return rec

    def submit_direct(self, rec: TaskRecord, target: Any) -> list[Action]:
        """A task for one engine, or (a list of ids) the same task for several: a broadcast."""
        try:
            if isinstance(target, list):
                infos = [self.engine(t) for t in target]
                if not infos:
                    raise NoEnginesError("a broadcast needs at least one target engine")
                rec.broadcast = {i.id for i in infos}
                for info in infos:
                    info.queue[rec.msg_id] = None
                return [Assign(rec, info) for info in infos]
            info = self.engine(target)
        except NoEnginesError as e:
            return [Fail(rec, e)]
        rec.engine_id = info.id
        info.queue[rec.msg_id] = None
        return [Assign(rec, info)]

    def submit_balanced(self, rec: TaskRecord, metadata: dict[str, Any]) -> list[Action]:
        """A load-balanced task: place it now, queue it, or hold it until its dependencies are met."""
        rec.balanced = True
        try:
            targets = metadata.get("targets")
            if targets is not None:
                if isinstance(targets, int):
                    targets = [targets]
                rec.allowed = frozenset(targets)
                if self.engines and not rec.allowed & self.engines.keys():
                    raise NoEnginesError(f"none of the requested targets {sorted(rec.allowed)} is registered")
            rec.retries = int(metadata.get("retries") or 0)
            timeout = metadata.get("timeout")
            rec.timeout = float(timeout) if timeout else None
            rec.after = Dependency.parse(metadata.get("after"))
            rec.follow = Dependency.parse(metadata.get("follow"))
        except (IPClusterError, TypeError, ValueError) as e:
            err = e if isinstance(e, IPClusterError) else InvalidDependency(str(e))
            return [Fail(rec, err)]
        return self._place(rec)

    def _allowed(self, rec: TaskRecord) -> frozenset[int] | set[int] | None:
        allowed: frozenset[int] | set[int] | None = rec.allowed
        if rec.follow is not None:
            where = rec.follow.engines(self.store)
            allowed = where if allowed is None else allowed & where
        return allowed

    def _place(self, rec: TaskRecord) -> list[Action]:
        for dep in (rec.after, rec.follow):
            if dep is None:
                continue
            state, why = dep.check(self.store)
            if state is State.IMPOSSIBLE:
                return [Fail(rec, ImpossibleDependency(why))]
            if state is State.UNMET:
                self.waiting[rec.msg_id] = rec
                for m in dep.msg_ids:
                    self.dependents.setdefault(m, set()).add(rec.msg_id)
                return []
        allowed = self._allowed(rec)
        if allowed is not None and not allowed:
            return [Fail(rec, ImpossibleDependency("the tasks this one follows ran on different engines"))]
        if allowed is not None and self.engines and not allowed & self.engines.keys():
            return [Fail(rec, ImpossibleDependency(f"none of the engines {sorted(allowed)} is registered"))]
        if rec.tried and rec.ename == "UnmetDependency":
            usable = self.engines.keys() if allowed is None else allowed & self.engines.keys()
            if usable <= rec.tried:
                return [Fail(rec, ImpossibleDependency(
                    f"the task's dependencies are unmet on every engine it may use ({sorted(usable)})"))]
        eid = None if len(self.unassigned) > self._stale else self._pick(rec, allowed)
        if eid is None:
            rec.queued = True
            self.unassigned.append(rec)
            return []
        return [self._give(rec, eid)]

    def _pick(self, rec: TaskRecord, allowed: Any) -> int | None:
        if rec.tried:
            eid = self.scheduler.pick(allowed, rec.tried)
            if eid is not None or (rec.ename == "UnmetDependency"):
                return eid
        return self.scheduler.pick(allowed)

    def _give(self, rec: TaskRecord, eid: int) -> Assign:
        info = self.engines[eid]
        rec.engine_id = eid
        info.tasks[rec.msg_id] = None
        self.scheduler.assigned(eid)
        return Assign(rec, info)

    def drain_unassigned(self) -> list[Action]:
        """Give queued tasks to engines that can take them, oldest first."""
        actions: list[Action] = []
        if not self.unassigned:
            return actions
        skipped: list[TaskRecord] = []
        scanned = 0
        while self.unassigned and scanned < SCAN_LIMIT:
            rec = self.unassigned[0]
            if not rec.queued:  # taken out earlier (aborted, timed out)
                self.unassigned.popleft()
                self._stale -= 1
                continue
            allowed = self._allowed(rec)
            eid = self._pick(rec, allowed)
            if eid is None:
                if allowed is None and not rec.tried:
                    break  # no engine has room for an unrestricted task: nothing else fits either
                skipped.append(self.unassigned.popleft())
                scanned += 1
                continue
            self.unassigned.popleft()
            rec.queued = False
            actions.append(self._give(rec, eid))
        self.unassigned.extendleft(reversed(skipped))
        return actions

    # -- completing --------------------------------------------------------------------------
    def finish(self, engine_uuid: bytes, msg_id: str, reply: list[Any],
               content: dict[str, Any]) -> tuple[TaskRecord | None, bool, list[Action]]:
        """A reply came back from an engine. Returns the record, whether to forward the reply to
        the client (not when the task is retried elsewhere or already answered), and what to do next.
        """
        rec = self.store.get(msg_id)
        info = self.by_uuid.get(engine_uuid)
        if info is not None:
            if info.tasks.pop(msg_id, 0) is None:
                self.scheduler.finished(info.id)
                now = time.monotonic()
                if info.busy_since is not None:
                    self.scheduler.observe(now - info.busy_since)  # one task's time, back to back
                info.busy_since = now if info.tasks else None
            else:
                info.queue.pop(msg_id, None)
            info.completed += 1
        if rec is None:
            return None, True, self.drain_unassigned()
        if rec.completed and rec.broadcast is None:
            return rec, False, self.drain_unassigned()  # answered already (timed out, aborted)
        status = content.get("status", "ok")
        tag = rec.tag
        actions: list[Action] = []
        if rec.balanced and status == "error" and info is not None:
            ename = content.get("ename")
            if ename == "UnmetDependency" or rec.retries > 0:
                if tag is not None:
                    self.stats.answered(tag, info.id, status, content, final=False)
                if ename != "UnmetDependency":
                    rec.retries -= 1
                rec.ename = ename
                rec.tried = (rec.tried or set()) | {info.id}
                actions.extend(self._place(rec))
                actions.extend(self.drain_unassigned())
                return rec, False, actions
        received = time.time()
        if tag is not None:
            self.stats.answered(tag, info.id if info is not None else None, status, content, msg_id, received)
        if rec.broadcast is not None and info is not None:
            rec.broadcast.discard(info.id)
            if rec.broadcast:
                rec.status = status if rec.status in (None, "ok") else rec.status
                return rec, True, actions
        rec.status = status if rec.status in (None, "ok") else rec.status
        rec.ename = content.get("ename")
        self.store.complete(rec, reply, received)
        actions.extend(self._release(msg_id))
        actions.extend(self.drain_unassigned())
        return rec, True, actions

    def fail_part(self, rec: TaskRecord, content: dict[str, Any], engine_id: int | None) -> None:
        """The controller answered a task (or one engine's part of a broadcast) itself, with
        this error content: count it (:meth:`fail` closes the task)."""
        if rec.tag is not None:
            self.stats.answered(rec.tag, engine_id, content.get("status", "error"), content, rec.msg_id, time.time(),
                                ran=False)

    def fail(self, rec: TaskRecord, reply: list[Any], status: str, ename: str) -> list[Action]:
        """Close a task the controller answered itself (engine died, aborted, timed out)."""
        self._forget(rec)
        rec.status = status
        rec.ename = ename
        self.store.complete(rec, reply, time.time())
        return self._release(rec.msg_id)

    def _forget(self, rec: TaskRecord) -> None:
        """Take an unfinished task out of wherever it waits."""
        if self.waiting.pop(rec.msg_id, None) is not None:
            for dep in (rec.after, rec.follow):
                for m in dep.msg_ids if dep is not None else ():
                    waiting = self.dependents.get(m)
                    if waiting is not None:
                        waiting.discard(rec.msg_id)
                        if not waiting:
                            del self.dependents[m]
        if rec.queued:
            rec.queued = False
            self._stale += 1
            if self._stale > 64 and 2 * self._stale > len(self.unassigned):  # compact now and then
                self.unassigned = deque(r for r in self.unassigned if r.queued)
                self._stale = 0

    def _release(self, msg_id: str) -> list[Action]:
        """Re-check the tasks that were waiting on ``msg_id``."""
        waiting = self.dependents.pop(msg_id, None)
        if not waiting:
            return []
        actions: list[Action] = []
        for dep_id in sorted(waiting, key=lambda m: self.waiting[m].submitted if m in self.waiting else 0):
            rec = self.waiting.get(dep_id)
            if rec is None:
                continue
            still = any(dep is not None and dep.check(self.store)[0] is State.UNMET for dep in (rec.after, rec.follow))
            if still:
                continue  # still registered under the other msg_ids it waits for
            self._forget(rec)
            actions.extend(self._place(rec))
        return actions

    def expire(self, msg_id: str) -> list[Action]:
        """A task's timeout passed: fail it unless it finished."""
        rec = self.store.get(msg_id)
        if rec is None or rec.completed:
            return []
        return [Fail(rec, TaskTimeout(f"task {msg_id} did not finish within its timeout of {rec.timeout} s"))]

    def running_on(self, rec: TaskRecord) -> EngineInfo | None:
        """The engine running ``rec`` (engines run tasks in order: the first one unanswered there), else None."""
        info = self.engines.get(rec.engine_id) if rec.engine_id is not None and not rec.completed else None
        if info is None or rec.broadcast is not None or (info.queue and info.tasks):  # both kinds: unknown
            return None
        return info if next(iter(info.queue or info.tasks), None) == rec.msg_id else None

    def abort_running(self, msg_ids: Iterable[str]) -> list[tuple[Fail, EngineInfo]]:
        """The running tasks of ``msg_ids``: their TaskAborted answers and the engines to interrupt."""
        out = []
        for msg_id in msg_ids:
            rec = self.store.get(msg_id)
            info = self.running_on(rec) if rec is not None else None
            if rec is not None and info is not None:
                out.append((Fail(rec, TaskAborted(f"task {msg_id} was aborted while it ran on engine {info.id} "
                                                  "(interrupted with SIGINT)"), "aborted"), info))
        return out

    def abort(self, msg_ids: Iterable[str] | None) -> list[Action]:
        """Abort queued and waiting tasks (all of them when ``msg_ids`` is None)."""
        wanted = None if msg_ids is None else set(msg_ids)
        victims = [r for r in [*self.queued(), *self.waiting.values()] if wanted is None or r.msg_id in wanted]
        return [Fail(r, TaskAborted("task aborted before it ran"), "aborted") for r in victims]

    # -- clients and the lack of engines -----------------------------------------------------
    def silent_clients(self, before: float) -> list[bytes]:
        """Clients that ping and have not since ``before`` (``time.monotonic()``)."""
        return [c for c, t in self.pinged.items() if t < before]

    def client_gone(self, client: bytes, drop_queued: bool = True) -> list[Action]:
        """A client closed or fell silent: forget it, and (``drop_queued``) abort its tasks that
        wait at the controller, so they do not hold engines from the clients still there. Tasks
        already given to an engine run on; their results are kept as usual. O(queue), once per
        client gone."""
        self.pinged.pop(client, None)
        self.clients.pop(client, None)
        if not drop_queued:
            return []
        gone = TaskAborted("its client went away before it was given to an engine")
        victims = [r for r in self.unassigned if r.queued and r.client == client]
        victims.extend(r for r in self.waiting.values() if r.client == client)
        return [Fail(r, gone, "aborted") for r in victims]

    def starved(self, now: float, timeout: float) -> list[Action]:
        """Queued load-balanced tasks that waited ``timeout`` seconds while no engine at all was
        registered: they fail with NoEnginesError (``now`` from ``time.time()``; 0: never)."""
        since = self.no_engines_since
        if timeout <= 0 or since is None or now - since < timeout or not self.unassigned:
            return []
        cutoff = now - timeout
        err = NoEnginesError(f"no engine was registered for {timeout:g} s (ControllerApp.engine_timeout) "
                             "while this task waited, so it did not run: start engines, or check why they "
                             "do not register")
        victims = []
        for rec in self.unassigned:  # oldest first
            if rec.queued:
                if rec.submitted > cutoff:
                    break
                victims.append(rec)
        return [Fail(r, err) for r in victims]

    # -- queries ---------------------------------------------------------------------------
    def queued(self) -> list[TaskRecord]:
        """The load-balanced tasks waiting for an engine with room, oldest first."""
        return [r for r in self.unassigned if r.queued]

    def queue_status(self, targets: Iterable[int] | None = None, verbose: bool = False) -> dict[str, Any]:
        ids = sorted(self.engines) if targets is None else [self.engine(t).id for t in targets]
        out: dict[str, Any] = {}
        completed_by_engine: dict[int, list[str]] = {}
        if verbose:
            for msg_id in self.store.completed_ids(ids):
                rec = self.store.get(msg_id)
                if rec is not None and rec.engine_id is not None:
                    completed_by_engine.setdefault(rec.engine_id, []).append(msg_id)
        for eid in ids:
            info = self.engines[eid]
            if verbose:
                out[str(eid)] = {"queue": list(info.queue), "tasks": list(info.tasks),
                                 "completed": completed_by_engine.get(eid, [])}
            else:
                out[str(eid)] = {"queue": len(info.queue), "tasks": len(info.tasks),
                                 "completed": info.completed}
        pending = [*self.queued(), *self.waiting.values()]
        out["unassigned"] = [r.msg_id for r in pending] if verbose else len(pending)
        return out

    def engine_details(self) -> dict[str, dict[str, Any]]:
        return {str(eid): info.details() for eid, info in sorted(self.engines.items())}

    def engine_table(self) -> dict[str, str]:
        return {str(eid): info.uuid.decode(errors="replace") for eid, info in sorted(self.engines.items())}

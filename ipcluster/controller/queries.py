"""The controller's answers to the queries of clients: connection, pings, queue status, task
statistics, results by msg_id, task records by query (:mod:`.dbquery`), purge, history, abort, resubmit, signal, shutdown, and dask's scheduler.

Kept apart from :mod:`.router`, which moves frames between sockets, because it changes with the
query protocol. Each handler takes the asking client's identity and the request's content (typed
by :mod:`ipcluster.protocol.messages`) and returns the reply's content and buffers, or raises:
:meth:`~ipcluster.protocol.receive.Handlers.answer` turns the error into an error reply.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..error import EngineError
from ..protocol import messages
from ..protocol.receive import Reply
from ..protocol.session import DELIM, dumps
from . import dbquery

if TYPE_CHECKING:
    from .router import Router


class Queries:
    """Answers client queries from the hub's state; sends to engines through the router."""

    def __init__(self, router: "Router") -> None:
        self.router = router
        self.hub = router.hub
        self.session = router.session

    def connection_request(self, client: bytes, c: messages.ConnectionRequest) -> Reply:
        self.hub.clients[client] = time.time()
        return {"engines": self.hub.engine_table(), "engine_info": self.hub.engine_details(),
                "cluster_id": self.router.cluster_id,
                "task_scheme": self.hub.scheduler.name, "engine_timeout": self.router.engine_timeout,
                "max_frame_bytes": self.router.max_client_frame}, []

    def ping_request(self, client: bytes, c: messages.PingRequest) -> Reply:
        """A client's heartbeat: note it is alive; a closing one is gone at once. Pings come over
        a socket of their own and name the client's request identity; the last one, ``closing``,
        comes after the client's requests, on its request socket."""
        if c.get("closing"):
            self.router.client_gone(client, "it closed")
        else:
            self.hub.pinged[str(c.get("client") or "").encode() or client] = time.monotonic()
        return {}, []

    def queue_request(self, client: bytes, c: messages.QueueRequest) -> Reply:
        return self.hub.queue_status(c.get("targets"), bool(c.get("verbose"))), []

    def task_stats_request(self, client: bytes, c: messages.TaskStatsRequest) -> Reply:
        since = c.get("since", 0)
        return self.hub.stats.query(since if type(since) is int else 0), []

    def result_request(self, client: bytes, c: messages.ResultRequest) -> Reply:
        msg_ids = c.get("msg_ids") or []
        status_only = bool(c.get("status_only"))
        pending, completed, results, buffers = [], [], {}, []
        for msg_id in msg_ids:
            rec = self.hub.store.get(msg_id)
            if rec is None:
                raise KeyError(f"no task with msg_id {msg_id!r} (never submitted, or purged)")
            if not rec.completed:
                pending.append(msg_id)
                continue
            completed.append(msg_id)
            if status_only:
                continue
            entry: dict[str, Any] = {"result_dropped": rec.result_dropped, "engine_id": rec.engine_id,
                                     "submitted": rec.submitted, "received": rec.received}
            if rec.reply is None:
                entry.update(header=None, content={"status": rec.status, "ename": rec.ename},
                             metadata={"engine_id": rec.engine_id}, nbuffers=0)
            else:
                _, reply = self.session.unpack([DELIM, *rec.reply], verify=False)
                entry.update(header=reply["header"], content=reply["content"], metadata=reply["metadata"],
                             nbuffers=len(reply["buffers"]))
                buffers.extend(reply["buffers"])
            results[msg_id] = entry
        return {"pending": pending, "completed": completed, "results": results}, buffers

    def purge_request(self, client: bytes, c: messages.PurgeRequest) -> Reply:
        msg_ids, engine_ids = c.get("msg_ids") or [], c.get("engine_ids") or []
        store = self.hub.store
        if msg_ids == "all":
            store.drop(store.completed_ids())
        else:
            for msg_id in msg_ids:
                rec = store.get(msg_id)
                if rec is None:
                    raise KeyError(f"no task with msg_id {msg_id!r}")
                if not rec.completed:
                    raise ValueError(f"task {msg_id!r} is still pending; it cannot be purged")
            store.drop(msg_ids)
        if engine_ids:
            store.drop(store.completed_ids(engine_ids))
        return {}, []

    def history_request(self, client: bytes, c: messages.HistoryRequest) -> Reply:
        return {"history": self.hub.store.history()}, []

    def abort_request(self, client: bytes, c: messages.AbortRequest) -> Reply:
        msg_ids = c.get("msg_ids")
        targets = c.get("targets")
        running = self.hub.abort_running(msg_ids) if c.get("running") and msg_ids else []
        self.router.carry_out(self.hub.abort(msg_ids) + [fail for fail, _ in running])
        for fail, info in running:
            self.router.care.interrupt(fail.record.msg_id, info.uuid, "aborted")
        engines = self.hub.engines.values() if targets is None else [self.hub.engine(t) for t in targets]
        for info in engines:
            _, frames = self.session.serialize("abort_request", {"msg_ids": msg_ids}, idents=[info.uuid])
            self.router.to_engine(frames)
        return {}, []

    def resubmit_request(self, client: bytes, c: messages.ResubmitRequest) -> Reply:
        """Run finished tasks again, as new tasks answered to the asking client."""
        msg_ids = c.get("msg_ids") or []
        recs = []
        for msg_id in msg_ids:
            rec = self.hub.store.get(msg_id)
            if rec is None:
                raise KeyError(f"no task with msg_id {msg_id!r}")
            if not rec.completed:
                raise ValueError(f"task {msg_id!r} has not finished; only finished tasks can be resubmitted")
            if rec.request is None:
                raise ValueError(f"the request of task {msg_id!r} is no longer stored (too large, sent straight to its engine, or evicted)")
            recs.append(rec)
        mapping = {}
        for rec in recs:
            assert rec.request is not None
            _, _, old = self.session.peek(rec.request, verify=False)
            header = dict(rec.header, msg_id=self.session.new_msg_id(), date=time.time())
            _, req = self.session.unpack(rec.request, verify=False)  # the buffers, in order
            frames = self.session.pack(dumps(header), old.part(1), old.part(2), old.part(3), req["buffers"])
            mapping[rec.msg_id] = header["msg_id"]
            _, i, packet = self.session.peek(frames)
            self.router.route_request(client, packet, frames, i)
        return {"resubmitted": mapping}, []

    def signal_request(self, client: bytes, c: messages.SignalRequest) -> Reply:
        """Deliver a signal (SIGINT to interrupt) to engines, through each engine's control thread,
        which answers even while the engine runs user code."""
        signum = int(c.get("signum", 2))
        targets = c.get("targets")
        engines = list(self.hub.engines.values()) if targets is None else [self.hub.engine(t) for t in targets]
        missed = []
        for info in engines:
            _, frames = self.session.serialize("signal_request", {"signum": signum}, idents=[info.uuid + messages.CONTROL_SUFFIX])
            if not self.router.to_engine(frames):
                missed.append(info.id)
        if missed:
            raise EngineError(f"could not reach the control channel of engine(s) {missed}")
        return {}, []

    def engine_died_request(self, client: bytes, c: messages.EngineDiedRequest) -> Reply:
        """A Cluster saw engine ``id``'s process exit: declare it dead now (if that pid still holds the id).
        Without ``id``: the engine of that ``pid`` on ``hostname``, registered or gone lately."""
        pid, eid = c.get("pid"), c.get("id")
        if eid is None:
            host = str(c.get("hostname") or "")
            eid = next((i.id for i in self.hub.engines.values() if i.pid == pid and i.hostname == host),
                       self.hub.gone.get((host, pid)))  # type: ignore[arg-type]
        info = self.hub.engines.get(eid) if isinstance(eid, int) else None
        if info is None or info.pid != pid:
            return {"declared": False, "id": eid}, []
        self.router.engine_gone(info.uuid, f"its process exited: {c.get('reason') or 'no reason given'}")
        return {"declared": True, "id": eid}, []

    def shutdown_request(self, client: bytes, c: messages.ShutdownRequest) -> Reply:
        targets = c.get("targets")
        engines = list(self.hub.engines.values()) if targets is None else [self.hub.engine(t) for t in targets]
        for info in engines:
            _, frames = self.session.serialize("shutdown_request", {}, idents=[info.uuid])
            self.router.to_engine(frames)
        if c.get("hub"):
            self.router.log.info("shutdown requested by a client")
            # answer first, then stop once the reply has been handed to ZeroMQ
            asyncio.get_running_loop().call_soon(self.router.stop)
        return {}, []

    async def become_dask_request(self, client: bytes, c: messages.BecomeDaskRequest) -> Reply:
        """Start dask's scheduler in this process (a second or more: in a worker thread)."""
        dask = self.router.dask
        address = await asyncio.to_thread(dask.start, int(c.get("port") or 0), dict(c.get("scheduler_args") or {}))
        return {"address": address}, []

    async def stop_dask_request(self, client: bytes, c: messages.StopDaskRequest) -> Reply:
        return {"stopped": await asyncio.to_thread(self.router.dask.stop)}, []

    async def db_request(self, client: bytes, c: messages.DbRequest) -> Reply:
        """Task records matching a MongoDB-style query (ipyparallel's ``db_query``), oldest first.

        The query is checked here (a bad one fails at once) and the candidate records taken
        here, on the event loop; matching them and building the records, which may decode kept
        frames of many tasks, runs in a worker thread while the router goes on routing (it reads each
        kept frame list once, so a reply the store evicts meanwhile is either whole or absent)."""
        query, keys = c.get("query"), c.get("keys")
        dbquery.compile_query(query)
        dbquery.check_keys(keys)
        uuids = {eid: info.uuid for eid, info in self.hub.engines.items()}
        store = self.hub.store
        records = dbquery.candidates(query, store.get, store.history)
        return await asyncio.to_thread(dbquery.find, records, query, keys, self.session, uuids)

    #: queries answered when a wait is over, in a task of their own while the router serves the rest
    LATER: dict[str, Callable[..., Awaitable[Reply]]] = {
        "become_dask_request": become_dask_request,
        "stop_dask_request": stop_dask_request,
        "db_request": db_request,
    }

    #: the controller's answer to each query of a client, by msg_type (task requests are routed
    #: to engines instead: messages.ENGINE_REQUESTS)
    TABLE: dict[str, Callable[..., Reply]] = {
        "connection_request": connection_request,
        "ping_request": ping_request,
        "queue_request": queue_request,
        "task_stats_request": task_stats_request,
        "result_request": result_request,
        "purge_request": purge_request,
        "history_request": history_request,
        "abort_request": abort_request,
        "resubmit_request": resubmit_request,
        "signal_request": signal_request,
        "engine_died_request": engine_died_request,
        "shutdown_request": shutdown_request,
    }

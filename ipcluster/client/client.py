"""``Client``: a connection to a cluster's controller.

A Client is composed of its I/O (:class:`~._io.ClientIO`: sockets, the I/O thread, the task
tables), the :class:`~.submit.Submitter` through which it and its views send tasks, and the
:class:`~.queries.ControllerQueries` the controller answers itself (abort, results by msg_id,
purge...), whose public methods it offers under the same names.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import zmq
from traitlets.config import Configurable

from ..error import ClusterTimeout, IPClusterError
from ..protocol.connection import check_key, find_connection_file, read_connection_file, shm_folder, url
from ..protocol.session import Message, Session
from . import activation
from ._io import ClientIO
from .asyncresult import AsyncResult
from .cache import CacheOptions
from .daskcluster import DaskBridge
from .liveness import LivenessOptions
from .queries import ControllerQueries
from .remotefunction import getname
from .replies import TaskMapping
from .submit import Submitter
from .task import Broadcast
from .balanced import LoadBalancedView
from .view import BroadcastView, DirectView

log = logging.getLogger(__name__)


class Client(CacheOptions, LivenessOptions, Configurable):
    """A connection to an ipcluster controller.

    Parameters
    ----------
    url_file : str
        The controller's client connection file (``ipcontroller-client.json``). Default: the
        one of ``profile``/``cluster_id`` in ``ipython_dir`` (``$IPYTHONDIR``).
    profile, profile_dir, ipython_dir, cluster_id : str
        Where to find the connection file when ``url_file`` is not given.
    connection_info : dict
        The connection file's content, instead of a file.
    context : zmq.Context
        A ZeroMQ context to use (default: a private one, terminated by :meth:`close`).
    timeout : float
        Seconds to wait for the controller to answer (connection and queries).
    cluster : Cluster
        The cluster this client belongs to, if any (``rc.cluster``).
    expected_engines : int or callable
        How many engines :meth:`wait_for_engines` waits for when not told: a number, or a
        function asked at each wait (a Cluster passes the count of engines it started).
    engine_waiter : callable
        ``engine_waiter(client, n, timeout)`` (``timeout`` in seconds, ``math.inf`` for none)
        waits for ``n`` engines in a blocking :meth:`wait_for_engines`, raising as soon as one
        cannot come: a Cluster's fails at once when an engine exits or a batch job ends.
    results_cache_size, results_cache_max_bytes, controller_hb_period, controller_hb_misses
        The result cache's bounds (see :meth:`cache_info`) and the controller's liveness check
        (traits: ``config`` and ``parent`` may set them as ``c.Client.<name>``).

    Raises
    ------
    ipcluster.error.TimeoutError
        No controller answered within ``timeout``.
    ipcluster.error.AuthenticationError
        The controller rejected the key.
    """

    #: default of ``block`` for views made from this client
    block: bool = False

    def __init__(
        self,
        url_file: str | None = None,
        profile: str | None = None,
        profile_dir: str | None = None,
        ipython_dir: str | None = None,
        context: zmq.Context | None = None,
        debug: bool = False,
        sshserver: str | None = None,
        sshkey: str | None = None,
        password: str | None = None,
        paramiko: bool | None = None,
        timeout: float = 10,
        cluster_id: str | None = None,
        cluster: Any = None,
        connection_info: dict[str, Any] | None = None,
        expected_engines: int | Callable[[], int] | None = None,
        engine_waiter: Callable[[Any, int, float | None], Any] | None = None,
        **extra_args: Any,
    ) -> None:
        super().__init__(**{k: extra_args.pop(k) for k in list(extra_args) if self.has_trait(k)})
        if sshserver or sshkey or paramiko:
            raise NotImplementedError("SSH tunnels are not supported by the ipcluster client yet")
        if extra_args:
            log.warning("Client ignores %s", ", ".join(sorted(extra_args)))
        self.debug = debug
        self.cluster = cluster
        self.expected_engines = expected_engines
        self.engine_waiter = engine_waiter
        self.timeout = timeout
        self.profile = profile or "default"
        self.history: list[str] = []
        if connection_info is not None:
            info = dict(connection_info)
            where = "the given connection_info"
            check_key(info, where)
            self.connection_file = None
        else:
            if url_file is None:
                url_file = str(find_connection_file(
                    "client", profile=self.profile, cluster_id=cluster_id or "",
                    profile_path=profile_dir, ipython_dir=ipython_dir,
                ))
            info = read_connection_file(url_file, "client")
            where = str(url_file)
            self.connection_file = url_file
        scheme = info.get("signature_scheme", "hmac-sha256")
        if scheme != "hmac-sha256":
            raise IPClusterError(f"unsupported signature scheme {scheme!r} in {where}")
        self.cluster_id = info.get("cluster_id", cluster_id or "")
        self.session = Session(info["key"])
        client_url = url(info, "client_port")
        self._io = io = ClientIO(self.session, client_url, url(info, "iopub_port"), context=context,
                                 where=f"{client_url} (from {where})", cache_size=self.results_cache_size,
                                 cache_bytes=self.results_cache_max_bytes, shm_dir=shm_folder(info),
                                 hb_period=self.controller_hb_period, hb_misses=self.controller_hb_misses)
        self._finalizer = weakref.finalize(self, io.close)
        #: sends this client's tasks (views describe requests and hand them to it)
        self.submitter = Submitter(self, self.session, io, self.history)
        self._queries = ControllerQueries(self, io, self.submitter.targets)
        self._dask = DaskBridge(self, io)
        try:
            content = io.run(self._connect(timeout), timeout + 5)
        except BaseException:
            self.close()
            raise
        self._task_scheme = content.get("task_scheme", "")
        #: seconds the controller lets a load-balanced task wait while no engine is registered (0: forever)
        self.engine_timeout: float = float(content.get("engine_timeout") or 0)
        self.session.max_frame = int(content.get("max_frame_bytes") or 0)  # serialize refuses larger buffers
        activation.activate_in_ipython(self)

    async def _connect(self, timeout: float) -> dict[str, Any]:
        io = self._io
        start = time.monotonic()
        welcome = asyncio.ensure_future(io.wait_welcome(timeout))
        try:
            try:
                msg = await io.query("connection_request", {}, timeout)
            except ClusterTimeout:
                raise ClusterTimeout(
                    f"no controller answered at {io.where} within {timeout} s: is the cluster running?"
                ) from None
            self._set_engines(msg)
            if not await welcome:
                log.warning("the controller at %s sent no iopub welcome within %s s; output of the first "
                            "tasks may arrive incomplete", io.iopub_url, timeout)
            log.debug("connected to %s in %.3f s", io.where, time.monotonic() - start)
            return msg["content"]
        finally:
            welcome.cancel()

    def _set_engines(self, msg: Message) -> None:
        engines = msg["content"].get("engines") or {}
        details = msg["content"].get("engine_info") or {}  # {id: {"uuid", "pid", "hostname"}}
        io = self._io
        table: dict[int, str] = {}
        info: dict[int, dict[str, Any]] = {}
        for key, value in engines.items():
            eid = int(key)
            entry = dict(details.get(key) or {"uuid": value})
            entry.setdefault("id", eid)
            table[eid] = str(entry.get("uuid", ""))
            info[eid] = entry
        io.engines.clear()
        io.engines.update(table)
        io.engine_info.clear()
        io.engine_info.update(info)
        for eid, entry in info.items():
            io.data.connect(eid, entry)

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self, linger: float | None = None) -> None:
        """Close the sockets and stop the I/O thread; what is outstanding fails."""
        self._finalizer.detach()
        self._io.close(linger)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._io.closed else f"{len(self._io.engines)} engines"
        return f"<Client({state}) {self._io.client_url}>"

    def spin(self) -> None:
        """Nothing to do: replies are received in the background."""

    def spin_thread(self, interval: float = 1) -> None:
        """Nothing to do: replies are received in the background."""

    def stop_spin_thread(self) -> None:
        """Nothing to do: replies are received in the background."""

    # -- engines ----------------------------------------------------------------------------------
    @property
    def ids(self) -> list[int]:
        """Sorted ids of the registered engines (kept up to date from the controller's notices)."""
        return sorted(self._io.engines)

    def __len__(self) -> int:
        return len(self._io.engines)

    @property
    def engine_info(self) -> dict[int, dict[str, Any]]:
        """What the controller told of each registered engine (``uuid``, and ``pid``/``hostname``
        when it says so)."""
        return {eid: dict(info) for eid, info in self._io.engine_info.items()}

    def wait_for_engines(self, n: int | None = None, *, timeout: float | None = -1, block: bool = True,
                         interactive: bool | None = None, widget: bool | None = None) -> Any:
        """Wait until at least ``n`` engines are registered (woken by the controller's notices).

        ``n`` defaults to :attr:`expected_engines` (set by the Cluster that made this client).
        Raises ``ipcluster.error.TimeoutError`` after ``timeout`` seconds (``-1``: no limit).
        With ``block=False``, returns a ``concurrent.futures.Future``.
        """
        if n is None:
            expected = self.expected_engines
            n = expected() if callable(expected) else expected
            if n is None:
                raise ValueError("wait_for_engines needs the number of engines to wait for")
        if timeout is not None and timeout < 0:
            timeout = None
        if self.engine_waiter is not None and block and not interactive:
            self.engine_waiter(self, int(n), math.inf if timeout is None else timeout)
            return None
        fut = self._io.submit(self._wait_engines(int(n), timeout))
        if not block:
            return fut
        if interactive:
            from .progress import progress_bar

            bar = progress_bar(n, desc="engines", unit="engines", widget=widget)
            try:
                while not fut.done():
                    try:
                        fut.result(0.1)
                    except TimeoutError as e:
                        if fut.done():
                            raise e
                    bar.update_to(min(len(self._io.engines), n))
            finally:
                bar.close()
        try:
            return fut.result()
        except BaseException:
            fut.cancel()
            raise

    async def _wait_engines(self, n: int, timeout: float | None) -> None:
        io = self._io
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        refreshed = loop.time()
        while len(io.engines) < n:
            io.check()
            now = loop.time()
            if deadline is not None and now >= deadline:
                raise ClusterTimeout(
                    f"{len(io.engines)} engine(s) registered after {timeout} s; waited for {n}"
                )
            if now - refreshed >= 1.0:  # a notice sent before our subscription took effect is lost
                refreshed = now
                self._set_engines(await io.query("connection_request", {}, self.timeout))
                continue
            wait = 1.0 if deadline is None else min(1.0, deadline - now)
            await io.engines_changed(wait)

    # -- views ------------------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> DirectView:
        """``rc[0]``, ``rc[:]``, ``rc[::2]``, ``rc[[0, 1]]``: a DirectView on those engines."""
        if isinstance(key, str):
            raise TypeError("engines are indexed by int, slice or list of ints")
        return self.direct_view(key)

    def direct_view(self, targets: Any = "all", **kwargs: Any) -> DirectView:
        """A DirectView; ``'all'`` follows the engines registered at each call."""
        single = isinstance(targets, int)
        if targets != "all" and targets is not None:
            ids = self.submitter.targets(targets)
            targets = ids[0] if single else ids
        return DirectView(client=self, targets=targets, **kwargs)

    def load_balanced_view(self, targets: Any = None, **kwargs: Any) -> LoadBalancedView:
        """A LoadBalancedView, optionally restricted to ``targets``."""
        if targets == "all":
            targets = None
        if targets is not None:
            targets = self.submitter.targets(targets)
        return LoadBalancedView(client=self, targets=targets, **kwargs)

    def broadcast_view(self, targets: Any = "all", is_coalescing: bool = False, **kwargs: Any) -> BroadcastView:
        """A BroadcastView (one message fanned out by the controller)."""
        if targets != "all" and targets is not None:
            single = isinstance(targets, int)
            ids = self.submitter.targets(targets)
            targets = ids[0] if single else ids
        return BroadcastView(client=self, targets=targets, is_coalescing=is_coalescing, **kwargs)

    def executor(self, targets: Any = None) -> Any:
        """A ``concurrent.futures.Executor`` on a load-balanced view."""
        return self.load_balanced_view(targets).executor

    def wait_interactive(self, jobs: Any = None, interval: float = 1.0, timeout: float | None = -1) -> None:
        """Wait for ``jobs`` (default: every task this client is waiting for), showing progress."""
        ar = self.get_result(list(self.outstanding) if jobs is None else jobs, block=False, owner=False)
        ar.wait_interactive(interval=interval, timeout=timeout)

    def activate(self, targets: Any = "all", suffix: str = "") -> DirectView:
        """Make a blocking DirectView on ``targets`` the target of the ``%px`` magics."""
        view = self.direct_view(targets)
        view.block = True
        view.activate(suffix)
        return view

    def send_apply_request(self, socket: Any, f: Any, args: Any = None, kwargs: Any = None,
                           metadata: dict[str, Any] | None = None, track: bool = False, ident: Any = None,
                           message_future_hook: Any = None) -> AsyncResult:
        """Low level: send one apply request (to engine ``ident``, or load-balanced)."""
        sub = self.submitter
        target = None if ident is None else sub.engine_id(ident)
        bufs = sub.pack(f, args or (), kwargs or {})
        return sub.submit_one("apply_request", bufs, target, getname(f), metadata=metadata, track=track)

    def send_execute_request(self, socket: Any, code: str, silent: bool = True,
                             metadata: dict[str, Any] | None = None, ident: Any = None,
                             message_future_hook: Any = None) -> AsyncResult:
        """Low level: send one execute request (to engine ``ident``, or load-balanced)."""
        sub = self.submitter
        target = None if ident is None else sub.engine_id(ident)
        return sub.submit_one("execute_request", [], target, "execute", metadata=metadata,
                              content={"code": code, "silent": bool(silent)})

    # -- results ----------------------------------------------------------------------------------
    @property
    def outstanding(self) -> set[str]:
        """msg_ids of requests that have not finished."""
        return set(self._io.replies.pending)

    @property
    def results(self) -> Mapping[str, Any]:
        """Results of recently finished tasks by msg_id (exceptions for failed ones), within
        :attr:`results_cache_size` and :attr:`results_cache_max_bytes`."""
        return TaskMapping(self._io.replies, lambda t: t.value, include_pending=False)

    @property
    def metadata(self) -> Mapping[str, Any]:
        """Metadata of outstanding and recently finished tasks by msg_id."""
        return TaskMapping(self._io.replies, lambda t: t.metadata(), include_pending=True)

    def wait(self, jobs: Any = None, timeout: float | None = -1) -> bool:
        """Wait for ``jobs`` (msg_ids, history indices, AsyncResults; default: all outstanding);
        return whether all finished within ``timeout`` seconds (``-1``: no limit)."""
        if timeout is not None and timeout < 0:
            timeout = None
        io = self._io
        if jobs is None:
            tasks = list(io.replies.pending.values())
        else:
            tasks = []
            for job in jobs if isinstance(jobs, (list, tuple, set)) else [jobs]:
                if isinstance(job, AsyncResult):
                    tasks.extend(job._tasks)
                else:
                    for msg_id in self._queries.msg_ids(job):
                        entry = io.replies.pending.get(msg_id)
                        if entry is not None:
                            tasks.append(entry)
        # wait on the results that own the tasks: each wakes this thread once, when it finishes
        futures: set[Any] = set()
        for entry in tasks:
            for task in entry.tasks.values() if isinstance(entry, Broadcast) else (entry,):
                owner = task.owner
                if owner is None:
                    continue  # finished (or finishing: done is set before the owner is cleared)
                if type(owner) is list:
                    futures.update(owner)
                else:
                    futures.add(owner)
        if not futures:
            return True
        _, not_done = concurrent.futures.wait(futures, timeout)
        return not not_done

    def clear(self, targets: Any = None, block: bool | None = None) -> Any:
        """Empty the user namespace of ``targets`` (all by default)."""
        block = self.block if block is None else block
        ids = self.submitter.targets(targets)
        ar = self.submitter.submit("clear_request", [([], eid) for eid in ids],
                                   lambda tasks: AsyncResult(self, tasks, fname="clear", targets=ids), content={})
        if block:
            ar.get()
            return None
        return ar

    # -- controller queries (ControllerQueries does the work) -------------------------------------
    def abort(self, jobs: Any = None, targets: Any = None, block: bool | None = None, running: bool = False) -> Any:
        """Abort queued ``jobs`` (default: all) on ``targets``; with ``running``, running ones too (see queries)."""
        return self._queries.abort(jobs, targets, block, running)

    def send_signal(self, sig: int, targets: Any = None, block: bool | None = None) -> Any:
        """Send signal ``sig`` to the engines' processes (SIGINT interrupts their code), through each
        engine's control channel, which answers even while the engine is busy."""
        return self._queries.send_signal(sig, targets, block)

    def report_engine_death(self, engine_id: int | None, pid: int, reason: str, hostname: str = "") -> int | None:
        """Tell the controller engine ``engine_id`` (process ``pid``) exited: it is declared dead at once."""
        return self._queries.report_engine_death(engine_id, pid, reason, hostname)

    def shutdown(self, targets: Any = "all", restart: bool = False, hub: bool = False, block: bool | None = None) -> Any:
        """Stop engines (all by default); with ``hub=True`` the controller too."""
        return self._queries.shutdown(targets, restart, hub, block)

    def queue_status(self, targets: Any = "all", verbose: bool = False) -> dict[Any, Any]:
        """Per engine id: ``{"queue", "tasks", "completed"}`` counts (msg_id lists when verbose),
        and ``"unassigned"``: load-balanced tasks not yet given to an engine."""
        return self._queries.queue_status(targets, verbose)

    def task_stats(self, since: int = 0) -> dict[str, Any]:
        """The controller's task counts per group (label, map, function), per engine and
        function, and its last failures, changed after revision ``since`` (see docs/protocol.md)."""
        return self._queries.task_stats(since)

    def result_status(self, msg_ids: Any, status_only: bool = True) -> dict[str, Any]:
        """``{"pending": [...], "completed": [...]}`` from the controller; without
        ``status_only``, also each completed task's result (or exception) by msg_id."""
        return self._queries.result_status(msg_ids, status_only)

    def get_result(self, indices_or_msg_ids: Any = None, block: bool | None = None, owner: bool = True) -> Any:
        """Results by msg_id or history index (default: the last; other clients' tasks too)."""
        return self._queries.get_result(indices_or_msg_ids, block, owner)

    def resubmit(self, indices_or_msg_ids: Any = None, metadata: Any = None, block: bool | None = None) -> Any:
        """Run finished tasks again, as new tasks (an AsyncHubResult)."""
        return self._queries.resubmit(indices_or_msg_ids, metadata, block)

    def purge_local_results(self, jobs: Any = (), targets: Any = ()) -> None:
        """Forget finished results kept by this client (``'all'``, or by msg_id / engine)."""
        self._queries.purge_local_results(jobs, targets)

    def purge_hub_results(self, jobs: Any = (), targets: Any = ()) -> None:
        """Make the controller forget finished task records."""
        self._queries.purge_hub_results(jobs, targets)

    def purge_results(self, jobs: Any = (), targets: Any = (), owner: bool = True) -> None:
        """Forget finished results here and in the controller (``jobs``: 'all', ids; ``targets``)."""
        self._queries.purge_results(jobs, targets, owner)

    def purge_everything(self) -> None:
        """Forget all finished results and the local history."""
        self._queries.purge_everything()

    def hub_history(self) -> list[str]:
        """msg_ids of every task the controller has a record of, in submission order."""
        return self._queries.hub_history()

    def db_query(self, query: dict[str, Any], keys: Any = None) -> list[dict[str, Any]]:
        """Task records matching a MongoDB-style ``query``, with ``keys`` (see ControllerQueries)."""
        return self._queries.db_query(query, keys)

    # -- dask (DaskBridge does the work) -----------------------------------------------------------
    def become_dask(self, targets: Any = "all", port: int = 0, nanny: bool = False,
                    scheduler_args: dict[str, Any] | None = None, **worker_args: Any) -> Any:
        """Turn the engines into a dask.distributed cluster; return a ``distributed.Client`` of it
        (see :meth:`DaskBridge.become <.daskcluster.DaskBridge.become>`; undo with :meth:`stop_dask`)."""
        return self._dask.become(targets, port, nanny, scheduler_args, worker_args)

    def stop_dask(self, targets: Any = "all") -> None:
        """Stop the dask workers of ``targets`` and the scheduler that :meth:`become_dask` started,
        and close the ``distributed.Client`` it returned."""
        self._dask.stop(targets)

    become_distributed = become_dask
    stop_distributed = stop_dask

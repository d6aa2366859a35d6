"""``AsyncResult``: the future a non-blocking call returns.

An AsyncResult is a :class:`concurrent.futures.Future` (so ``result()``, ``add_done_callback``,
``concurrent.futures.wait``/``as_completed`` and ``await`` from any asyncio loop work) with
ipyparallel's interface on top: ``get``, ``wait``, ``ready``, ``successful``, metadata, output
and timing properties. It finishes when every one of its tasks has its reply *and* all the output
(stdout, displays) that the reply says the task produced.

It is resolved by the client's I/O thread: each finished :class:`~ipcluster.client.task.Task`
calls :meth:`AsyncResult._task_done`, and the last one sets the future's result.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, TimeoutError as FutureTimeout
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from .. import error
from .map import flatten
from .output import display_outputs, stream_output
from .task import METADATA_KEYS, Task

if TYPE_CHECKING:
    from .client import Client


class AsyncResult(Future):  # type: ignore[type-arg]
    """The result of a non-blocking call on one or more engines.

    ``get()`` returns the function's return value for a call on one engine (an int target or a
    load-balanced view) and a list with one value per engine otherwise.
    """

    def __init__(
        self,
        client: "Client",
        children: "Task | list[Task]",
        fname: str = "unknown",
        targets: Any = None,
        owner: bool = True,
        return_exceptions: bool = False,
        *,
        single: bool | None = None,
    ) -> None:
        """The result of ``children``: one task (a single result) or a list of them; ``single``
        overrides which. On the hot path, so it only records: the Submitter sends the tasks after."""
        Future.__init__(self)
        self._client = client
        self._fname = fname
        self._targets = targets
        self.owner = owner
        self._return_exceptions = return_exceptions
        self._done_queue: queue.SimpleQueue[Task] | None = None
        self._watch: tuple[Task, threading.Event] | None = None
        if type(children) is list:
            tasks = children
            self._single_result = False if single is None else single
        elif type(children) is Task:
            tasks = [children]
            self._single_result = True if single is None else single
        else:  # results by msg_id come from Client.get_result, which asks the controller
            raise TypeError(f"an AsyncResult is made of tasks, not {children!r}: use Client.get_result(msg_ids)")
        self._tasks = tasks
        self.msg_ids = [t.msg_id for t in tasks]
        self._remaining = len(tasks)
        self._own()

    def _own(self) -> None:
        """Become the owner of my tasks: fresh ones, not yet sent, so nobody else can finish them."""
        for t in self._tasks:
            t.owner = self
        if not self._tasks:
            self._finish()

    # -- resolution (I/O thread) ------------------------------------------------------------
    def _task_done(self, task: Task) -> None:
        self._remaining -= 1
        q = self._done_queue
        if q is not None:
            q.put(task)
        watch = self._watch
        if watch is not None and watch[0] is task:
            watch[1].set()
        if self._remaining <= 0:
            self._finish()

    def _finish(self) -> None:
        if self.done():
            return
        tasks = self._tasks
        if self._single_result:
            t = tasks[0]
            if t.failed:
                self.set_exception(t.value)
            else:
                self.set_result(t.value)
            return
        errors = [t.value for t in tasks if t.failed]
        if errors and not self._return_exceptions:
            self.set_exception(self._collect(errors))
        else:
            self.set_result(self._reconstruct([t.value for t in tasks]))

    def _reconstruct(self, values: list[Any]) -> Any:
        return values[0] if self._single_result else values

    def _collect(self, errors: list[BaseException]) -> BaseException:
        """One exception for several failed tasks: a CompositeError of the engines' errors, or the
        first failure itself when none came from user code (controller lost, task aborted...)."""
        if not any(isinstance(e, error.RemoteError) for e in errors):
            return errors[0]
        elist: list[error.RemoteError] = []
        for e in errors:
            if isinstance(e, error.CompositeError):
                elist.extend(e.elist)
            elif isinstance(e, error.RemoteError):
                elist.append(e)
            else:
                elist.append(error.RemoteError(type(e).__name__, str(e), "", getattr(e, "engine_info", {})))
        return error.CompositeError(f"one or more exceptions raised in: {self._fname}", elist)

    # -- waiting ----------------------------------------------------------------------------
    def get(self, timeout: float | None = -1, return_exceptions: bool | None = None) -> Any:
        """Return the result when it arrives.

        Parameters
        ----------
        timeout : float
            Seconds to wait; ``-1`` or ``None`` waits for ever. Raises
            ``ipcluster.error.TimeoutError`` when the result is not ready by then.
        return_exceptions : bool
            Return failed tasks' exceptions in place of their results instead of raising.
        """
        if timeout is not None and timeout < 0:
            timeout = None
        try:
            exc = Future.exception(self, timeout)
        except FutureTimeout:
            raise error.TimeoutError(f"result of {self._fname} not ready after {timeout} s") from None
        if exc is None:
            return Future.result(self, 0)
        if return_exceptions is None:
            return_exceptions = self._return_exceptions
        if return_exceptions:
            return self._reconstruct([t.value for t in self._tasks])
        try:
            raise exc
        finally:  # the traceback keeps this frame: do not let it keep the result alive too
            del self, exc

    def result(self, timeout: float | None = None) -> Any:
        """``concurrent.futures.Future.result``: like :meth:`get`, ``None`` waits for ever."""
        return self.get(timeout)

    def wait(self, timeout: float | None = -1, return_when: str | None = None) -> Any:
        """Wait up to ``timeout`` seconds (``-1``, ``None``: for ever); return ``ready()``, or with
        ``return_when`` (``ipp.FIRST_COMPLETED``...) the sets ``(done, pending)`` of :meth:`split`
        results that :func:`concurrent.futures.wait` returns."""
        if timeout is not None and timeout < 0:
            timeout = None
        if return_when is not None:
            from .hubresult import wait_split
            return wait_split(self, timeout, return_when)
        try:
            Future.exception(self, timeout)
        except FutureTimeout:
            return False
        return True

    def wait_for_output(self, timeout: float | None = -1) -> bool:
        """Results finish only once their output is complete, so this is :meth:`wait`."""
        return self.wait(timeout)

    def ready(self) -> bool:
        """Whether the call has finished (reply and output)."""
        return self.done()

    def successful(self) -> bool:
        """Whether the call finished without raising; AssertionError if it has not finished."""
        assert self.done(), "result is not ready"
        return Future.exception(self, 0) is None

    def __await__(self) -> Generator[Any, None, Any]:
        return asyncio.wrap_future(self).__await__()

    def cancel(self) -> bool:
        """Ask the controller to abort the tasks that have not started; never cancels the future
        itself (it finishes with ``TaskAborted`` if the abort wins)."""
        if not self.done():
            try:
                self._client.abort(self, block=False)
            except error.IPClusterError:
                pass
        return False

    def abort(self, running: bool = False) -> None:
        """Abort my tasks not started yet, and with ``running`` those running too (Client.abort): ``TaskAborted``."""
        if not self.done():
            self._client.abort(self, block=True, running=running)

    def get_dict(self, timeout: float | None = -1) -> dict[int, Any]:
        """The results keyed by engine id (ValueError if an engine ran several of the tasks)."""
        results = self.get(timeout)
        if self._single_result:
            results = [results]
        out: dict[int, Any] = {}
        for task, value in zip(self._tasks, results):
            eid = task.engine_id
            if eid in out:
                raise ValueError(f"cannot build a dict: engine {eid} ran several of these tasks")
            out[eid] = value  # type: ignore[index]
        return out

    @property
    def r(self) -> Any:
        """``get()``"""
        return self.get()

    @property
    def result_dict(self) -> dict[int, Any]:
        return self.get_dict()

    # -- sending ----------------------------------------------------------------------------
    @property
    def sent(self) -> bool:
        """Whether all my messages have been handed to ZeroMQ (and, when sent with ``track``,
        whether ZeroMQ is done with their buffers)."""
        for t in self._tasks:
            s = t.sent
            if s is True:
                continue
            if s is False or not hasattr(s, "done") or not s.done:
                return False
        return True

    def wait_for_send(self, timeout: float | None = -1) -> bool:
        """Wait until :attr:`sent`; raise TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        delay = 0.001
        while not self.sent:
            if deadline is not None and time.monotonic() >= deadline:
                raise error.TimeoutError("still waiting to be sent")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True

    # -- metadata ---------------------------------------------------------------------------
    def _values(self, key: str) -> Any:
        values = [t.metadata()[key] for t in self._tasks]
        return values[0] if self._single_result else values

    @property
    def metadata(self) -> Any:
        """Each task's :class:`Metadata` (one for a single result, else a list)."""
        mds = [t.metadata() for t in self._tasks]
        return mds[0] if self._single_result else mds

    @property
    def stdout(self) -> Any:
        return self._values("stdout")

    @property
    def stderr(self) -> Any:
        return self._values("stderr")

    @property
    def outputs(self) -> Any:
        """Display outputs (``{"data", "metadata"}``), per engine for a multi-engine result."""
        return self._values("outputs")

    @property
    def engine_id(self) -> Any:
        ids = [t.engine_id for t in self._tasks]
        return ids[0] if self._single_result else ids

    def __getattr__(self, key: str) -> Any:
        if key in METADATA_KEYS:
            return self._values(key)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *METADATA_KEYS})

    def __getitem__(self, key: Any) -> Any:
        """An int or slice indexes the results (which must be ready); a str reads metadata."""
        if isinstance(key, str):
            return self._values(key)
        if isinstance(key, (int, slice)):
            if not self.done():
                raise error.TimeoutError("result not ready")
            values = self.get(return_exceptions=True)
            picked = values[key]
            checked = picked if isinstance(key, slice) else [picked]
            errors = [v for v in checked if isinstance(v, BaseException)]
            if errors:
                raise self._collect(errors)
            return picked
        raise TypeError(f"invalid key type {type(key).__name__!r}: use an int, a slice or a str")

    # -- progress and timing ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def progress(self) -> int:
        """How many of my tasks have finished."""
        return sum(1 for t in self._tasks if t.done)

    @property
    def elapsed(self) -> float:
        """Seconds since submission (until the last reply, once finished)."""
        if self.done():
            return self.wall_time
        return time.time() - min((t.submitted for t in self._tasks), default=time.time())

    @property
    def wall_time(self) -> float:
        """Seconds from the first submission to the last reply."""
        self._check_ready()
        if not self._tasks:
            return 0.0
        return max(t.received or t.submitted for t in self._tasks) - min(t.submitted for t in self._tasks)

    @property
    def serial_time(self) -> float:
        """Sum over tasks of the time each ran on its engine."""
        self._check_ready()
        total = 0.0
        for t in self._tasks:
            started, completed = t.stamp("started"), t.stamp("completed")
            if started is not None and completed is not None:
                total += completed - started
        return total

    def timedelta(self, start: Any, end: Any, start_key: Callable[..., Any] = min,
                  end_key: Callable[..., Any] = max) -> float:
        """Seconds from ``start`` to ``end``: datetimes (``ar.submitted``), or lists that ``*_key`` pick from."""
        if isinstance(start, (list, tuple)):
            start = start_key(start)
        if isinstance(end, (list, tuple)):
            end = end_key(end)
        delta = end - start
        return float(delta.total_seconds() if hasattr(delta, "total_seconds") else delta)

    def _check_ready(self) -> None:
        if not self.done():
            raise error.TimeoutError("result not ready")

    # -- iteration --------------------------------------------------------------------------
    def _ordered_tasks(self) -> Iterator[Task]:
        for t in self._tasks:
            if not t.done:
                event = threading.Event()
                self._watch = (t, event)  # _task_done sets the event when t finishes
                if not t.done:  # (it may have finished before _watch was set)
                    while not event.wait(1.0):
                        pass
                self._watch = None
            yield t

    def _unordered_tasks(self) -> Iterator[Task]:
        q: queue.SimpleQueue[Task] = queue.SimpleQueue()

        async def arm() -> None:
            self._done_queue = q
            for t in self._tasks:
                if t.done:
                    q.put(t)

        try:
            self._client.submitter.on_io_thread(arm())
        except error.IPClusterError:  # closed client: everything has finished
            yield from self._tasks
            return
        for _ in range(len(self._tasks)):
            while True:
                try:
                    yield q.get(timeout=1.0)
                    break
                except queue.Empty:
                    continue

    def _task_values(self, task: Task) -> list[Any]:
        if task.failed:
            if self._return_exceptions:
                return [task.value]
            raise self._collect([task.value])
        return [task.value]

    def __iter__(self) -> Iterator[Any]:
        """Results in order, each as soon as it (and those before it) arrived."""
        if self._single_result:
            raise TypeError("an AsyncResult with a single result is not iterable")
        for t in self._ordered_tasks():
            yield from self._task_values(t)

    # -- display ----------------------------------------------------------------------------
    def display_outputs(self, groupby: str = "type", result_only: bool = False, streams: bool = True) -> None:
        """Show the output: streams prefixed by engine (``[stdout:0]``), displays and results
        through IPython's display machinery when in IPython. ``groupby``: ``"type"`` (all stdout,
        then all stderr, then displays), ``"engine"`` (one engine's, then the next) or ``"order"``."""
        self.wait()
        display_outputs(self, groupby, result_only, streams)

    def stream_output(self) -> AbstractContextManager[None]:
        """A context manager: within it, stdout and stderr are printed as they arrive."""
        return stream_output(self)

    def split(self) -> "list[AsyncResult]":
        """One result per task (per engine, for a DirectView call), each waitable on its own."""
        from .hubresult import split

        return split(self)

    @classmethod
    def join(cls, *results: "AsyncResult") -> "AsyncResult":
        """One result for the tasks of several (of one client): ``get()`` lists their results in
        order. The originals stay usable."""
        from .hubresult import join

        return join(results)

    def wait_interactive(self, interval: float = 0.1, timeout: float | None = -1, widget: bool | None = None) -> None:
        """Wait, showing a progress bar (tqdm when installed, a widget-free line otherwise)."""
        from .progress import wait_interactive

        wait_interactive(self, interval=interval, timeout=timeout, widget=widget)

    def __repr__(self) -> str:
        state = "finished" if self.done() else "pending"
        return f"<{type(self).__name__}({self._fname}): {state}>"


class AsyncMapResult(AsyncResult):
    """The result of a map: ``get()`` is the list of results in input order; iterate it to get
    results as they arrive (in order, or as each part finishes with ``ordered=False``)."""

    def __init__(
        self,
        client: "Client",
        children: Any,
        mapObject: Any = None,
        fname: str = "",
        ordered: bool = True,
        return_exceptions: bool = False,
        chunk_sizes: Sequence[int] | None = None,
        joiner: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        self.ordered = ordered
        self._chunk_sizes = list(chunk_sizes) if chunk_sizes is not None else None
        self._joiner = joiner or flatten
        AsyncResult.__init__(self, client, list(children), fname=fname, return_exceptions=return_exceptions)

    def _reconstruct(self, values: list[Any]) -> Any:
        if any(t.failed for t in self._tasks):  # return_exceptions: one exception per failed part
            out: list[Any] = []
            for t, v in zip(self._tasks, values):
                if t.failed:
                    out.append(v)
                else:
                    out.extend(v)
            return out
        return self._joiner(values)

    def _task_values(self, task: Task) -> list[Any]:
        if task.failed:
            return AsyncResult._task_values(self, task)
        value = task.value
        return value if isinstance(value, list) else list(value) if isinstance(value, tuple) else [value]

    def __len__(self) -> int:
        if self._chunk_sizes is not None:
            return sum(self._chunk_sizes)
        return len(self._tasks)

    @property
    def progress(self) -> int:
        """How many items have been computed."""
        if self._chunk_sizes is None:
            return AsyncResult.progress.fget(self)  # type: ignore[attr-defined]
        return sum(n for t, n in zip(self._tasks, self._chunk_sizes) if t.done)

    def __iter__(self) -> Iterator[Any]:
        tasks = self._ordered_tasks() if self.ordered else self._unordered_tasks()
        for t in tasks:
            yield from self._task_values(t)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return AsyncResult.__getitem__(self, key)
        if not self.done():
            raise error.TimeoutError("result not ready")
        return self.get()[key]


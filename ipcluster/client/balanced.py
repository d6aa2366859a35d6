"""The load-balanced view: tasks go to whichever engine the controller's scheduler picks.

Kept apart from :mod:`.view` (the views that name their engines) because it changes with the
scheduler's features: flags for dependencies, retries and timeouts, chunked ``map`` and the
streaming, adaptively chunked ``imap``.
"""

from __future__ import annotations

import collections
import queue
import warnings
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from ..error import NoEnginesWarning
from . import map as partitioning
from .asyncresult import AsyncMapResult, AsyncResult
from .dependency import render_dependency
from .remotefunction import getname
from .task import Task
from .view import View

if TYPE_CHECKING:
    from .client import Client


def warn_if_no_engines(client: "Client", stacklevel: int) -> None:
    """Say at once that a load-balanced map will wait for an engine to register (once per map, not
    per task: a lone ``apply`` is told by the client's liveness timer in a log line instead)."""
    timeout = client.engine_timeout
    then = (f"fails with NoEnginesError if none registers within {timeout:g} s (ControllerApp.engine_timeout)"
            if timeout else "waits for ever if none does (ControllerApp.engine_timeout is 0)")
    warnings.warn(f"no engines are registered: these load-balanced tasks wait until one registers, and {then}",
                  NoEnginesWarning, stacklevel=stacklevel + 1)


class LoadBalancedView(View):
    """Each call runs once, on an engine the controller's scheduler picks.

    Flags (``set_flags``, ``temp_flags`` or keyword arguments): ``targets`` (engines allowed),
    ``after`` and ``follow`` (dependencies: msg_ids, AsyncResults or a :class:`Dependency`),
    ``timeout`` (seconds for the task to finish), ``retries`` (runs again on failure),
    ``label`` (a name the panel shows the tasks' progress under).
    """

    _flag_names = ("targets", "block", "track", "label", "follow", "after", "timeout", "retries")

    def __init__(self, client: "Client | None" = None, socket: Any = None, **flags: Any) -> None:
        self.follow: Any = None
        self.after: Any = None
        self.timeout: float | None = None
        self.retries = 0
        super().__init__(client=client, socket=socket, **flags)

    def set_flags(self, **kwargs: Any) -> None:
        """Set flags by keyword: ``block``, ``track``, ``targets``, ``label``, ``after``, ``follow``,
        ``timeout``, ``retries``."""
        for name in ("after", "follow"):
            if name in kwargs and kwargs[name] is not None:
                render_dependency(kwargs[name])  # raises TypeError for what is not a dependency
        if "timeout" in kwargs:
            t = kwargs["timeout"]
            if t is not None and (not isinstance(t, (int, float)) or t < 0):
                raise ValueError(f"invalid timeout: {t!r}")
        if "retries" in kwargs and not isinstance(kwargs["retries"], int):
            raise TypeError(f"retries must be an int, not {type(kwargs['retries']).__name__}")
        super().set_flags(**kwargs)

    def _metadata(self, after: Any, follow: Any, timeout: Any, retries: Any, targets: Any) -> dict[str, Any] | None:
        if (after is None and follow is None and timeout is None and retries is None and targets is None
                and self.after is None and self.follow is None and not self.timeout and not self.retries
                and self.targets is None):
            return None
        md: dict[str, Any] = {}
        after = self.after if after is None else after
        if after is not None:
            dep = render_dependency(after)
            if dep:
                md["after"] = dep
        follow = self.follow if follow is None else follow
        if follow is not None:
            dep = render_dependency(follow)
            if dep:
                md["follow"] = dep
        timeout = self.timeout if timeout is None else timeout
        if timeout:
            md["timeout"] = float(timeout)
        retries = self.retries if retries is None else retries
        if retries:
            md["retries"] = int(retries)
        targets = self.targets if targets is None else targets
        if targets is not None:
            md["targets"] = self.client.submitter.targets(targets)
        return md or None

    def _really_apply(self, f: Callable[..., Any], args: Any = None, kwargs: Any = None,  # type: ignore[override]
                      block: bool | None = None, track: bool | None = None, after: Any = None,
                      follow: Any = None, timeout: Any = None, targets: Any = None, retries: Any = None) -> Any:
        """``f(*args, **kwargs)`` on one engine chosen by the scheduler."""
        sub = self.client.submitter  # no check for engines here: it would cost every task (see liveness)
        bufs = sub.pack(f, args or (), kwargs or {})
        md = self._metadata(after, follow, timeout, retries, targets)
        ar = self._record(sub.submit_one("apply_request", bufs, None, getname(f), metadata=md,
                                         track=self.track if track is None else track, label=self.label))
        if self.block if block is None else block:
            return ar.get()
        return ar

    def map(self, f: Callable[..., Any], *sequences: Any, block: bool | None = None, chunksize: int | None = None,
            ordered: bool = True, return_exceptions: bool = False, track: bool | None = None, **flags: Any) -> Any:
        """Parallel ``map(f, *sequences)``, load-balanced in tasks of ``chunksize`` items.

        ``chunksize`` defaults to about 32 tasks per engine (pass 1 for one task per item).
        With ``ordered=False``, iterating the AsyncMapResult yields parts as they finish.
        Other keywords set flags for these tasks only: ``after``, ``follow``, ``timeout``,
        ``retries``, ``targets``, ``label``.
        """
        if not sequences:
            raise ValueError("map needs at least one sequence")
        bad = set(flags) - {"after", "follow", "timeout", "retries", "targets", "label"}
        if bad:
            raise TypeError(f"invalid keyword arguments for map: {', '.join(sorted(bad))}")
        return self._parallel(f, sequences, {}, elementwise=True, block=block, chunksize=chunksize,
                              ordered=ordered, return_exceptions=return_exceptions, track=track, **flags)

    def _parallel(self, f: Callable[..., Any], sequences: tuple[Any, ...], kwargs: dict[str, Any],
                  elementwise: bool, block: bool | None = None, chunksize: int | None = None, ordered: bool = True,
                  return_exceptions: bool = False, track: bool | None = None, **flags: Any) -> Any:
        client = self.client
        sub = client.submitter
        block = self.block if block is None else block
        track = self.track if track is None else track
        if not len(client):
            warn_if_no_engines(client, 3)
        seqs, n = partitioning.prepare(sequences)
        if chunksize is None:
            chunksize = partitioning.auto_chunksize(n, len(client))
        parts = partitioning.chunks(seqs, chunksize)
        md = self._metadata(flags.get("after"), flags.get("follow"), flags.get("timeout"),
                            flags.get("retries"), flags.get("targets"))
        fn = sub.pickled_function(f)
        helper = partitioning.map_chunk if elementwise else partitioning.call_part
        requests: list[tuple[list[Any], int | None]] = [(sub.pack(helper, (fn, *part), kwargs), None) for part in parts]

        def result(tasks: list[Task]) -> AsyncMapResult:
            return AsyncMapResult(
                client, tasks, fname=getname(f), ordered=ordered, return_exceptions=return_exceptions,
                chunk_sizes=[len(part[0]) for part in parts],
                joiner=partitioning.flatten if elementwise else partitioning.join,
            )

        label = flags.get("label")
        amr = self._record(sub.submit("apply_request", requests, result, metadata=md, track=track, fname=getname(f),
                                      label=self.label if label is None else label,
                                      items=[len(part[0]) for part in parts]))
        return amr.get() if block else amr

    def imap(self, f: Callable[..., Any], *sequences: Any, ordered: bool = True, max_outstanding: Any = "auto",
             return_exceptions: bool = False, chunksize: int | None = None) -> "LazyMapIterator":
        """Parallel ``map`` over iterables of any length (read lazily), yielding results as they
        arrive, with at most ``max_outstanding`` tasks in flight ("auto": 4 per engine, at
        least 32), so memory stays bounded whatever the input's length. ``chunksize`` (items
        per task) adapts to the items' cost when not given (see ``map.AdaptiveChunks``)."""
        if not sequences:
            raise ValueError("imap needs at least one iterable")
        if max_outstanding == "auto":
            max_outstanding = max(32, 4 * len(self.client))
        return LazyMapIterator(self, f, sequences, ordered, int(max_outstanding), return_exceptions, chunksize)


class LazyMapIterator:
    """What :meth:`LoadBalancedView.imap` returns: the results, read as they arrive.

    The input is read lazily and at most ``max_outstanding`` tasks are in flight, so memory stays
    bounded whatever the input's length. :meth:`cancel` stops it early: nothing more is sent,
    and tasks sent but not started are aborted.
    """

    def __init__(self, view: LoadBalancedView, f: Callable[..., Any], sequences: tuple[Any, ...], ordered: bool,
                 max_outstanding: int, return_exceptions: bool, chunksize: int | None) -> None:
        self._view, self._f, self._ordered = view, f, ordered
        self._max_outstanding, self._return_exceptions = max_outstanding, return_exceptions
        sub = view.client.submitter
        self._fn = sub.pickled_function(f)
        # every part of it counts as one map
        self._md = sub.tagged(view._metadata(None, None, None, None, None), getname(f), view.label, new_map=True)
        self._sizer: partitioning.AdaptiveChunks | None = None
        if chunksize is None:
            self._sizer = partitioning.AdaptiveChunks()
            self._parts: Iterator[Any] = partitioning.iter_chunks(sequences, self._sizer)
        else:
            self._parts = partitioning.iter_chunks(sequences, max(1, chunksize))
        self._inflight: collections.deque[AsyncResult] = collections.deque()
        self._done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._exhausted = False
        self._results = self._run()

    def __iter__(self) -> "LazyMapIterator":
        return self

    def __next__(self) -> Any:
        return next(self._results)

    def cancel(self) -> None:
        """Stop: send nothing more, abort the tasks not started yet, and end the iteration."""
        self._exhausted = True
        pending = [ar for ar in self._inflight if not ar.done()]
        self._inflight.clear()
        if pending:
            self._view.client.abort(pending, block=True)
        self._results.close()

    def _submit(self) -> None:
        sub = self._view.client.submitter
        while not self._exhausted and len(self._inflight) < self._max_outstanding:
            part = next(self._parts, None)
            if part is None:
                self._exhausted = True
                return
            bufs = sub.pack(partitioning.map_chunk, (self._fn, *part), {})

            def result(tasks: list[Task]) -> AsyncMapResult:
                ar = AsyncMapResult(self._view.client, tasks, fname=getname(self._f),
                                    return_exceptions=self._return_exceptions)
                if not self._ordered:
                    ar.add_done_callback(self._done.put)  # the future is the AsyncMapResult itself
                return ar

            self._inflight.append(self._view._record(sub.submit("apply_request", [(bufs, None)], result,
                                                                metadata=self._md, items=[len(part[0])])))

    def _run(self) -> Generator[Any, None, None]:
        self._submit()
        inflight = self._inflight
        while inflight:
            if self._ordered:
                ar = inflight.popleft()
            else:
                ar = self._done.get()
                inflight.remove(ar)
            values = ar.get()
            if self._sizer is not None:
                task = ar._tasks[0]  # its engine's times, as floats (metadata() makes datetimes)
                started, completed = task.stamp("started"), task.stamp("completed")
                if started and completed:
                    self._sizer.observe(len(values), completed - started)
            self._submit()
            yield from values

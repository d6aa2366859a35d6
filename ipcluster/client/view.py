"""Views: the ways to send work to engines.

- :class:`DirectView` (``rc[:]``, ``rc[0]``): every call runs on each of its engines; data
  movement (push, pull, scatter, gather) and ``execute``.
- :class:`LoadBalancedView` (``rc.load_balanced_view()``): each call runs once, on the engine the
  controller's scheduler picks.
- :class:`BroadcastView`: like a DirectView, but one message to the controller fans out to all
  its engines.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ..protocol import serialize as wire
from . import map as partitioning
from .activation import activate
from .asyncresult import AsyncMapResult, AsyncResult
from .executor import ViewExecutor
from .imports import sync_imports
from .namespace import pull_names, push_names
from .remotefunction import getname, parallel, remote
from .task import Task

if TYPE_CHECKING:
    from .client import Client

__all__ = ["View", "DirectView", "BroadcastView"]

A = TypeVar("A", bound=AsyncResult)


class View:
    """What all views share: flags, ``apply``/``map`` in their three forms, and wrappers for the
    client's control methods. Use a subclass."""

    _flag_names: tuple[str, ...] = ("targets", "block", "track", "label")

    def __init__(self, client: "Client | None" = None, socket: Any = None, **flags: Any) -> None:
        if client is None:
            raise TypeError(f"{type(self).__name__} needs a client")
        self.client = client
        self.block: bool = client.block
        self.track: bool = False
        self.targets: Any = None
        #: a name for the tasks sent through this view: the panel shows their progress under it
        self.label: str | None = None
        self.history: list[str] = []
        self._outstanding: set[str] = set()
        self._executor: ViewExecutor | None = None
        self.set_flags(**flags)

    def __repr__(self) -> str:
        text = str(self.targets)
        if len(text) > 16:
            text = text[:12] + "...]"
        return f"<{type(self).__name__} {text}>"

    def __len__(self) -> int:
        if isinstance(self.targets, list):
            return len(self.targets)
        if isinstance(self.targets, int):
            return 1
        return len(self.client)

    # -- flags -----------------------------------------------------------------------------
    def set_flags(self, **kwargs: Any) -> None:
        """Set flags by keyword: ``block`` (wait for results), ``track`` (track zero-copy sends
        so ``ar.wait_for_send()`` tells when buffers may be changed), ``label`` (a name the
        controller counts the tasks under, shown by the JupyterLab panel), ``targets``..."""
        for name, value in kwargs.items():
            if name not in self._flag_names:
                raise KeyError(f"invalid flag {name!r} (flags: {', '.join(self._flag_names)})")
            setattr(self, name, value)

    @contextlib.contextmanager
    def temp_flags(self, **kwargs: Any) -> Iterator[None]:
        """Set flags for the duration of a ``with`` block."""
        saved = {name: getattr(self, name) for name in self._flag_names}
        self.set_flags(**kwargs)
        try:
            yield
        finally:
            self.set_flags(**saved)

    # -- bookkeeping -----------------------------------------------------------------------
    @property
    def results(self) -> Any:
        return self.client.results

    @property
    def outstanding(self) -> set[str]:
        """msg_ids sent through this view that have not finished."""
        is_pending = self.client.submitter.is_pending
        self._outstanding = {m for m in self._outstanding if is_pending(m)}
        return set(self._outstanding)

    def _record(self, ar: A) -> A:
        """Note what ``ar`` waits for in this view's history; return ``ar``."""
        ids = ar.msg_ids
        if len(ids) > 1:
            ids = list(dict.fromkeys(ids))  # a broadcast's tasks share one msg_id
        for msg_id in ids:
            self.history.append(msg_id)
            self._outstanding.add(msg_id)
        return ar

    @property
    def executor(self) -> ViewExecutor:
        """A :class:`concurrent.futures.Executor` submitting to this view."""
        if self._executor is None:
            self._executor = ViewExecutor(self)
        return self._executor

    # -- apply -----------------------------------------------------------------------------
    def _really_apply(self, f: Callable[..., Any], args: Any = None, kwargs: Any = None,
                      block: bool | None = None, **options: Any) -> Any:
        raise NotImplementedError

    def apply(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``f(*args, **kwargs)`` on the engines: the result if ``self.block``, else an AsyncResult."""
        return self._really_apply(f, args, kwargs)

    def apply_async(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> AsyncResult:
        """``f(*args, **kwargs)`` on the engines, without waiting: an AsyncResult."""
        return self._really_apply(f, args, kwargs, block=False)

    def apply_sync(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``f(*args, **kwargs)`` on the engines, waiting for the result."""
        return self._really_apply(f, args, kwargs, block=True)

    # -- map -------------------------------------------------------------------------------
    def _parallel(self, f: Callable[..., Any], sequences: tuple[Any, ...], kwargs: dict[str, Any],
                  elementwise: bool, block: bool | None = None, **options: Any) -> Any:
        raise NotImplementedError

    def map(self, f: Callable[..., Any], *sequences: Any, **kwargs: Any) -> Any:
        """Parallel ``map(f, *sequences)``: a list if blocking, else an AsyncMapResult."""
        raise NotImplementedError

    def map_async(self, f: Callable[..., Any], *sequences: Any, **kwargs: Any) -> AsyncMapResult:
        """``map(..., block=False)``"""
        if "block" in kwargs:
            raise TypeError("map_async doesn't take a `block` keyword argument")
        return self.map(f, *sequences, block=False, **kwargs)

    def map_sync(self, f: Callable[..., Any], *sequences: Any, **kwargs: Any) -> list[Any]:
        """``map(..., block=True)``"""
        if "block" in kwargs:
            raise TypeError("map_sync doesn't take a `block` keyword argument")
        return self.map(f, *sequences, block=True, **kwargs)

    def imap(self, f: Callable[..., Any], *sequences: Any, **kwargs: Any) -> Iterator[Any]:
        """Parallel ``map`` yielding results as they arrive."""
        return iter(self.map_async(f, *sequences, **kwargs))

    # -- decorators ------------------------------------------------------------------------
    def remote(self, block: bool | None = None, **flags: Any) -> Callable[..., Any]:
        """Decorator: calls of the function run on this view (see :func:`ipcluster.remote`)."""
        return remote(self, block=self.block if block is None else block, **flags)

    def parallel(self, dist: str = "b", block: bool | None = None, **flags: Any) -> Callable[..., Any]:
        """Decorator: the function's sequence arguments are split among the engines
        (see :func:`ipcluster.parallel`)."""
        return parallel(self, dist=dist, block=self.block if block is None else block, **flags)

    # -- control, through the client -------------------------------------------------------
    def spin(self) -> None:
        """Nothing to do: results arrive in the background."""

    def wait(self, jobs: Any = None, timeout: float | None = -1) -> bool:
        """Wait for ``jobs`` (default: everything sent through this view); True when all are done."""
        if jobs is None:
            jobs = list(self.outstanding)
        return self.client.wait(jobs, timeout)

    def abort(self, jobs: Any = None, targets: Any = None, block: bool | None = None) -> Any:
        """Abort tasks (default: all outstanding ones of this view) that have not started."""
        block = self.block if block is None else block
        targets = self.targets if targets is None else targets
        jobs = list(self.outstanding) if jobs is None else jobs
        return self.client.abort(jobs=jobs, targets=targets, block=block)

    def queue_status(self, targets: Any = None, verbose: bool = False) -> dict[Any, Any]:
        """Queue lengths of my engines (see ``Client.queue_status``)."""
        return self.client.queue_status(targets=self.targets if targets is None else targets, verbose=verbose)

    def purge_results(self, jobs: Any = (), targets: Any = ()) -> None:
        """Make the controller (and this client) forget finished results."""
        if targets is None or targets == "all":
            targets = self.targets
        self.client.purge_results(jobs=jobs, targets=targets)

    def shutdown(self, targets: Any = None, restart: bool = False, hub: bool = False, block: bool | None = None) -> Any:
        """Stop my engines (and the controller with ``hub=True``)."""
        block = self.block if block is None else block
        if targets is None or targets == "all":
            targets = self.targets
        return self.client.shutdown(targets=targets, restart=restart, hub=hub, block=block)

    def get_result(self, indices_or_msg_ids: Any = None, block: bool | None = None, owner: bool = False) -> Any:
        """Results by msg_id or by index into this view's history (default: the last one)."""
        if indices_or_msg_ids is None:
            indices_or_msg_ids = -1
        if isinstance(indices_or_msg_ids, int):
            indices_or_msg_ids = self.history[indices_or_msg_ids]
        elif isinstance(indices_or_msg_ids, (list, tuple, set)):
            indices_or_msg_ids = [self.history[i] if isinstance(i, int) else i for i in indices_or_msg_ids]
        return self.client.get_result(indices_or_msg_ids, block=block, owner=owner)

    def register_joblib_backend(self, name: str = "ipcluster", make_default: bool = False) -> None:
        """Run ``joblib.Parallel`` work (scikit-learn's ``n_jobs``) on this view's engines, as the
        joblib backend ``name`` (see :mod:`ipcluster.joblib`); joblib must be installed."""
        from .joblib import register_joblib_backend

        register_joblib_backend(self, name, make_default)


class DirectView(View):
    """Runs every call on each of its engines, and reads and writes their namespaces.

    >>> dv = rc[:]          # all engines; rc[0], rc[::2], rc[[0, 2]] for some
    >>> dv["a"] = 5         # push
    >>> dv["a"]             # pull: [5, 5, ...]
    """

    def __init__(self, client: "Client | None" = None, socket: Any = None, targets: Any = None, **flags: Any) -> None:
        super().__init__(client=client, socket=socket, targets=targets, **flags)

    # -- apply -----------------------------------------------------------------------------
    def _submit(self, msg_type: str, bufs: list[Any], targets: Any, track: bool, fname: str,
                content: dict[str, Any] | None = None) -> AsyncResult:
        """The same request to each target: one result for an int target, else a list."""
        sub = self.client.submitter
        if content is None and sub.is_engine(targets):  # the hot path: one engine
            return self._record(sub.submit_one(msg_type, bufs, targets, fname, track=track, label=self.label))
        ids = sub.targets(targets)
        single = isinstance(targets, int)

        def result(tasks: list[Task]) -> AsyncResult:
            return AsyncResult(self.client, tasks[0] if single else tasks, fname=fname, targets=ids)

        return self._record(self._send_to_each(msg_type, bufs, ids, result, content, track, fname))

    def _send_to_each(self, msg_type: str, bufs: list[Any], ids: list[int], result: Callable[[list[Task]], AsyncResult],
                      content: dict[str, Any] | None, track: bool, fname: str) -> AsyncResult:
        """One request per engine."""
        return self.client.submitter.submit(msg_type, [(bufs, eid) for eid in ids], result, content=content,
                                            track=track, fname=fname, label=self.label)

    def _really_apply(self, f: Callable[..., Any], args: Any = None, kwargs: Any = None,  # type: ignore[override]
                      targets: Any = None, block: bool | None = None, track: bool | None = None) -> Any:
        """``f(*args, **kwargs)`` on each target: one result for an int target, else a list."""
        block = self.block if block is None else block
        track = self.track if track is None else track
        targets = self.targets if targets is None else targets
        bufs = self.client.submitter.pack(f, args or (), kwargs or {})
        ar = self._submit("apply_request", bufs, targets, track, getname(f))
        return ar.get() if block else ar

    def map(self, f: Callable[..., Any], *sequences: Any, block: bool | None = None, track: bool = False,
            return_exceptions: bool = False, label: str | None = None) -> Any:
        """Parallel ``map(f, *sequences)``, one contiguous part of the sequences per engine.

        Returns the list of results (``block=True``) or an AsyncMapResult whose parts can be
        iterated as they arrive. ``label`` (default: the view's) names the map in the panel.
        """
        if not sequences:
            raise ValueError("map needs at least one sequence")
        return self._parallel(f, sequences, {}, elementwise=True, block=block, track=track,
                              return_exceptions=return_exceptions, label=label)

    def _parallel(self, f: Callable[..., Any], sequences: tuple[Any, ...], kwargs: dict[str, Any],  # type: ignore[override]
                  elementwise: bool, block: bool | None = None, targets: Any = None, track: bool | None = None,
                  return_exceptions: bool = False, chunksize: Any = None, ordered: bool = True,
                  label: str | None = None) -> Any:
        client = self.client
        sub = client.submitter
        block = self.block if block is None else block
        track = self.track if track is None else track
        ids = sub.targets(self.targets if targets is None else targets)
        parts = partitioning.split(sequences, len(ids))
        fn = sub.pickled_function(f)
        if elementwise:
            requests = [(sub.pack(partitioning.map_chunk, (fn, *part), {}), ids[p]) for p, part in parts]
        else:
            requests = [(sub.pack(partitioning.call_part, (fn, *part), kwargs), ids[p]) for p, part in parts]

        def result(tasks: list[Task]) -> AsyncMapResult:
            return AsyncMapResult(
                client, tasks, fname=getname(f), ordered=ordered, return_exceptions=return_exceptions,
                chunk_sizes=[len(part[0]) for _, part in parts],
                joiner=partitioning.flatten if elementwise else partitioning.join,
            )

        amr = self._record(sub.submit("apply_request", requests, result, track=track, fname=getname(f),
                                      label=self.label if label is None else label,
                                      items=[len(part[0]) for _, part in parts]))
        return amr.get() if block else amr

    # -- code -------------------------------------------------------------------------------
    def execute(self, code: str, silent: bool = True, targets: Any = None, block: bool | None = None) -> AsyncResult:
        """Run ``code`` in each engine's IPython shell. Returns the AsyncResult (finished when
        blocking; errors are raised then); its ``get()`` gives one :class:`ExecuteReply` per engine."""
        block = self.block if block is None else block
        targets = self.targets if targets is None else targets
        ar = self._submit("execute_request", [], targets, False, "execute",
                          content={"code": code, "silent": bool(silent)})
        if block:
            ar.get()
        return ar

    def run(self, filename: str, targets: Any = None, block: bool | None = None) -> AsyncResult:
        """Execute the text of a local file on the engines (see :meth:`execute`)."""
        with open(filename) as f:
            code = f.read() + "\n"
        return self.execute(code, block=block, targets=targets)

    # -- namespaces -------------------------------------------------------------------------
    def push(self, ns: dict[str, Any], targets: Any = None, block: bool | None = None, track: bool | None = None) -> Any:
        """Assign the items of ``ns`` in the engines' namespaces."""
        if not isinstance(ns, dict):
            raise TypeError(f"push needs a dict, not {type(ns).__name__}")
        return self._really_apply(push_names, (), ns, targets=targets, block=block, track=track)

    def update(self, ns: dict[str, Any]) -> Any:
        """``push(ns)``"""
        return self.push(ns)

    def pull(self, names: Any, targets: Any = None, block: bool | None = None) -> Any:
        """Values of ``names`` (a str, or a list of str) from the engines' namespaces."""
        if isinstance(names, (list, tuple, set)):
            bad = [n for n in names if not isinstance(n, str)]
            if bad:
                raise TypeError(f"names must be str, not {bad[0]!r}")
            names = list(names)
        elif not isinstance(names, str):
            raise TypeError(f"names must be a str or a list of str, not {names!r}")
        return self._really_apply(pull_names, (names,), {}, targets=targets, block=block)

    def get(self, key_s: Any) -> Any:
        """``pull(key_s, block=True)``"""
        return self.pull(key_s, block=True)

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def scatter(self, key: str, seq: Any, dist: str = "b", flatten: bool = False, targets: Any = None,
                block: bool | None = None, track: bool | None = None) -> Any:
        """Split ``seq`` into contiguous parts, one per engine, and assign each as ``key``
        (numpy arrays are sent as views, without a copy). With ``flatten``, a part of one item
        is assigned as the item itself."""
        if dist != "b":
            raise ValueError(f"dist must be 'b', not {dist!r}")
        block = self.block if block is None else block
        track = self.track if track is None else track
        client = self.client
        sub = client.submitter
        ids = sub.targets(self.targets if targets is None else targets)
        seq = partitioning.as_sequence(seq)
        requests = []
        for index, eid in enumerate(ids):
            part = partitioning.partition(seq, index, len(ids))
            value = part[0] if flatten and len(part) == 1 else part
            requests.append((sub.pack(push_names, (), {key: value}), eid))
        ar = self._record(sub.submit("apply_request", requests,
                                     lambda tasks: AsyncResult(client, tasks, fname="scatter", targets=ids),
                                     track=track, fname="scatter", label=self.label))
        if block:
            ar.get()
            return None
        return ar

    def gather(self, key: str, dist: str = "b", targets: Any = None, block: bool | None = None) -> Any:
        """The parts of ``key`` on the engines joined back: arrays concatenated, lists joined."""
        if dist != "b":
            raise ValueError(f"dist must be 'b', not {dist!r}")
        block = self.block if block is None else block
        client = self.client
        sub = client.submitter
        ids = sub.targets(self.targets if targets is None else targets)
        bufs = sub.pack(pull_names, (key,), {})
        amr = self._record(sub.submit("apply_request", [(bufs, eid) for eid in ids],
                                      lambda tasks: AsyncMapResult(client, tasks, fname="gather",
                                                                   joiner=partitioning.join),
                                      fname="gather", label=self.label))
        return amr.get() if block else amr

    def clear(self, targets: Any = None, block: bool | None = None) -> Any:
        """Empty the engines' namespaces."""
        block = self.block if block is None else block
        return self.client.clear(targets=self.targets if targets is None else targets, block=block)

    # -- imports and magics -----------------------------------------------------------------
    def sync_imports(self, local: bool = True, quiet: bool = False) -> Any:
        """Context manager: ``import`` statements in its block also run on the engines.

        >>> with dv.sync_imports():
        ...     import numpy
        importing numpy on engine(s)

        ``import x as y`` binds ``x`` on the engines (the ``as`` part is local only).
        """
        return sync_imports(self, local=local, quiet=quiet)

    @property
    def importer(self) -> Any:
        """``sync_imports()``"""
        return self.sync_imports(True)

    def use_dill(self) -> Any:
        """Pickle with dill here and on this view's engines: what cloudpickle refuses (a closure
        over a lock or an open file...) then travels. dill must be installed on both sides (the
        ImportError names ``pip install dill``). The switch is per process, as in ipyparallel:
        it holds for every view of this client, and for each of these engines whoever sends.
        Returns what ``apply`` returns (one ``None`` per engine when blocking)."""
        wire.use_dill()
        return self.apply(wire.use_dill)

    def use_cloudpickle(self) -> Any:
        """Back to the default serializer, here and on this view's engines: plain pickle, and
        cloudpickle for what plain pickle cannot store by reference (lambdas, closures, what
        lives in ``__main__``)."""
        wire.use_cloudpickle()
        return self.apply(wire.use_cloudpickle)

    def use_pickle(self) -> Any:
        """Undo :meth:`use_dill`: the default serializer (see :meth:`use_cloudpickle`; plain
        pickle alone would refuse lambdas, which the default keeps)."""
        return self.use_cloudpickle()

    def activate(self, suffix: str = "") -> Any:
        """Make this view the target of the ``%px`` magics (``%px{suffix}``...)."""
        return activate(self, suffix)


class BroadcastView(DirectView):
    """A DirectView whose calls go to the controller once and are fanned out there to every
    target engine (one message and one signature, whatever the number of engines)."""

    _flag_names = ("targets", "block", "track", "label", "is_coalescing")

    def __init__(self, client: "Client | None" = None, socket: Any = None, targets: Any = None,
                 is_coalescing: bool = False, **flags: Any) -> None:
        self.is_coalescing = is_coalescing
        super().__init__(client=client, socket=socket, targets=targets, **flags)

    def _send_to_each(self, msg_type: str, bufs: list[Any], ids: list[int], result: Callable[[list[Task]], AsyncResult],
                      content: dict[str, Any] | None, track: bool, fname: str) -> AsyncResult:
        """One request for all the engines (its tasks share one msg_id)."""
        return self.client.submitter.broadcast(msg_type, bufs, ids, result, content=content, fname=fname,
                                               label=self.label)

    def map(self, f: Callable[..., Any], *sequences: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("BroadcastView.map is not implemented: use a DirectView")



def __getattr__(name: str) -> Any:
    """ipyparallel's paths: ``ipyparallel.client.view`` also holds the load-balanced view and the
    imap iterator, which live in :mod:`.balanced` (it imports this module, so resolve lazily)."""
    if name in ("LoadBalancedView", "LazyMapIterator"):
        from . import balanced

        return getattr(balanced, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The way from a described request to a sent message and the AsyncResult that waits for it.

Views describe what to run (a function and its arguments, the engines, the flags) and hand that
to the :class:`Submitter`, which owns every step after: pickling (with the function-pickle
cache), resolving targets, signing, sending large buffers over the data channel to an engine on
this host, registering the task record before the send (a fast reply must find it) and sending.

The hot path of ``view.apply_async(f, x)`` runs here in the caller's thread: pack (reusing the
function's pickle while it is unchanged), sign, make the AsyncResult, register, and send, which
:meth:`ClientIO.send` may leave to the I/O thread to batch with the next calls.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from ..error import IPClusterError, NoEnginesError, SerializationError
from ..protocol.serialize import serialize_object
from ..protocol.session import DIRECT_MIN, Session, external, nbytes
from ._io import ClientIO
from .asyncresult import AsyncResult
from .funcpickle import FunctionPickleCache
from .remotefunction import getname
from .targets import resolve_targets
from .task import TRACK, Broadcast, Task

if TYPE_CHECKING:
    from .client import Client

R = TypeVar("R")
#: one request of a submission: its buffers and its engine (None: the load balancer picks)
Part = tuple[list[Any], "int | None"]

_METHODS = {"apply_request": "apply", "execute_request": "execute", "clear_request": "clear"}


class Submitter:
    """Sends a client's task requests. Views and the client call its public methods only.

    Parameters
    ----------
    client:
        The AsyncResults it makes belong to it.
    session, io:
        The client's signing session and its I/O (sockets, task tables).
    history:
        The client's list of submitted msg_ids (``rc.history``), appended to on each send.
    """

    def __init__(self, client: "Client", session: Session, io: ClientIO, history: list[str]) -> None:
        self.client = client
        self.session = session
        self.io = io
        self.history = history
        self._fcache = FunctionPickleCache()

    # -- describing a request ---------------------------------------------------------------
    def pack(self, f: Any, args: Any, kwargs: Any) -> list[Any]:
        """Buffers of an apply request; SerializationError, naming the culprit, before sending."""
        if not callable(f):
            raise TypeError(f"apply needs a callable, not {f!r}")
        bufs = self._fcache.dumps(f)
        try:
            serialize_object((tuple(args), dict(kwargs)), bufs)
        except SerializationError as e:
            raise _argument_error(f, args, kwargs, e) from e
        return bufs

    def pickled_function(self, f: Any) -> Any:
        """``f`` pickled once (bytes) for sending inside each part of a map; ``f`` itself when
        its pickle has out-of-band buffers."""
        if not callable(f):
            raise TypeError(f"map needs a callable, not {f!r}")
        bufs = self._fcache.dumps(f)
        return bytes(bufs[0]) if len(bufs) == 1 else f

    def targets(self, targets: Any) -> list[int]:
        """Engine ids from ``'all'``/None, an id (negative: from the end), a slice of the sorted
        ids, or a list/range of ids."""
        return resolve_targets(targets, self.io.engines)

    def is_engine(self, target: Any) -> bool:
        """Whether ``target`` is the id of a registered engine (the hot path's cheap check)."""
        return type(target) is int and target in self.io.engines

    def engine_id(self, ident: Any) -> int:
        """The id of an engine given by id or by identity (uuid)."""
        if isinstance(ident, int):
            return ident
        text = ident.decode() if isinstance(ident, bytes) else str(ident)
        for eid, uuid in self.io.engines.items():
            if uuid == text:
                return eid
        raise NoEnginesError(f"no registered engine with identity {ident!r}")

    def is_pending(self, msg_id: str) -> bool:
        return msg_id in self.io.replies.pending

    # -- results that wait on the I/O thread ----------------------------------------------------
    def on_io_thread(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the I/O thread, which owns every task's state, and wait for it (at most
        the client's ``timeout``); IPClusterError once the client is closed."""
        return self.io.run(coro, self.client.timeout)

    def attach(self, result: Any, task: Task) -> bool:
        """Make ``result`` wait for ``task`` too (on the I/O thread); False when it has finished."""
        return self.io.replies.attach(result, task)

    # -- submitting -------------------------------------------------------------------------
    def submit_one(self, msg_type: str, bufs: list[Any], target: int | None, fname: str, *,
                   metadata: dict[str, Any] | None = None, track: bool = False,
                   content: dict[str, Any] | None = None) -> AsyncResult:
        """One request, to engine ``target`` or the load balancer: its AsyncResult (the hot path)."""
        task, frames = self._prepare(msg_type, bufs, target, metadata, track, content)
        ar = AsyncResult(self.client, task, fname, None if target is None else [target])
        io = self.io
        io.replies.pending[task.msg_id] = task
        self.history.append(task.msg_id)
        io.send(frames, task)
        if io.lost or io.closed or io.auth_failed:
            self._fail_late()
        return ar

    def submit(self, msg_type: str, parts: Iterable[Part], make: Callable[[list[Task]], R], *,
               content: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None,
               track: bool = False) -> R:
        """One request per ``(buffers, target)`` part; ``make(tasks)`` builds their result,
        which owns the tasks before any request is sent."""
        tasks: list[Task] = []
        frames_list: list[list[Any]] = []
        for bufs, target in parts:
            task, frames = self._prepare(msg_type, bufs, target, metadata, track, content)
            tasks.append(task)
            frames_list.append(frames)
        result = make(tasks)
        io = self.io
        pending = io.replies.pending
        send = io.send
        history = self.history
        for task, frames in zip(tasks, frames_list):
            pending[task.msg_id] = task
            history.append(task.msg_id)
            send(frames, task)
        if io.lost or io.closed or io.auth_failed:
            self._fail_late()
        return result

    def broadcast(self, msg_type: str, bufs: list[Any], ids: list[int], make: Callable[[list[Task]], R], *,
                  content: dict[str, Any] | None = None) -> R:
        """One request for all of ``ids`` (``header["target"]`` a list), fanned out by the
        controller; one task per engine, sharing the msg_id."""
        io = self.io
        if io.lost or io.closed or io.auth_failed:
            io.check()
        header = self.session.msg_header(msg_type)
        header["target"] = list(ids)
        _, frames = self.session.serialize(msg_type, content, buffers=bufs, header=header)
        method = _METHODS[msg_type]
        tasks = [Task(header["msg_id"], method, eid, header["date"]) for eid in ids]
        for t in tasks:
            t.sent = True
        result = make(tasks)
        msg_id = header["msg_id"]
        io.replies.pending[msg_id] = Broadcast(msg_id, {eid: t for eid, t in zip(ids, tasks)})
        self.history.append(msg_id)
        io.send(frames)
        if io.lost or io.closed:
            self._fail_late()
        return result

    # -- the steps --------------------------------------------------------------------------
    def _prepare(self, msg_type: str, bufs: list[Any], target: int | None, metadata: dict[str, Any] | None,
                 track: bool, content: dict[str, Any] | None) -> tuple[Task, list[Any]]:
        """Sign one request; return its task and frames (nothing sent yet)."""
        io = self.io
        if io.lost or io.closed or io.auth_failed:
            io.check()
        session = self.session
        header = session.msg_header(msg_type)
        sent: Any = TRACK if track else False
        if target is not None:
            header["target"] = target
            if bufs:  # large buffers to an engine on this host: straight there
                large = external(bufs)
                if large and sum(map(nbytes, large)) >= DIRECT_MIN:
                    done = io.data.send(target, header["msg_id"], large, track)
                    if done is not None:
                        header["data"] = len(large)
                        sent = done
        _, frames = session.serialize(msg_type, content, metadata=metadata, buffers=bufs, header=header)
        if "data" in header:
            del frames[2:]  # the controller gets the signed packet; the buffers went ahead
        task = Task(header["msg_id"], _METHODS[msg_type], target, header["date"], metadata)
        if sent:
            task.sent = sent
        return task, frames

    def _fail_late(self) -> None:
        """The controller went away while tasks were being registered: fail them too."""
        io = self.io
        try:
            io.check()
        except IPClusterError as err:
            io.fail_all_soon(err)


def _argument_error(f: Any, args: Any, kwargs: Any, err: SerializationError) -> SerializationError:
    """The argument that cannot be pickled, named; ``err`` itself when none is alone to blame."""
    name = getname(f)
    for i, arg in enumerate(args):
        try:
            serialize_object(arg)
        except SerializationError as e:
            return SerializationError(f"argument {i} of {name}() cannot be sent: {e}")
    for key, value in dict(kwargs).items():
        try:
            serialize_object(value)
        except SerializationError as e:
            return SerializationError(f"keyword argument {key!r} of {name}() cannot be sent: {e}")
    return err

"""The engine's request loop: receive tasks from the controller, run them, reply.

Why not a subclass of ipykernel's ``Kernel``
--------------------------------------------
ipykernel implements Jupyter's five-socket protocol (shell, control, stdin, iopub, heartbeat, each
bound by the kernel and connected to by one frontend), with its own message loop and
per-message machinery around it. An ipcluster engine speaks a different protocol: one DEALER
connected to the controller carries every request and reply, prefixed by the requesting client's
identity, and output goes to the controller's IOPub. Adapting ipykernel would mean overriding
most of it, and importing it alone costs more than our whole start-up. What users actually want
from it is *IPython semantics* for ``execute`` (magics, ``display``, rich results, IPython
tracebacks, top-level ``await``), and those come from IPython's ``InteractiveShell``, which we
use directly (:mod:`.shell`, run by :mod:`.cells`), created on the first ``execute_request``. ``apply`` never needs
it, so an engine that only maps functions never imports IPython.

How the loop runs
-----------------
One asyncio loop on the main thread, with a ``zmq.asyncio`` DEALER. When a message arrives, the
loop drains everything else already waiting on the socket (non-blocking receives until EAGAIN)
and applies control messages from the controller (``abort_request``, ``shutdown_request``)
before running any queued task; it drains again after every task, so an abort that arrives
while a task runs still catches the tasks queued behind it. Tasks run one at a time,
synchronously on the main thread (user code expects the main thread: signals, GUI-less
matplotlib, C libraries). While user code runs, the loop is marked as not running, so user
code may call ``asyncio.run()`` as in a plain script; cells with top-level ``await`` run as a
task on the engine's loop instead.

A message that does not unpack or verify is logged and dropped; the engine never dies of one.
Every request gets a reply whose metadata says when it ran and how many IOPub messages it
produced (``iopub_count``).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Literal

import zmq
import zmq.asyncio
from traitlets import Float, Int
from traitlets.config import LoggingConfigurable

from ..error import error_content, wrap_exception
from ..protocol.data import TTL, DataChannel, keep_for, wait_for
from ..protocol.interactive import user_frames
from ..protocol.messages import AbortRequest, ExecuteRequest, RegistrationReply, ShutdownRequest, reply_type
from ..protocol.receive import Handlers, drain
from ..protocol.rejects import limited
from ..protocol.serialize import serialize_result
from ..protocol.session import DIRECT_MIN, DataMissing, MalformedMessage, Message, Session, external, nbytes
from ..protocol.wire import NOBLOCK, readable, send_frames
from ..protocol.wire import fd as wire_fd
from .cells import Cells
from .interrupts import Interrupts
from .iopub import IOPub
from .namespace import FunctionCache, clear_namespace, module_attributes, resolve_references
from .running_loop import hide_running_loop, restore_running_loop

#: ZeroMQ messages taken per receive pass before the queue gets a look (see protocol.receive)
DRAIN_LIMIT = 512

#: longest a finished task's reply waits for the replies of the tasks queued behind it (seconds)
REPLY_HOLD = 0.002
#: a task shorter than this (seconds) is tiny: its reply may wait for those of the next tasks
TINY_TASK = 0.0005


class _Waiting(Message):
    """A queued request whose buffers are still on their way over the data channel. Reads like
    a message's header fields, so aborting it or answering it with an error needs nothing else."""

    __slots__ = ("frames", "deadline")

    def __init__(self, frames: list[Any], header: dict[str, Any], deadline: float) -> None:
        super().__init__(header=header, msg_id=header["msg_id"], msg_type=header["msg_type"])
        self.frames = frames
        self.deadline = deadline


_ABORTED = {"status": "aborted", "ename": "TaskAborted", "evalue": "task aborted before it ran", "traceback": ""}


class Kernel(LoggingConfigurable):
    """Runs the requests an engine receives (built and driven by :class:`.app.EngineApp`)."""

    function_cache_size = Int(
        128,
        config=True,
        help="How many functions sent by clients to keep unpickled (0: unpickle every time). "
        "A function sent again is then the same object, as if defined on the engine.",
    )
    max_remembered_aborts = Int(
        10_000,
        config=True,
        help="How many aborted msg_ids not yet received to remember (oldest forgotten first).",
    )

    data_wait = Float(
        30.0,
        config=True,
        help="Seconds a request whose large buffers come over the data channel waits for them "
        "(plus one per 100 MB) before it fails; the tasks queued behind it wait too.",
    )

    def __init__(
        self,
        *,
        socket: zmq.asyncio.Socket,
        session: Session,
        iopub: IOPub,
        interrupts: Interrupts,
        engine_id: int,
        engine_uuid: str,
        user_module: Any,
        on_stop: Callable[[int, str], None],
        data: DataChannel | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.socket = socket  # the engine's DEALER (zmq.asyncio, as registration used it)
        self._raw: zmq.Socket[Any] = zmq.Socket.shadow(socket.underlying)  # same socket, synchronous
        self.session = session
        self.iopub = iopub
        self.interrupts = interrupts
        self.engine_id = engine_id
        self.engine_uuid = engine_uuid
        self.user_module = user_module
        self.user_ns: dict[str, Any] = user_module.__dict__
        self.functions = FunctionCache(self.user_ns, self.function_cache_size)
        self._on_stop = on_stop
        self.data = data
        self.stopping = False
        self.cells = Cells(self, user_module, iopub, interrupts,
                           {"engine_id": engine_id, "engine_uuid": engine_uuid}, self._error_content, self.log)
        self._queue: deque[tuple[list[bytes], Message]] = deque()
        self._aborted: OrderedDict[str, None] = OrderedDict()
        self._reply_types = {t: reply_type(t) for t in self.TASKS}
        self.control: Handlers[Callable[..., None]] = Handlers(self.CONTROL, f"engine {engine_id}", self.log)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Future[None] | None = None  # set while serve() waits for a message
        self._outbox: list[Any] = []  # reply packets held back for one batch
        self._outbox_idents: tuple[bytes, ...] = ()
        self._outbox_since = 0.0

    # -- the loop ------------------------------------------------------------------------
    async def serve(self) -> None:
        """Receive and run requests until stopped (or cancelled)."""
        self._loop = asyncio.get_running_loop()
        self.cells.watch_imports()
        # The socket's descriptor is watched directly rather than through zmq.asyncio's awaited
        # receives: one Future per idle wait instead of per message, and no reader churn.
        raw = self._raw
        fd = wire_fd(raw)
        self._loop.add_reader(fd, self._on_readable)
        if self.data is not None:
            self._loop.add_reader(self.data.fd, self._on_data)
        try:
            while not self.stopping:
                if not readable(raw) and not self._head_ready():
                    self._wakeup = self._loop.create_future()
                    try:
                        await self._wakeup
                    finally:
                        self._wakeup = None
                    continue
                self._drain()
                await self._run_queue()
        finally:
            self._loop.remove_reader(fd)
            if self.data is not None:
                self._loop.remove_reader(self.data.fd)
            self.cells.unwatch_imports()

    def _on_readable(self) -> None:
        """The descriptor fired. Asking ZeroMQ whether a message waits also consumes the edge,
        so the (level-triggered) loop does not call this again and again while a cell runs."""
        if readable(self._raw):
            self._wake()

    def _on_data(self) -> None:
        assert self.data is not None and self._loop is not None
        if self.data.drain():
            self._loop.call_later(TTL + 1, self.data.expire)  # buffers nobody claims do not stay
            self._wake()

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _head_ready(self) -> bool:
        """Whether the first queued task can run (or fail) now: not waiting for its buffers."""
        if not self._queue:
            return False
        head = self._queue[0][1]
        if type(head) is not _Waiting:
            return True
        assert self.data is not None
        return self.data.has(head["msg_id"]) or time.monotonic() >= head.deadline

    def _drain(self) -> None:
        """Take every message already waiting on the socket, without blocking."""
        raw = self._raw
        # asking first is half the cost of a receive that fails, and after a task usually nothing waits
        while readable(raw) and drain(raw, self._accept, DRAIN_LIMIT, self.log):
            pass

    def _accept(self, frames: list[Any]) -> None:
        """Queue a task, or apply a control message at once (one message: batches are split)."""
        try:
            idents, msg = self.session.unpack(frames)
        except DataMissing as e:  # its buffers come over the data channel: wait for them in order
            if self.data is None or e.header["msg_type"] not in self.TASKS:
                self.log.warning("dropped %s: %s", e.header["msg_type"], e)
                return
            wait = wait_for(e.size, self.data_wait)
            self._queue.append((Session.split_idents(frames)[0], _Waiting(frames, e.header, time.monotonic() + wait)))
            assert self._loop is not None
            self._loop.call_later(wait + 0.01, self._wake)
            return
        except MalformedMessage as e:  # signed, so from a client with the key: it gets an answer
            header = e.header
            idents = Session.split_idents(frames)[0]
            if header is None or type(header.get("msg_type")) is not str or not idents \
                    or not header["msg_type"].endswith("_request"):
                limited(self.log, "the engine").refuse(type(e).__name__, f"{e} ({len(frames)} frames)")
                return
            self.log.warning("%s %s does not unpack: %s", header["msg_type"], header.get("msg_id"), e)
            msg = Message(header=header, msg_id=header.get("msg_id"), msg_type=header["msg_type"])
            self._reply(idents, msg, reply_type(header["msg_type"]), error_content(e), (), time.time(), 0)
            return
        except Exception as e:
            limited(self.log, "the engine").refuse(type(e).__name__, f"{e} ({len(frames)} frames)")
            return
        msg_type = msg["msg_type"]
        if msg_type in self.TASKS:
            self._queue.append((idents, msg))
        elif not idents:  # from the controller itself
            handler = self.control.get(msg_type)
            if handler is None:
                self.log.warning("ignored unexpected %s message", msg_type)
            else:
                handler(self, msg["content"])
        elif msg_type.endswith("_request"):  # a client's request engines do not serve
            self.log.warning("unsupported request %s from %r", msg_type, idents[0])
            content = error_content(NotImplementedError(f"engines do not handle {msg_type}"))
            self._reply(idents, msg, reply_type(msg_type), content, (), time.time(), 0)
        else:
            self.log.warning("ignored unexpected %s message", msg_type)

    async def _run_queue(self) -> None:
        queue = self._queue
        while queue and not self.stopping:
            idents, msg = queue.popleft()
            if type(msg) is _Waiting:
                joined = self._join_data(idents, msg)
                if joined is None:  # its buffers are not here yet: the tasks behind it wait too
                    queue.appendleft((idents, msg))
                    break
                if joined is False:
                    continue
                msg = joined
            if self._aborted and msg["msg_id"] in self._aborted:
                del self._aborted[msg["msg_id"]]
                self._reply_aborted(idents, msg)
                continue
            msg_type = msg["msg_type"]
            started = time.time()
            started_mono = time.monotonic()
            buffers: Any = ()
            try:
                done = self.TASKS[msg_type](self, msg)
                if type(done) is not tuple:  # execute is a coroutine: a cell may await
                    done = await done
                content, buffers = done
            except Exception:  # a bug of ours, not the user's: still answer
                self.log.exception("%s %s failed", msg_type, msg["msg_id"])
                content = self._error_content("engine")
            count = self.iopub.end()
            try:
                self._reply(idents, msg, self._reply_types[msg_type], content, buffers, started, count)
            except Exception:  # e.g. content that is not JSON: answer with the reason instead
                self.log.exception("could not send the reply to %s", msg["msg_id"])
                content = self._error_content("engine")
                self._reply(idents, msg, self._reply_types[msg_type], content, (), started, count)
            self._drain()
            # The replies of tiny tasks wait while more tasks are queued, and go out together (one
            # ZeroMQ message) when the queue is empty, the oldest has waited REPLY_HOLD, or a task
            # took longer than TINY_TASK (batching buys nothing there, and the controller should
            # hear at once that the engine can take more): batching under load without delaying
            # a lone task's reply.
            now = time.monotonic()
            if not queue or now - started_mono > TINY_TASK or now - self._outbox_since > REPLY_HOLD:
                self.flush()
        self.flush()

    def _join_data(self, idents: list[bytes], waiting: _Waiting) -> Message | Literal[False] | None:
        """The message with its buffers from the data channel; None while they are on their way;
        False when they never came (the request is answered with the error)."""
        assert self.data is not None
        frames = self.data.take(waiting["msg_id"])
        if frames is not None:
            try:
                return self.session.unpack([*waiting.frames, *frames])[1]
            except Exception as e:
                reason = f"its buffers from the data channel do not match the request: {e}"
        elif time.monotonic() < waiting.deadline:
            return None
        else:
            reason = f"its {waiting['header'].get('data')} buffer(s) never arrived over the data channel"
        self.log.error("request %s failed: %s", waiting["msg_id"], reason)
        content = {"status": "error", "ename": "ProtocolError", "evalue": f"request {waiting['msg_id']}: {reason}",
                   "traceback": ""}
        self._reply(idents, waiting, self._reply_types[waiting["msg_type"]], content, (), time.time(), 0)
        return False

    def stop(self, code: int, reason: str) -> None:
        """Stop serving after the current task; the app then unregisters and exits."""
        self.stopping = True
        self._on_stop(code, reason)

    # -- control -------------------------------------------------------------------------
    def _on_abort(self, content: AbortRequest) -> None:
        self._abort(content.get("msg_ids"))

    def _on_shutdown(self, content: ShutdownRequest) -> None:
        self.log.info("shutdown requested by the controller")
        self.stop(0, "shutdown_request")

    def _on_registration_reply(self, content: RegistrationReply) -> None:
        self.log.debug("ignored a late registration_reply")

    def _abort(self, msg_ids: list[str] | None) -> None:
        queue = self._queue
        if msg_ids is None:
            self.log.info("aborting all %d queued tasks", len(queue))
            while queue:
                self._reply_aborted(*queue.popleft())
            return
        wanted = set(msg_ids)
        kept: deque[tuple[list[bytes], Message]] = deque()
        for item in queue:
            if item[1]["msg_id"] in wanted:
                wanted.discard(item[1]["msg_id"])
                self._reply_aborted(*item)
            else:
                kept.append(item)
        queue.clear()  # in place: _run_queue holds a reference to this deque
        queue.extend(kept)
        for msg_id in wanted:  # not received yet: abort when they arrive
            self._aborted[msg_id] = None
        while len(self._aborted) > self.max_remembered_aborts:
            self._aborted.popitem(last=False)
        self.log.debug("aborted %d queued tasks, %d pending", len(msg_ids) - len(wanted), len(wanted))

    def _reply_aborted(self, idents: list[bytes], msg: Message) -> None:
        content: dict[str, Any] = dict(_ABORTED)
        if msg["msg_type"] == "execute_request":
            content["execution_count"] = self.cells.execution_count
        now = time.time()
        self._reply(idents, msg, self._reply_types[msg["msg_type"]], content, (), now, 0)

    # -- replies -------------------------------------------------------------------------
    def _reply(
        self,
        idents: list[bytes],
        msg: Message,
        msg_type: str,
        content: dict[str, Any],
        buffers: Any,
        started: float,
        iopub_count: int,
    ) -> None:
        metadata = {
            "engine_id": self.engine_id,
            "engine_uuid": self.engine_uuid,
            "started": started,
            "completed": time.time(),
            "status": content["status"],
            "iopub_count": iopub_count,
        }
        header = None
        if buffers and self.data is not None and idents:
            large = external(buffers)
            size = sum(map(nbytes, large))
            if size >= DIRECT_MIN:
                self.flush()  # the held replies go first, as they would on one path
                header = self.session.msg_header(msg_type)
                if self.data.send(idents[0], header["msg_id"], large):
                    header["data"] = len(large)
                else:
                    header = None
                if self._loop is not None:
                    self._loop.call_later(keep_for(size) + 1, self.data.expire)  # shared memory never taken
                    if self.data.pending():
                        self._loop.call_soon(self._on_data)
        _, frames = self.session.serialize(
            msg_type, content, parent=msg["header"], metadata=metadata, buffers=buffers, header=header, idents=idents
        )
        if header is not None:  # its buffers went over the data channel
            self.send(frames[: len(idents) + 2])
            return
        if len(frames) != len(idents) + 2:  # large buffers: on its own, after what waits
            self.send(frames)
            return
        key = tuple(idents)
        if self._outbox and key != self._outbox_idents:
            self.flush()
        if not self._outbox:
            self._outbox_idents = key
            self._outbox_since = time.monotonic()
        self._outbox.append(frames[-1])

    def flush(self) -> None:
        """Send the replies held back as one batch (see :meth:`_run_queue`)."""
        if self._outbox:
            packets, self._outbox = self._outbox, []
            self._send(self.session.batch(self._outbox_idents, packets))

    def send(self, frames: list[Any]) -> None:
        """Send on the DEALER, after any held-back replies (its send queue is unbounded, so this
        does not block)."""
        self.flush()
        self._send(frames)

    def _send(self, frames: list[Any]) -> None:
        try:
            send_frames(self._raw, frames, NOBLOCK)
        except zmq.ZMQError as e:
            self.log.error("could not send %d frames to the controller: %s", len(frames), e)

    def _error_content(self, method: str) -> dict[str, Any]:
        """Error-reply content for the exception being handled; never raises."""
        info = {"engine_id": self.engine_id, "engine_uuid": self.engine_uuid, "method": method}
        try:
            return wrap_exception(info)
        except Exception:  # str() of the exception itself failed
            etype = sys.exc_info()[0]
            name = etype.__name__ if etype is not None else "Error"
            return {"status": "error", "ename": name, "evalue": "<unprintable>", "traceback": "", "engine_info": info}

    # -- handlers ------------------------------------------------------------------------
    def _apply(self, msg: Message) -> tuple[dict[str, Any], list[Any]]:
        """Call a function; its result pickled is the reply's buffers."""
        self.iopub.begin(msg["header"])
        intr = self.interrupts
        loop = self._loop
        try:
            f, args, kwargs = self.functions.load(msg["buffers"])
            args, kwargs = resolve_references(args, kwargs, self.user_ns)
            hide_running_loop()  # user code may asyncio.run(), as in a script
            intr.armed = True
            try:
                result = f(*args, **kwargs)
            finally:
                intr.disarm()
                restore_running_loop(loop)
            return {"status": "ok"}, serialize_result(result)
        except BaseException as e:  # user code: KeyboardInterrupt and SystemExit are replies too
            intr.disarm()
            restore_running_loop(loop)
            e.__traceback__ = user_frames(e.__traceback__)  # users see their code first
            return self._error_content("apply"), []

    async def _execute(self, msg: Message) -> tuple[dict[str, Any], tuple[()]]:
        """Run a cell in the IPython shell; output and errors go out on IOPub."""
        self.iopub.begin(msg["header"])
        content: ExecuteRequest = msg["content"]
        return await self.cells.execute(content), ()

    def _clear(self, msg: Message) -> tuple[dict[str, Any], tuple[()]]:
        """Reset the user namespace (builtins stay)."""
        self.iopub.begin(msg["header"])
        self.functions.clear()
        kept = module_attributes(self.user_ns)
        if not self.cells.reset():
            clear_namespace(self.user_ns)
        for key, value in kept.items():  # IPython's reset drops __spec__ and co.
            self.user_ns.setdefault(key, value)
        return {"status": "ok"}, ()

    #: what the engine runs, by request type; each returns the reply's content and buffers
    #: (execute is a coroutine, since a cell may ``await``)
    TASKS: dict[str, Callable[..., Any]] = {
        "apply_request": _apply,
        "execute_request": _execute,
        "clear_request": _clear,
    }
    #: what the engine does with each message from the controller itself (not a client's)
    CONTROL: dict[str, Callable[..., None]] = {
        "abort_request": _on_abort,
        "shutdown_request": _on_shutdown,
        "registration_reply": _on_registration_reply,
    }

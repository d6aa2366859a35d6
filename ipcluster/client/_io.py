"""The client's sockets and its one I/O thread.

Threads: the user's thread(s) pickle and sign a request, register its :class:`Task` and send it
(:meth:`ClientIO.send`); the I/O thread, an asyncio loop in a :class:`~ipcluster._aio.LoopThread`,
receives everything. Sockets are plain ZeroMQ sockets whose descriptors the loop watches
(``add_reader``), as in the controller: a DEALER to the controller's client ROUTER (requests,
replies, controller queries), a SUB on its iopub XPUB (engine output, notifications) and a monitor
of the DEALER, which fails every outstanding request with ``ControllerError`` when the controller
goes away (:mod:`.liveness` notices a hung one). Each socket has one reader that handles every
message ready (up to a batch) before yielding, dispatching on ``msg_type``; waiting user threads
are notified once per batch.

Why the caller sends itself instead of queueing for the I/O thread: with two cores, waking the
I/O thread for each ``apply_async`` (every call found the queue empty) doubled the caller's cost
to ~45 µs through GIL hand-offs. The DEALER is shared under a lock instead.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from time import perf_counter as _perf_counter
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from .._aio import LoopThread
from ..error import AuthenticationError, ClusterTimeout, ControllerError, IPClusterError, ProtocolError
from ..protocol.receive import Handlers, drain
from ..protocol.rejects import limited
from ..protocol.wire import NOBLOCK, fd, readable, send_frames
from ..protocol.session import DataMissing, Message, Session, auth_error
from .datalink import DataLink
from .liveness import Pinger
from .replies import Replies
from .task import TRACK, Task

log = logging.getLogger(__name__)

#: messages handled from one socket before letting the loop run other work
BATCH = 512
#: sends closer together than this (seconds) are a burst, batched by the I/O thread
BURST = 0.0002


def _batchable(frames: list[Any], task: Task | None) -> bool:
    """A small message (delimiter and packet, no large buffers) nobody tracks: it may join a batch."""
    return len(frames) == 2 and (task is None or task.sent is not TRACK)


class ClientIO:
    """Owns the sockets and the I/O thread of one Client, and its :class:`~.replies.Replies`."""

    def __init__(
        self,
        session: Session,
        client_url: str,
        iopub_url: str,
        *,
        context: zmq.Context | None = None,
        where: str = "",
        cache_size: int = 1024,
        cache_bytes: int = 1 << 30,
        shm_dir: str = "",
        hb_period: float = 1.0, hb_misses: int = 5,
    ) -> None:
        self.session = session
        self.shm_dir = shm_dir
        self.client_url = client_url
        self.iopub_url = iopub_url
        self.where = where or client_url
        self.engines: dict[int, str] = {}
        self.engine_info: dict[int, dict[str, Any]] = {}  # what the controller told of each engine
        self.lost: str | None = None  # why the controller is unreachable
        self.auth_failed: str | None = None
        self.expect_disconnect = False
        self.connected = False
        self.closed = False
        self._queries: dict[str, asyncio.Future[Message]] = {}
        self._lock = threading.Lock()  # guards every operation on the DEALER (see send)
        self._out: deque[tuple[list[Any], Task | None]] = deque()  # sends ZeroMQ could not take yet
        self._drain_scheduled = False
        self._last_send = 0.0
        self._retry: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._engines_changed: asyncio.Event | None = None
        self._welcome: asyncio.Event | None = None
        self._own_context = context is None
        self.context: zmq.Context = zmq.Context() if context is None else context
        self.loop_thread = LoopThread("ipcluster-client-io")
        self.loop = self.loop_thread.loop
        self.replies = Replies(self.loop, cache_size, cache_bytes)
        self.pinger = Pinger(self.loop, session, self.where, hb_period, hb_misses, self.replies.pending, self._queries,
                             self.engines, up=lambda: self.connected and not self.lost, send=self.send,
                             fail=self._fail_all, set_lost=lambda why: setattr(self, "lost", why))
        # replies to tasks, by msg_type; any other reply answers a controller query
        self._on_message: Handlers[Callable[[Message], None]] = Handlers(dict.fromkeys(
            ("apply_reply", "execute_reply", "clear_reply"), self.replies.on_reply), "the client", log)
        try:
            self.loop_thread.run(self._open(), 10)
        except BaseException:
            self.loop_thread.stop()
            if self._own_context:
                self.context.destroy(linger=0)  # term() would wait on sockets _open left open
            raise

    # -- setup and teardown -------------------------------------------------------------------
    async def _open(self) -> None:
        ctx = self.context
        self._engines_changed = asyncio.Event()
        self._welcome = asyncio.Event()
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.IDENTITY, self.session.session_id.encode())
        dealer.setsockopt(zmq.SNDHWM, 0)
        dealer.setsockopt(zmq.RCVHWM, 0)
        dealer.setsockopt(zmq.LINGER, 0)
        self.monitor = dealer.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        dealer.connect(self.client_url)
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(self.iopub_url)
        self.dealer, self.sub = dealer, sub
        loop = self.loop
        # large buffers to and from engines on this host skip the controller (protocol.data)
        self.data = DataLink(ctx, self.session.session_id, loop, self._on_dealer, self._on_lost_data,
                             self.shm_dir)
        # ZeroMQ's descriptors are edge-triggered: each reader drains its socket until EAGAIN
        loop.add_reader(fd(dealer), self._drain_dealer)
        loop.add_reader(fd(sub), self._drain_sub)
        loop.add_reader(fd(self.monitor), self._drain_monitor)
        loop.call_soon(self._drain_dealer)
        loop.call_soon(self._drain_sub)
        loop.call_soon(self._drain_monitor)
        self.pinger.start(ctx, self.client_url)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self, linger: float | None = None) -> None:
        """Fail what is outstanding, close the sockets and stop the I/O thread."""
        if self.closed:
            return
        self.closed = True
        try:
            self.loop_thread.run(self._close(linger), 10)
        except Exception:
            log.warning("error while closing the client's sockets", exc_info=True)
        self.loop_thread.stop()
        if self._own_context:
            self.context.destroy(linger=0)  # any socket _close could not close must not block us

    async def _close(self, linger: float | None) -> None:
        self.pinger.close(bye=self.connected and not self.lost)  # the controller drops our queued tasks
        self._flush()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_all(IPClusterError("the client was closed before this result arrived"))
        if self._retry is not None:
            self._retry.cancel()
        if linger is None:  # a moment for requests still queued in ZeroMQ, if anyone can get them
            linger = 1.0 if self.connected and not self.lost else 0.0
        loop = self.loop
        with self._lock:
            self.data.close()
            for sock in (self.dealer, self.sub, self.monitor):
                try:
                    loop.remove_reader(fd(sock))
                except (zmq.ZMQError, ValueError):
                    pass
            try:
                self.dealer.disable_monitor()
            except zmq.ZMQError:
                pass
            self.monitor.close(linger=0)
            self.dealer.close(linger=int(linger * 1000))
            self.sub.close(linger=0)

    # -- sending (any thread) -------------------------------------------------------------------
    def send(self, frames: list[Any], task: Task | None = None) -> None:
        """Send a message from the calling thread.

        The DEALER is used from the caller's thread and the I/O thread alike, one at a time under
        ``_lock`` (a lock is the full memory barrier ZeroMQ asks for to share a socket between
        threads). Sending directly, rather than handing frames to the I/O thread, saves a
        thread wake-up per call (on two cores, as much as the call). What ZeroMQ cannot take
        without blocking waits in ``_out`` for the I/O thread.

        In a burst (a loop of ``apply_async``: sends less than ``BURST`` apart), small messages wait
        in ``_out`` too, and the I/O thread sends them as one batch: ZeroMQ's cost is per message.
        A lone call, or one that follows a wait for a result, still goes out at once.
        """
        now = _perf_counter()
        burst = now - self._last_send < BURST
        self._last_send = now
        if self._out or (burst and _batchable(frames, task)):
            self._out.append((frames, task))  # behind what waits, to keep the order
            self._wake_flush()
            return
        dealer = self.dealer
        with self._lock:
            try:
                if task is None:
                    send_frames(dealer, frames, NOBLOCK)
                elif task.sent is TRACK:
                    task.sent = dealer.send_multipart(frames, zmq.NOBLOCK, copy=False, track=True)
                else:
                    send_frames(dealer, frames, NOBLOCK)
                    if task.sent is False:  # else a tracker of its buffers' send (data channel)
                        task.sent = True
            except zmq.Again:
                self._out.append((frames, task))
                waiting = False
            except zmq.ZMQError as e:
                if self.closed:
                    return
                raise IPClusterError(f"could not send to the controller at {self.where}: {e}") from e
            else:
                # A send may process the socket's pending commands and so consume the edge of the
                # descriptor that announced a reply: the I/O thread would not wake for it. Asking
                # whether input waits (about 1 µs) tells, and a later arrival signals anew.
                waiting = readable(dealer)
        if self._out or waiting:
            self._wake_flush()

    def _call_soon(self, fn: Callable[[], None]) -> None:
        if threading.get_ident() == self.loop_thread.thread.ident:
            self.loop.call_soon(fn)
        else:
            self.loop.call_soon_threadsafe(fn)

    def _wake_flush(self) -> None:
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._call_soon(self._drain_dealer)

    def _flush(self) -> None:
        """I/O thread: send what waits in ``_out``; retry later what ZeroMQ still refuses."""
        out = self._out
        while out:
            frames, task = out[0]
            if len(out) > 1 and _batchable(frames, task):
                run: list[tuple[list[Any], Task | None]] = []
                while out and len(run) < BATCH and _batchable(*out[0]):
                    run.append(out.popleft())
                with self._lock:
                    try:
                        send_frames(self.dealer, self.session.batch((), [f[1] for f, _ in run]), NOBLOCK)
                    except zmq.Again:
                        out.extendleft(reversed(run))
                        if self._retry is None:
                            self._retry = self.loop.call_later(0.01, self._retry_flush)
                        return
                    except zmq.ZMQError as e:
                        out.extendleft(reversed(run))
                        log.error("could not send to the controller at %s: %s", self.client_url, e)
                        return
                for _, t in run:
                    if t is not None and t.sent is False:
                        t.sent = True
                continue
            with self._lock:
                try:
                    if task is not None and task.sent is TRACK:
                        task.sent = self.dealer.send_multipart(frames, zmq.NOBLOCK, copy=False, track=True)
                    else:
                        send_frames(self.dealer, frames, NOBLOCK)
                        if task is not None and task.sent is False:
                            task.sent = True
                except zmq.Again:
                    if self._retry is None:
                        self._retry = self.loop.call_later(0.01, self._retry_flush)
                    return
                except zmq.ZMQError as e:
                    log.error("could not send to the controller at %s: %s", self.client_url, e)
                    return
            out.popleft()

    def _retry_flush(self) -> None:
        self._retry = None
        self._drain_dealer()

    # -- receiving (I/O thread) ---------------------------------------------------------------
    def _drain_dealer(self) -> None:
        self._drain_scheduled = False
        if self.dealer.closed:
            return
        if self._out:
            self._flush()
        try:
            more = drain(self.dealer, self._on_dealer, BATCH, log, lock=self._lock)
        except zmq.ZMQError:  # closed
            return
        if self._out:
            self._flush()
            if not more:
                with self._lock:  # the sends may have consumed the edge of a reply (see send)
                    more = readable(self.dealer)
        if more:  # let other work in first
            self._drain_scheduled = True
            self.loop.call_soon(self._drain_dealer)
        self.replies.notify()

    def _drain_sub(self) -> None:
        if self.sub.closed:
            return
        try:
            more = drain(self.sub, self._on_iopub, BATCH, log, batches=False)
        except zmq.ZMQError:  # closed
            return
        if more:
            self.loop.call_soon(self._drain_sub)
        self.replies.notify()

    def _on_dealer(self, frames: list[Any]) -> None:
        try:
            _, msg = self.session.unpack(frames)
        except DataMissing as e:
            self.data.on_missing(frames, e)
            return
        except ProtocolError as e:
            self._on_unverified(frames, e)
            return
        handler = self._on_message.get(msg["msg_type"]) or self._on_query_reply
        handler(msg)

    def _on_lost_data(self, frames: list[Any], why: str) -> None:
        """A reply whose buffers never came over the data channel: its task fails."""
        try:
            _, _, packet = self.session.peek(frames)
        except ProtocolError:
            return
        self.replies.fail_request(packet.parent.get("msg_id", ""), ProtocolError(why))

    def _on_unverified(self, frames: list[Any], err: Exception) -> None:
        text = auth_error(frames)  # compared as bytes: nothing unsigned is parsed
        if text is not None:
            self.auth_failed = (
                f"the controller at {self.where} rejected this client's messages: the key in the "
                f"connection file does not match the cluster's ({text})"
            )
            log.error("%s", self.auth_failed)
            self._fail_all(AuthenticationError(self.auth_failed))
        else:
            limited(log, "the client").refuse(type(err).__name__, str(err))

    def _on_query_reply(self, msg: Message) -> None:
        parent_id = msg["parent_header"].get("msg_id")
        fut = self._queries.pop(parent_id, None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    def _on_iopub(self, frames: list[Any]) -> None:
        try:
            idents, msg = self.session.unpack(frames)
        except ProtocolError as e:
            log.debug("dropped an iopub message that did not verify: %s", e)
            return
        topic = idents[0] if idents else b""
        if topic.startswith(b"controller."):
            self._on_notification(msg)
        else:
            self.replies.on_output(msg)

    def fail_all_soon(self, err: Exception) -> None:
        """Any thread: fail everything outstanding with ``err`` (on the I/O thread while it runs)."""
        try:
            self.loop.call_soon_threadsafe(self._fail_all, err)
        except RuntimeError:  # the I/O loop has stopped
            self._fail_all(err)

    def _fail_all(self, err: Exception) -> None:
        self.replies.fail_all(err)
        for fut in self._queries.values():
            if not fut.done():
                fut.set_exception(err)
        self._queries.clear()
        if self._engines_changed is not None:
            self._engines_changed.set()

    def _on_notification(self, msg: Message) -> None:
        msg_type = msg["msg_type"]
        content = msg["content"]
        if msg_type == "iopub_welcome":
            assert self._welcome is not None
            self._welcome.set()
            return
        if msg_type not in ("registration_notification", "unregistration_notification"):
            return
        eid = int(content["id"])
        if msg_type == "registration_notification":
            self.engines[eid] = content.get("uuid", "")
            self.engine_info[eid] = dict(content)
            self.data.connect(eid, content)
            log.debug("engine %i registered", eid)
        else:
            self.engines.pop(eid, None)
            self.engine_info.pop(eid, None)
            self.data.disconnect(eid)
            log.debug("engine %i unregistered", eid)
        assert self._engines_changed is not None
        self._engines_changed.set()

    def _drain_monitor(self) -> None:
        """Follow the DEALER's connection: when the controller goes away, fail what waits on it."""
        while True:
            try:
                frames = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.ZMQError:  # nothing left (Again), or closed
                return
            event = parse_monitor_message(frames)
            if event["event"] == zmq.EVENT_DISCONNECTED:
                reason = f"lost the connection to the controller at {self.where}"
                if self.expect_disconnect:
                    log.info("%s (it was shut down)", reason)
                else:
                    log.error("%s; failing %d outstanding request(s)", reason, len(self.replies.pending))
                self.lost = reason
                self._fail_all(ControllerError(reason))
            elif event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected = True
                if self.lost:
                    log.info("reconnected to the controller at %s", self.where)
                    self.lost = None

    # -- controller queries ---------------------------------------------------------------------
    def check(self) -> None:
        """Raise if requests cannot be sent (closed client, lost controller, wrong key)."""
        if self.closed:
            raise IPClusterError("the client is closed")
        if self.auth_failed:
            raise AuthenticationError(self.auth_failed)
        if self.lost:
            raise ControllerError(self.lost)

    async def query(self, msg_type: str, content: dict[str, Any], timeout: float | None) -> Message:
        """Send a controller request and wait for its reply; error replies raise ControllerError."""
        self.check()
        header, frames = self.session.serialize(msg_type, content)
        fut: asyncio.Future[Message] = self.loop.create_future()
        msg_id = header["msg_id"]
        self._queries[msg_id] = fut
        self.send(frames)
        try:
            async with asyncio.timeout(timeout):
                msg = await fut
        except TimeoutError:
            raise ClusterTimeout(
                f"the controller at {self.where} did not answer {msg_type} within {timeout} s"
            ) from None
        finally:
            self._queries.pop(msg_id, None)
        reply = msg["content"]
        if reply.get("status") == "error":
            raise ControllerError(f"{msg_type} failed: {reply.get('ename')}: {reply.get('evalue')}")
        return msg

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        """Run a coroutine on the I/O thread and wait for it (from a user thread)."""
        if self.closed:
            coro.close()
            raise IPClusterError("the client is closed")
        return self.loop_thread.run(coro, timeout)

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Start a coroutine on the I/O thread; return a concurrent.futures.Future."""
        if self.closed:
            coro.close()
            raise IPClusterError("the client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def wait_welcome(self, timeout: float) -> bool:
        assert self._welcome is not None
        try:
            async with asyncio.timeout(timeout):
                return await self._welcome.wait()
        except TimeoutError:
            return False

    async def engines_changed(self, timeout: float | None) -> None:
        """Wait (bounded) for the next registration or unregistration notice."""
        assert self._engines_changed is not None
        self._engines_changed.clear()
        try:
            async with asyncio.timeout(timeout):
                await self._engines_changed.wait()
        except TimeoutError:
            pass

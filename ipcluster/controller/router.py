"""Moves frames between the controller's sockets and the hub's state.

Sockets are plain (blocking-API) ZeroMQ sockets whose file descriptors are watched by the asyncio
loop. When any becomes readable, :meth:`Router.pump` drains every socket until none has input
left: a lone request is forwarded at once, and under load many are handled per wake-up with no
per-message Future or task. Forwarded requests and replies are never unpickled here; the
controller reads only the (signed) header and, for replies, the parent header, and forwards the
received frames themselves (``copy=False``), so large buffers cross it without a copy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from ..error import EngineError, ProtocolError, error_content
from ..protocol import messages
from ..protocol.receive import Handlers, Reply, drain
from ..protocol.rejects import Rejects
from ..protocol.session import AUTH_ERRORS, DELIM, BadSignature, MalformedMessage, Packet, Session
from ..protocol.wire import fd, send_frames
from .daskscheduler import DaskScheduler
from .enginecare import EngineCare
from .heartbeat import HeartMonitor
from .decisions import Action, Assign, Fail
from .hub import Hub
from .db import TaskRecord
from .queries import Queries
from .replay import ReplayGuard

BATCH = 256  # messages taken from one socket before looking at the others
OUTBOX_MAX = 512  # messages batched for one peer before they are sent anyway

#: peers told of an auth_error before the list starts again (one auth_error per peer is enough,
#: and a peer that floods without reading must not make the controller queue replies for it)
TOLD_MAX = 4096

#: frames smaller than this are kept as bytes: a received zmq.Frame pins libzmq's whole receive
#: buffer (about 8 KiB), so 20,000 kept 500-byte frames would hold 180 MB instead of 11 MB
COMPACT_LIMIT = 64 * 1024


def compact(frames: list[Any], start: int) -> list[Any]:
    """``frames[start:]`` for keeping: small frames copied out, large ones kept zero-copy."""
    return [f if type(f) is bytes or len(f) >= COMPACT_LIMIT else bytes(f) for f in frames[start:]]


class Router:
    """Serves one controller's sockets until :attr:`stopped` is set."""

    def __init__(
        self,
        hub: Hub,
        session: Session,
        sockets: dict[str, zmq.Socket],
        *,
        cluster_id: str = "",
        hb_period: float = 1.0,
        hb_misses: int = 3,
        dask: DaskScheduler | None = None,
        client_timeout: float = 30.0,
        drop_orphaned_tasks: bool = True,
        engine_timeout: float = 0.0,
        replay: ReplayGuard | None = None,
        max_client_frame: int = 0,
        max_engine_frame: int = 0,
        interrupt_grace: float = 3.0,
        log: logging.Logger | None = None,
    ) -> None:
        self.hub = hub
        self.session = session
        self.cluster_id = cluster_id
        self.hb_period = hb_period
        self.client_timeout = client_timeout
        self.drop_orphaned_tasks = drop_orphaned_tasks
        self.engine_timeout = engine_timeout
        self.replay = replay or ReplayGuard()
        self.max_client_frame = max_client_frame  # bytes a frame from a client may have (0: any)
        self.max_engine_frame = max_engine_frame  # and from an engine
        self.care = EngineCare(self, interrupt_grace)  # reclaimed engine ids, interrupting tasks
        self.heart = HeartMonitor(hb_misses)
        self.log = log or logging.getLogger(__name__)
        #: dask's scheduler, started in this process by ``Client.become_dask``
        self.dask = dask or DaskScheduler(log=self.log)
        self._later: set[asyncio.Task[None]] = set()  # queries answered when their wait is over
        self.client = sockets["client"]
        self.engine = sockets["engine"]
        self.iopub_in = sockets["iopub_in"]
        self.iopub_out = sockets["iopub_out"]
        self.hb_ping = sockets["hb_ping"]
        self.hb_pong = sockets["hb_pong"]
        # socket -> (what handles one message from it, whether it carries batches)
        self._receivers: dict[zmq.Socket, tuple[Callable[[list[Any]], None], bool]] = {
            self.engine: (self.on_engine, True),
            self.client: (self.on_client, True),
            self.hb_pong: (self.on_pong, False),
            self.iopub_in: (self.on_iopub, False),
            self.iopub_out: (self.on_subscription, False),
        }
        self._poller = zmq.Poller()
        for sock in self._receivers:
            self._poller.register(sock, zmq.POLLIN)
        self._answers = Queries(self)
        self.queries: Handlers[Callable[..., Reply]] = Handlers(Queries.TABLE, "the controller", self.log)
        self.engine_messages: Handlers[Callable[..., None]] = Handlers(self.ENGINE_MESSAGES, "the controller", self.log)
        # unsigned on purpose: a peer with the wrong key cannot verify ours, but it must learn why
        self.auth_error = {who: [DELIM, packet] for who, packet in AUTH_ERRORS.items()}
        self._told: set[bytes] = set()
        self.rejects = {name: Rejects(self.log, f"the controller's {name} port")
                        for name in ("client", "engine", "iopub engine")}
        self.stopped = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hb_handle: asyncio.TimerHandle | None = None
        self._outbox: dict[tuple[zmq.Socket, tuple[bytes, ...]], list[Any]] = {}
        # engine id -> (uuid, request, header, deadline): registrations waiting for the id's holder's death

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.iopub_in.send(b"\x01")  # subscribe to every engine's output
        for sock in self._receivers:
            self._loop.add_reader(fd(sock), self.pump)
        self._loop.call_soon(self.pump)  # ZeroMQ's fd is edge-triggered: look once now
        self._hb_handle = self._loop.call_later(self.hb_period, self.beat)

    def stop(self) -> None:
        if self._loop is not None:
            for sock in self._receivers:
                try:
                    self._loop.remove_reader(fd(sock))
                except (zmq.ZMQError, ValueError):
                    pass
        if self._hb_handle is not None:
            self._hb_handle.cancel()
        for task in self._later:
            task.cancel()
        self.flush()
        self.stopped.set()

    def pump(self) -> None:
        """Drain every socket until none has input. Errors in one message never stop the loop.

        One ``zmq_poll`` call says which sockets have input (cheaper than asking each socket);
        at most BATCH messages are taken from one socket before the others get a turn. What the
        round decided is sent at its end: under a sustained flood of requests the sockets never
        run dry, and engines must not wait for the flood to end to get their tasks.
        """
        poll = self._poller.poll
        receivers = self._receivers
        log = self.log
        while True:
            ready = poll(0)
            if not ready:
                if self._outbox:
                    self.flush()
                    continue  # a failed send may have produced more to do
                return
            for sock, _ in ready:
                handler, batches = receivers[sock]
                drain(sock, handler, BATCH, log, batches=batches)
            if self._outbox:
                self.flush()

    def call_later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the controller's loop in ``delay`` seconds."""
        assert self._loop is not None
        self._loop.call_later(delay, fn, *args)

    # -- sending helpers -------------------------------------------------------------------
    def to_engine(self, frames: list[Any]) -> bool:
        """Send a message of the controller's own to an engine now; False when it is unreachable."""
        return self._send(self.engine, frames)

    def _send(self, sock: zmq.Socket, frames: list[Any]) -> bool:
        """Send one message now (after whatever waits in the outbox, to keep the order)."""
        if self._outbox:
            self.flush()
        try:
            send_frames(sock, frames)
            return True
        except zmq.ZMQError as e:  # EHOSTUNREACH on ROUTER_MANDATORY: the peer is gone
            self.log.warning("could not send to %r: %s", frames[0], e)
            return False

    def post(self, sock: zmq.Socket, idents: tuple[bytes, ...], frames: list[Any]) -> None:
        """Send ``frames`` (delimiter onwards) to ``idents`` by the end of this pump pass.

        Messages without large buffers to the same peer are sent together as one batch: under
        load ZeroMQ's per-message cost (syscalls, wake-ups of its I/O threads) dominates, and a
        burst of tasks or replies goes out as a handful of messages. A lone message still leaves
        at once, since the pass ends as soon as no socket has input.
        """
        key = (sock, idents)
        box = self._outbox.get(key)
        if len(frames) == 2:
            if box is None:
                self._outbox[key] = [frames[1]]
            else:
                box.append(frames[1])
                if len(box) >= OUTBOX_MAX:
                    self.flush()
            return
        if not self._send(sock, [*idents, *frames]) and sock is self.engine:
            self.engine_gone(idents[0], "unreachable")

    def flush(self) -> None:
        """Send every batch waiting in the outbox."""
        while self._outbox:
            outbox, self._outbox = self._outbox, {}
            for (sock, idents), packets in outbox.items():
                try:
                    send_frames(sock, self.session.batch(idents, packets))
                except zmq.ZMQError as e:
                    self.log.warning("could not send %d message(s) to %r: %s", len(packets), idents[0], e)
                    if sock is self.engine:
                        self.engine_gone(idents[0], "unreachable")

    def reply(self, sock: zmq.Socket, ident: bytes, msg_type: str, content: dict[str, Any],
              parent: dict[str, Any], buffers: Sequence[Any] = (), metadata: dict[str, Any] | None = None) -> list[Any]:
        """Send a signed message; return its frames after the delimiter (for the record store)."""
        _, frames = self.session.serialize(msg_type, content, parent, metadata, buffers, idents=[ident])
        self.post(sock, (ident,), frames[1:])
        return frames[2:]

    def publish(self, msg_type: str, content: dict[str, Any]) -> None:
        _, frames = self.session.serialize(msg_type, content, idents=[f"controller.{msg_type}".encode()])
        self._send(self.iopub_out, frames)

    def answer_error(self, rec: TaskRecord, exc: BaseException, status: str = "error",
                     engine_id: int | None = None) -> None:
        """Close a task on the engine's behalf with an error reply to its client."""
        content = error_content(exc)
        content["status"] = status
        eid = rec.engine_id if engine_id is None else engine_id
        metadata = {"engine_id": eid, "status": status, "completed": time.time()}
        frames = self.reply(self.client, rec.client, messages.reply_type(rec.msg_type), content,
                            rec.header, metadata=metadata)
        self.hub.fail_part(rec, content, eid)
        if rec.broadcast:  # other engines of the broadcast have yet to answer
            return
        self.carry_out(self.hub.fail(rec, frames, status, type(exc).__name__))

    def carry_out(self, actions: list[Action]) -> None:
        """Do what the hub decided: send tasks to engines, answer failed ones."""
        for action in actions:
            rec = action.record
            if isinstance(action, Assign):
                assert rec.request is not None
                self.post(self.engine, (action.engine.uuid, rec.client), rec.request)
            else:
                self.answer_error(rec, action.error, action.status, action.engine_id)

    def refuse(self, sock: zmq.Socket, who: str, frames: list[Any], err: ProtocolError) -> None:
        """A message that failed :meth:`Session.peek`: count and log it (bounded), tell a peer with
        the wrong key why (once), answer a signed but malformed request from a client."""
        self.rejects[who].refuse(type(err).__name__, f"{err} ({len(frames)} frames)")
        peer = frames[0] if type(frames[0]) is bytes else frames[0].bytes
        if isinstance(err, BadSignature) and who in self.auth_error:
            if peer not in self._told:
                if len(self._told) >= TOLD_MAX:
                    self._told.clear()
                self._told.add(peer)
                self._send(sock, [peer, *self.auth_error[who]])
        elif isinstance(err, MalformedMessage) and who == "client":
            self.reply_malformed(peer, err.header or {}, err)

    def reply_malformed(self, client: bytes, header: dict[str, Any], err: Exception) -> None:
        """Answer a signed request the controller cannot serve with an error reply."""
        msg_type = header.get("msg_type")
        ok = type(msg_type) is str and msg_type.endswith("_request")
        reply_type = messages.reply_type(msg_type) if ok else "error_reply"  # type: ignore[arg-type]
        self.reply(self.client, client, reply_type, error_content(err), header, metadata={"status": "error"})

    # -- client channel --------------------------------------------------------------------
    def on_client(self, frames: list[Any]) -> None:
        try:
            idents, i, packet = self.session.peek(frames)
        except ProtocolError as e:
            self.refuse(self.client, "client", frames, e)
            return
        client = idents[0]
        header = packet.header
        msg_type = header["msg_type"]
        why = self.replay.check(header)
        if why is not None:
            self.rejects["client"].refuse("replayed or stale", f"{msg_type} {header['msg_id']}: {why}")
            self.reply_malformed(client, header, ProtocolError(f"the controller refused {msg_type}: {why}"))
            return
        if msg_type in messages.ENGINE_REQUESTS:
            self.route_request(client, packet, frames, i)
            return
        try:
            _, msg = self.session.unpack(frames, verify=False)
        except ProtocolError as e:
            self.log.warning("%s from %r does not unpack: %s", msg_type, client, e)
            content, buffers = error_content(e), list[Any]()
        else:
            later = Queries.LATER.get(msg_type)
            if later is not None:
                task = asyncio.ensure_future(self._answer_later(later, client, msg_type, header, msg["content"]))
                self._later.add(task)
                task.add_done_callback(self._later.discard)
                return
            content, buffers = self.queries.answer(msg_type, self._answers, client, msg["content"])
        reply_type = messages.reply_type(msg_type) if msg_type.endswith("_request") else "error_reply"
        self.reply(self.client, client, reply_type, content, header, buffers)

    async def _answer_later(self, handler: Callable[..., Any], client: bytes, msg_type: str,
                            header: dict[str, Any], request: dict[str, Any]) -> None:
        """Answer a query of :data:`Queries.LATER` once its handler is done (errors too)."""
        try:
            content, buffers = await handler(self._answers, client, request)
            content.setdefault("status", "ok")
        except Exception as e:  # the reply's boundary: CancelledError still propagates
            self.log.warning("%s failed: %s: %s", msg_type, type(e).__name__, e)
            content, buffers = error_content(e), []
        self.reply(self.client, client, messages.reply_type(msg_type), content, header, buffers)
        self.flush()  # outside a pump pass: nothing else will

    def route_request(self, client: bytes, packet: Packet, frames: list[Any], i: int) -> None:
        hub = self.hub
        header = packet.header
        if hub.store.get(header["msg_id"]) is not None:
            self.log.warning("refused a request reusing msg_id %s (a replay, or a client bug)", header["msg_id"])
            content = error_content(ProtocolError(f"msg_id {header['msg_id']!r} was already used"))
            self.reply(self.client, client, messages.reply_type(header["msg_type"]), content, header,
                       metadata={"status": "error"})
            return
        try:
            metadata = packet.metadata  # the task's group and function (for live views), load-balancing flags
        except MalformedMessage as e:  # signed, so it is answered
            self.carry_out([Fail(hub.new_record(header, client, None, {}), e)])
            return
        rec = hub.new_record(header, client, compact(frames, i), metadata)
        target = header.get("target")
        if target is not None:
            actions = hub.submit_direct(rec, target)
            if header.get("data"):  # its large buffers went straight to the engine: nothing to resubmit
                self.carry_out(actions)
                rec.request = None
                return
        elif header.get("data"):
            actions = [Fail(rec, ProtocolError("buffers sent over an engine's data channel need a target engine"))]
        elif header["msg_type"] in messages.TASK_REQUESTS:
            actions = hub.submit_balanced(rec, metadata)
            if rec.timeout and not rec.completed:
                assert self._loop is not None
                self._loop.call_later(rec.timeout, self.expire, rec.msg_id)
        else:
            actions = [Fail(rec, ProtocolError(f"{header['msg_type']} needs a target engine"))]
        self.carry_out(actions)

    def expire(self, msg_id: str) -> None:
        rec = self.hub.store.get(msg_id)
        running = self.hub.running_on(rec) if rec is not None else None
        actions = self.hub.expire(msg_id)
        for action in actions:
            eid = action.record.engine_id
            info = self.hub.engines.get(eid) if eid is not None else None
            if info is not None:  # it may still be queued there: stop it from starting
                _, frames = self.session.serialize("abort_request", {"msg_ids": [msg_id]}, idents=[info.uuid])
                self._send(self.engine, frames)
        if running is not None and actions:  # and it runs there: interrupt it
            self.care.interrupt(msg_id, running.uuid, "timed out")
        self.carry_out(actions)
        assert self._loop is not None
        self._loop.call_soon(self.pump)  # a send can swallow a socket's edge-triggered wake-up

    # -- engine channel --------------------------------------------------------------------
    def on_engine(self, frames: list[Any]) -> None:
        try:
            idents, i, packet = self.session.peek(frames)
        except ProtocolError as e:
            self.refuse(self.engine, "engine", frames, e)
            return
        euuid = idents[0]
        if len(idents) >= 2:
            client = idents[1]
            if packet.header["msg_type"].endswith("_reply"):
                msg_id = packet.parent.get("msg_id", "")
                rec, forward, actions = self.hub.finish(euuid, msg_id, compact(frames, i + 1), packet.content)
                if rec is not None and packet.header.get("data"):  # the result went straight to its client
                    rec.reply = None
                    rec.result_dropped = True
                if forward:
                    self.post(self.client, (client,), frames[i:])
                if actions:
                    self.carry_out(actions)
                return
            self.post(self.client, (client,), frames[i:])
            return
        try:
            _, msg = self.session.unpack(frames, verify=False)
        except ProtocolError as e:
            self.rejects["engine"].refuse(type(e).__name__, str(e))
            return
        why = self.replay.check(msg["header"])  # a replayed registration would let its sender take tasks
        if why is not None:
            self.rejects["engine"].refuse("replayed or stale", f"{msg['msg_type']} from {euuid!r}: {why}")
            if msg["msg_type"] == "registration_request":  # an engine whose clock is off must learn why
                err = ProtocolError(f"the controller refused registration_request: {why}")
                self.reply(self.engine, euuid, "registration_reply", error_content(err), msg["header"])
            return
        handler = self.engine_messages.get(msg["msg_type"])
        if handler is None:
            self.rejects["engine"].refuse("unexpected msg_type", f"{msg['msg_type']} from engine {euuid!r}")
        else:
            handler(self, euuid, msg["content"], msg["header"])

    def register(self, euuid: bytes, content: messages.RegistrationRequest, header: dict[str, Any]) -> None:
        self.care.register(euuid, content, header)

    def unregister(self, euuid: bytes, content: messages.UnregistrationRequest, header: dict[str, Any]) -> None:
        self.engine_gone(euuid, "it unregistered")

    def engine_gone(self, euuid: bytes, reason: str) -> None:
        gone = self.hub.unregister_engine(euuid, died=reason != "it unregistered")
        if gone is None:
            return
        info, actions = gone
        self.heart.remove(euuid)
        level = logging.INFO if reason == "it unregistered" and not actions else logging.ERROR
        self.log.log(level, "engine %i gone (%s); %d unfinished task(s) retried or failed", info.id, reason, len(actions))
        for action in actions:
            if isinstance(action, Fail) and type(action.error) is EngineError:
                action.error = EngineError(f"engine {info.id} went away ({reason}) before finishing the task")
                action.engine_id = info.id
        self.carry_out(actions)
        self.publish("unregistration_notification", {"id": info.id, "uuid": euuid.decode(errors="replace")})
        self.care.release(info.id)  # its replacement may be waiting for the id

    # -- heartbeat and iopub ---------------------------------------------------------------
    def beat(self) -> None:
        assert self._loop is not None
        self._hb_handle = self._loop.call_later(self.hb_period, self.beat)  # first: nothing below stops it
        for ident in self.heart.dead():
            try:
                self.engine_gone(ident, f"missed {self.heart.misses} heartbeats")
                # it may be alive but stalled (stopped, partitioned): tell it to go, not to come back
                _, frames = self.session.serialize("shutdown_request", {}, idents=[ident])
                self._send(self.engine, frames)
            except Exception:
                self.log.exception("error while removing engine %r", ident)
        self._send(self.hb_ping, [self.heart.next_ping()])
        self.care.refuse_held(time.monotonic())
        try:
            self.check_clients()
        except Exception:
            self.log.exception("error while checking on clients and queued tasks")
        self._loop.call_soon(self.pump)  # a send can swallow a socket's edge-triggered wake-up

    def check_clients(self) -> None:
        """Once a heartbeat: drop the tasks of clients gone silent, fail tasks starved of engines."""
        if self.client_timeout > 0:
            for client in self.hub.silent_clients(time.monotonic() - self.client_timeout):
                self.client_gone(client, f"silent for {self.client_timeout:g} s")
        starved = self.hub.starved(time.time(), self.engine_timeout)
        if starved:
            self.log.error("no engine registered for %g s: failing %d queued load-balanced task(s)",
                           self.engine_timeout, len(starved))
            self.carry_out(starved)

    def client_gone(self, client: bytes, reason: str) -> None:
        actions = self.hub.client_gone(client, self.drop_orphaned_tasks)
        # work lost to a client that vanished is an ERROR; one that closed chose it; an idle one has none
        level = logging.DEBUG if not actions else logging.WARNING if reason == "it closed" else logging.ERROR
        self.log.log(level, "client %r gone (%s); %d of its queued task(s) dropped", client, reason, len(actions))
        self.carry_out(actions)

    def on_pong(self, frames: list[Any]) -> None:
        if len(frames) == 2:
            self.heart.pong(frames[0].bytes, frames[1].bytes)

    def on_iopub(self, frames: list[Any]) -> None:
        """Forward an engine's output to the clients, if it verifies (per output message, not per task)."""
        try:
            self.session.peek(frames)
        except ProtocolError as e:
            self.rejects["iopub engine"].refuse(type(e).__name__, f"{e} ({len(frames)} frames)")
            return
        self._send(self.iopub_out, frames)

    def on_subscription(self, frames: list[Any]) -> None:
        if frames and frames[0].bytes[:1] == b"\x01":
            # a client subscribed: tell it (and anyone listening) that output now reaches it
            self.publish("iopub_welcome", {})

    #: what the controller does with each message an engine sends it (not a reply to a client)
    ENGINE_MESSAGES: dict[str, Callable[..., None]] = {
        "registration_request": register,
        "unregistration_request": unregister,
    }

"""The client's watch on the controller: is its loop still answering?

A controller that was killed closes its connection, and the client's socket monitor fails what
waits at once (see :mod:`._io`). A controller that hangs (stopped with SIGSTOP, stuck in a long
pause, on a host that vanished from the network) keeps the connection open and answers nothing,
so without this every ``get()`` waits out its own timeout, or forever.

While a result or a query is outstanding, the client sends a ``ping_request`` every
``controller_hb_period`` seconds. The controller's loop answers it (a heartbeat device in a
separate thread would answer while the loop is stuck, proving nothing). Pings go over a socket
of their own, a second connection to the controller's client port: on the request socket a ping
would wait behind whatever was sent before it, and a 1 GB push over a slow link would look like
a hung controller. The ping names the client's request identity (``client``). When the oldest
unanswered ping is more than ``controller_hb_period * controller_hb_misses`` seconds old, every
outstanding request fails with :class:`~ipcluster.error.ControllerError`, and new ones are
refused with the same message. The client keeps pinging; when the controller answers again, new
requests go through. What failed stays failed: those tasks may still run once the controller
resumes, but their replies are dropped by the client (the controller still records them, so
``rc.get_result(msg_id)`` can fetch a small result later).

The pings also tell the controller which clients are alive: a client that stops pinging while it
has tasks queued (killed, or its host gone) loses them after ``ControllerApp.client_timeout``,
and a client that closes says so in a last ping (``closing``), so its queued tasks go at once.

The same timer says so in a log line (WARNING) when tasks wait while no engine is registered: a
load-balanced ``map`` warns at once (``NoEnginesWarning``), but checking each ``apply`` would cost
every task.

The timer runs once per period on the I/O thread; nothing here runs per task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import zmq
from traitlets import Float, HasTraits, Integer, TraitError, validate

from ..error import ControllerError, ProtocolError
from ..protocol.session import Session
from ..protocol.wire import NOBLOCK, fd, recv_frames, send_frames

log = logging.getLogger(__name__)


class LivenessOptions(HasTraits):
    """How a Client watches its controller, configured as ``Client`` (``c.Client.<name>``) or
    given as keyword arguments (``Client(controller_hb_period=0.5)``)."""

    controller_hb_period = Float(
        1.0,
        config=True,
        help="""Seconds between the client's pings to the controller, sent only while a result or
        a query is outstanding. The controller's own loop answers them, so they tell a hung
        controller (stopped, stalled, its host unreachable) from a busy one. 0 turns the pings
        off: a hung controller is then noticed only by each wait's own timeout. The controller
        also takes a client that stops pinging while its tasks are queued for gone (see
        ControllerApp.client_timeout).""",
    )
    controller_hb_misses = Integer(
        5,
        config=True,
        help="""Pings in a row the controller may leave unanswered before the client fails every
        outstanding result with ControllerError ("it is hung or unreachable"). A hung controller
        is noticed after about controller_hb_period * (controller_hb_misses + 1) seconds. A
        controller that merely has a long backlog from this client answers late, not never: raise
        this if yours queues many seconds of requests.""",
    )

    @validate("controller_hb_period", "controller_hb_misses")
    def _not_negative(self, proposal: Any) -> Any:
        if proposal["value"] < 0:
            raise TraitError(f"{proposal['trait'].name} must not be negative, not {proposal['value']}")
        return proposal["value"]


class Liveness:
    """Which pings the controller left unanswered, and for how long (state only, no sockets)."""

    def __init__(self, period: float, misses: int) -> None:
        self.period = period
        self.misses = misses
        self.unanswered_since: float | None = None  # when the oldest unanswered ping was sent
        self.unanswered = 0  # pings sent since then

    def sent(self, now: float) -> None:
        if self.unanswered_since is None:
            self.unanswered_since = now
        self.unanswered += 1

    def answered(self) -> None:
        self.unanswered_since = None
        self.unanswered = 0

    def idle(self) -> None:
        """Nothing waits on the controller: an unanswered ping no longer matters."""
        self.answered()

    def silence(self, now: float) -> str | None:
        """How long the controller has been silent, when that is past the bound (else None)."""
        since = self.unanswered_since
        if since is None or self.unanswered < self.misses or now - since <= self.period * self.misses:
            return None
        return f"has not answered for {now - since:.1f} s ({self.unanswered} heartbeats)"


class Pinger:
    """Runs :class:`Liveness` on the client's I/O loop, with a socket of its own: pings, judges,
    fails, recovers."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        session: Session,
        where: str,
        period: float,
        misses: int,
        pending: Mapping[str, Any],
        queries: Mapping[str, Any],
        engines: Mapping[int, Any],
        *,
        up: Callable[[], bool],
        send: Callable[[list[Any]], None],
        fail: Callable[[Exception], None],
        set_lost: Callable[[str | None], None],
    ) -> None:
        """``pending``, ``queries``: what waits on the controller (tasks, queries); ``engines``:
        the registered engines, as the client knows them; ``up()``: whether the client is connected
        and has not lost the connection (before the first connection no verdict is given: no
        controller at all is the connection's own timeout); ``send``: send on the request socket;
        ``fail``: fail what waits; ``set_lost``: refuse (a reason) or allow (None) new requests."""
        self.loop = loop
        self.session = session
        self.where = where
        self.state = Liveness(period, max(misses, 1))
        self.hung: str | None = None  # why requests are refused, while the controller is silent
        self._pending, self._queries, self._engines, self._up = pending, queries, engines, up
        self._send, self._fail, self._set_lost = send, fail, set_lost
        self._said_starved = False  # whether the lack of engines was logged (once until one registers)
        self._handle: asyncio.TimerHandle | None = None
        self._sock: zmq.Socket[Any] | None = None

    def start(self, context: zmq.Context[Any], url: str) -> None:
        """On the I/O loop: connect the ping socket and start the timer (unless the period is 0)."""
        if self.state.period <= 0:
            return
        sock = self._sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(url)
        self.loop.add_reader(fd(sock), self._drain)
        self._handle = self.loop.call_later(self.state.period, self.tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                self.loop.remove_reader(fd(sock))
            except (zmq.ZMQError, ValueError):
                pass
            sock.close(linger=0)

    def _drain(self) -> None:
        """Take every answer waiting on the ping socket (its descriptor is edge-triggered)."""
        while self._sock is not None:
            try:
                frames = recv_frames(self._sock, NOBLOCK)
            except zmq.ZMQError:  # nothing left (Again), or closed
                return
            try:
                _, msg = self.session.unpack(frames)
            except ProtocolError as e:
                log.debug("dropped an answer to a ping that did not verify: %s", e)
                continue
            if msg["msg_type"] == "ping_reply":
                self.on_pong(msg)

    def tick(self) -> None:
        self._handle = self.loop.call_later(self.state.period, self.tick)  # first: nothing below stops it
        busy = bool(self._pending or self._queries) and self._up()
        if not busy and self.hung is None:
            self.state.idle()
            return
        self._drain()  # an answer may wait unread (this thread was starved of the GIL)
        self._check_engines()
        now = time.monotonic()
        silent = self.state.silence(now)
        if silent is not None and self.hung is None:
            self.hung = f"the controller at {self.where} {silent}: it is hung or unreachable"
            log.error("%s; failing the outstanding requests", self.hung)
            self._set_lost(self.hung)  # refused from now on, as when the connection is lost
            self._fail(ControllerError(self.hung))
        assert self._sock is not None
        try:
            send_frames(self._sock, self.session.serialize("ping_request", {"client": self.session.session_id})[1],
                        NOBLOCK)
        except zmq.ZMQError as e:  # not connected yet, or closed
            log.debug("could not ping the controller: %s", e)
            return
        self.state.sent(now)

    def _check_engines(self) -> None:
        if not self._pending or self._engines:
            self._said_starved = False
        elif not self._said_starved:
            self._said_starved = True
            log.warning("no engines are registered with the controller at %s: load-balanced tasks wait until one "
                        "registers (the controller fails them after ControllerApp.engine_timeout)", self.where)

    def on_pong(self, msg: Any) -> None:
        self.state.answered()
        if self.hung is not None:
            log.warning("the controller at %s answers again: new requests go through (the ones that "
                        "failed while it was silent stay failed)", self.where)
            self.hung = None
            self._set_lost(None)

    def close(self, bye: bool) -> None:
        """Stop pinging; with ``bye``, send the last ping of a closing client (``closing``), on which
        the controller drops the client's queued tasks at once."""
        self.stop()
        if bye and self.hung is None:
            self._send(self.session.serialize("ping_request", {"closing": True})[1])

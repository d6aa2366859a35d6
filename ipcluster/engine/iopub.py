"""The engine's IOPub publisher: every output message an engine sends goes through here.

One PUB socket is written from two threads: the main thread (user code printing or displaying,
the kernel ending a request) and the stream flusher thread (:mod:`.streams`), which sends text
that would otherwise wait for a newline or the end of a long request. ZeroMQ sockets are not
thread-safe, so :class:`IOPub` holds a lock, and only that lock's holder touches the socket.

IOPub also keeps the two facts a reply needs about its output:

- the *parent*: every message carries the current request's header as ``parent_header`` (``{}``
  between requests), so clients route output to the right cell or AsyncResult;
- the *count*: how many messages were published for the current request. The reply carries it as
  ``iopub_count``; the client knows a task's output is complete once it has seen that many.
  Text is flushed before the count is read, so no text published for a request is left out.

The socket is an XPUB (a PUB that also hears its subscribers' subscriptions), because a PUB
silently drops what it sends before a subscriber's subscription has reached it, and a fresh
engine's first output would be lost, leaving its client waiting for ``iopub_count`` messages
that never come. Until the first subscription arrives, messages are held (and counted), then
sent in order; if none arrives within ``hold_timeout`` seconds, they are sent anyway, as a PUB
would (and dropped by ZeroMQ if truly nobody listens).

Stream text is batched: it goes out at a newline once 50 ms have passed since the last send, when
64 KiB are pending, before any other message (so prints and displays stay in order), at the end
of the request, and from the flusher thread within 100 ms. A print in a tight loop thus costs an
append, not a message, while a slow loop still streams live.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import zmq

from ..protocol.session import Session
from .interrupts import Interrupts

#: send pending text at a newline once this long has passed since the last send (seconds)
NEWLINE_FLUSH_INTERVAL = 0.05
#: send pending text as soon as this much is buffered (characters)
MAX_PENDING = 64 * 1024


class IOPub:
    """Publishes ``engine.<id>.<msg_type>`` messages, batching stream text.

    Parameters
    ----------
    socket:
        A connected (synchronous) XPUB socket; IOPub owns it from now on.
    interrupts:
        Main-thread sends are wrapped in a deferred section, so that a SIGINT cannot cut a
        multipart message in half.
    hold_timeout:
        Seconds to hold messages while waiting for the first subscription.
    """

    def __init__(
        self,
        socket: zmq.Socket[Any],
        session: Session,
        engine_id: int,
        interrupts: Interrupts,
        log: logging.Logger,
        hold_timeout: float = 2.0,
    ) -> None:
        self._socket = socket
        self._session = session
        self._interrupts = interrupts
        self._log = log
        self._lock = threading.Lock()
        self._main_thread = threading.main_thread().ident
        self._prefix = f"engine.{engine_id}.".encode()
        self._topics: dict[str, bytes] = {}
        self._metadata = {"engine_id": engine_id}
        self._parent: dict[str, Any] = {}
        self.count = 0
        # pending stream text: one stream at a time, so stdout/stderr interleaving is kept
        self._pending: list[str] = []
        self._pending_name = "stdout"
        self._pending_size = 0
        self._last_flush = 0.0
        #: set when text is pending; the flusher thread waits on it
        self.has_pending = threading.Event()
        self.closed = False
        # messages waiting for the first subscription; None once output flows
        self._held: list[list[Any]] | None = []
        self._hold_deadline = time.monotonic() + hold_timeout

    # -- requests ----------------------------------------------------------------------------
    def begin(self, parent: dict[str, Any]) -> None:
        """Start a request: later messages carry ``parent`` and are counted for it."""
        with self._lock:
            if self._pending:
                self._flush_locked()  # text from before the request keeps its own parent
            self._parent = parent
            self.count = 0

    def end(self) -> int:
        """End the request: send its pending text; return how many messages it produced."""
        with self._lock:
            if self._pending:
                self._flush_locked()
            count = self.count
            self._parent = {}
            self.count = 0
        return count

    # -- publishing --------------------------------------------------------------------------
    def publish(self, msg_type: str, content: dict[str, Any]) -> None:
        """Send one message (after any pending text, so output keeps its order)."""
        with self._lock:
            if self._pending:
                self._flush_locked()
            self._send_locked(msg_type, content)

    def write(self, name: str, text: str) -> None:
        """Buffer stream text (``name`` is ``stdout`` or ``stderr``)."""
        with self._lock:
            if self._pending and name != self._pending_name:
                self._flush_locked()
            self._pending_name = name
            self._pending.append(text)
            self._pending_size += len(text)
            if self._pending_size >= MAX_PENDING or (
                "\n" in text and time.monotonic() - self._last_flush >= NEWLINE_FLUSH_INTERVAL
            ):
                self._flush_locked()
            elif not self.has_pending.is_set():
                self.has_pending.set()

    def flush(self) -> None:
        """Send pending text now (and held messages, once a subscriber is there)."""
        with self._lock:
            if self._pending:
                self._flush_locked()
            elif self._held:
                self._guarded_send(None)

    def _flush_locked(self) -> None:
        text = "".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        self.has_pending.clear()
        self._last_flush = time.monotonic()
        self._send_locked("stream", {"name": self._pending_name, "text": text})

    def _send_locked(self, msg_type: str, content: dict[str, Any]) -> None:
        if self.closed:
            return
        topic = self._topics.get(msg_type)
        if topic is None:
            topic = self._topics[msg_type] = self._prefix + msg_type.encode()
        _, frames = self._session.serialize(msg_type, content, parent=self._parent, metadata=self._metadata)
        frames.insert(0, topic)
        self.count += 1
        self._guarded_send(frames)

    def _guarded_send(self, frames: list[Any] | None) -> None:
        """Send (or hold) ``frames``; on the main thread, no interrupt may cut a send short."""
        if threading.get_ident() != self._main_thread:
            self._send_or_hold(frames)
            return
        intr = self._interrupts
        intr.deferred += 1
        try:
            self._send_or_hold(frames)
        finally:
            intr.deferred -= 1
        if intr.pending is not None:
            intr.raise_pending()

    def _send_or_hold(self, frames: list[Any] | None) -> None:
        send = self._socket.send_multipart
        held = self._held
        if held is not None:
            if frames is not None:
                held.append(frames)
            if self._subscribed():
                self._log.debug("IOPub subscriber present; sending %d held message(s)", len(held))
            elif time.monotonic() < self._hold_deadline and not self.closed:
                self.has_pending.set()  # the flusher thread retries
                return
            else:
                self._log.warning("no IOPub subscription arrived; sending %d held message(s) anyway", len(held))
            self._held = None
            for f in held:
                send(f)
            return
        if frames is not None:
            send(frames)

    def _subscribed(self) -> bool:
        """Has a subscription reached our XPUB? (reads them without blocking)"""
        recv = self._socket.recv
        try:
            while True:
                if recv(zmq.NOBLOCK)[:1] == b"\x01":
                    return True
        except zmq.Again:
            return False

    def close(self, linger: float) -> None:
        """Send what is pending and close the socket (waiting up to ``linger`` s for delivery)."""
        with self._lock:
            if self.closed:
                return
            try:
                if self._pending:
                    self._flush_locked()
                if self._held:
                    self._hold_deadline = 0.0
                    self._send_or_hold(None)
            except Exception:  # closing must not fail on output
                self._log.warning("could not send final output", exc_info=True)
            self.closed = True
            self.has_pending.set()  # wake the flusher so it sees `closed`
            self._socket.close(linger=int(linger * 1000))


def safe_str(value: object) -> str:
    """``str(value)`` that never raises: an exception's text must not break its own report."""
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"

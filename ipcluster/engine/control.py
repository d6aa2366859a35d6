"""The engine's control thread: signals from the controller, and noticing the controller is gone.

Both jobs must work while the main thread runs user code, which may take hours and reads no
socket meanwhile, so a thread does them (blocked in ``zmq.Poller.poll``, GIL released):

- **signal_request.** A client interrupts remote code through the controller, which sends
  ``signal_request {"signum"}`` to the engine's *control* socket: a second DEALER on the engine
  port with identity ``<uuid>.ctl``. A verified request makes the thread send that signal to the
  main thread, where :mod:`.interrupts` turns SIGINT into a ``KeyboardInterrupt`` in the running
  code. There is no reply: the controller answers the client itself.
- **Controller loss.** The thread reads the socket-monitor events of the engine's main DEALER.
  When the connection has been down for ``controller_timeout`` seconds without coming back, it
  calls ``on_lost``, which stops the engine (interrupting user code if need be).

The thread ends when the side context it polls is terminated.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from ..protocol.messages import CONTROL_SUFFIX
from ..protocol.session import Session
from ..protocol.rejects import limited



class Control(threading.Thread):
    """Serves ``<uuid>.ctl`` and watches the controller connection.

    Parameters
    ----------
    context:
        Context of the control socket (the engine's side context: terminating it ends the thread).
    monitor:
        A PAIR socket receiving the main DEALER's monitor events; the thread owns it from now on
        and closes it when it ends.
    on_lost:
        Called (in this thread) with a reason when the controller stayed unreachable for
        ``controller_timeout`` seconds.
    """

    def __init__(
        self,
        context: zmq.Context[Any],
        url: str,
        identity: bytes,
        session: Session,
        log: logging.Logger,
        *,
        monitor: zmq.Socket[Any],
        controller_timeout: float,
        on_lost: Callable[[str], None],
    ) -> None:
        super().__init__(name="ipengine-control", daemon=True)
        self.url = url
        self.log = log
        self._context = context
        self._identity = identity + CONTROL_SUFFIX
        self._session = session
        self._monitor = monitor
        self._controller_timeout = controller_timeout
        self._on_lost = on_lost
        self._main_thread = threading.main_thread().ident
        self._lost_since: float | None = None

    def run(self) -> None:
        monitor = self._monitor
        try:
            sock = self._context.socket(zmq.DEALER)  # made here: a socket belongs to one thread
        except zmq.ContextTerminated:
            monitor.close(linger=0)
            return
        try:
            sock.setsockopt(zmq.IDENTITY, self._identity)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self.url)
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            poller.register(monitor, zmq.POLLIN)
            while True:
                ready = dict(poller.poll(self._poll_timeout_ms()))
                if sock in ready:
                    self.handle(sock.recv_multipart(copy=False))
                if monitor in ready:
                    self.on_monitor_event(parse_monitor_message(monitor.recv_multipart()))
                self._check_lost()
        except zmq.ContextTerminated:
            pass
        finally:
            sock.close(linger=0)
            monitor.close(linger=0)

    # -- controller loss ---------------------------------------------------------------------
    def _poll_timeout_ms(self) -> int | None:
        if self._lost_since is None:
            return None
        left = self._lost_since + self._controller_timeout - time.monotonic()
        return max(0, int(left * 1000) + 1)

    def on_monitor_event(self, event: Mapping[str, Any]) -> None:
        if event["event"] == zmq.EVENT_DISCONNECTED:
            if self._lost_since is None:
                self._lost_since = time.monotonic()
                self.log.warning(
                    "lost the connection to the controller at %s; waiting %g s for it to return",
                    self.url,
                    self._controller_timeout,
                )
        elif event["event"] == zmq.EVENT_CONNECTED and self._lost_since is not None:
            self._lost_since = None
            self.log.info("reconnected to the controller at %s", self.url)

    def _check_lost(self) -> None:
        since = self._lost_since
        if since is not None and time.monotonic() - since >= self._controller_timeout:
            self._lost_since = None
            self._on_lost(f"the controller at {self.url} has been unreachable for {self._controller_timeout:g} s")

    # -- signals -------------------------------------------------------------------------------
    def handle(self, frames: list[Any]) -> None:
        try:
            _, msg = self._session.unpack(frames)
        except Exception as e:
            limited(self.log, "the engine's control thread").refuse(type(e).__name__, str(e))
            return
        if msg["msg_type"] != "signal_request":
            self.log.warning("control: ignored %s", msg["msg_type"])
            return
        try:
            signum = signal.Signals(int(msg["content"].get("signum", signal.SIGINT)))
        except (TypeError, ValueError) as e:
            self.log.warning("control: bad signal number in %r: %s", msg["content"], e)
            return
        self.log.info("control: the controller sends %s", signum.name)
        self.signal_main(signum)

    def signal_main(self, signum: int) -> None:
        """Deliver ``signum`` to the main thread (where Python runs signal handlers)."""
        assert self._main_thread is not None
        signal.pthread_kill(self._main_thread, signum)

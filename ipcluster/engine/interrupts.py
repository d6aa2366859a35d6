"""SIGINT and SIGTERM on an engine: interrupt user code, never the engine's own bookkeeping.

The engine runs user code synchronously on the main thread, inside its asyncio loop. Python runs
signal handlers on the main thread between bytecodes, so a handler that raises lands in whatever
code is running. That is what we want in user code (``time.sleep(30)`` becomes a
``KeyboardInterrupt`` and an error reply) and exactly what we must prevent everywhere else: an
exception raised between two frames of a ``send_multipart`` leaves half a message on the socket,
and the peer then reads the next message glued onto it.

So the handler raises only while :attr:`Interrupts.armed` (set around each call into user code)
and outside a *deferred* section (a send from the main thread); an interrupt that hits a deferred
section is remembered and raised as soon as the section ends, still inside user code. While the
engine is idle, SIGINT is logged and ignored. SIGTERM asks the engine to stop; if user code is
running it is interrupted with :class:`Terminated` first, so the engine answers that request and
then exits.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from types import FrameType


class Terminated(BaseException):
    """Raised in user code when the engine receives SIGTERM while running it.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that ``except Exception`` in user code
    does not swallow the request to stop.
    """


class Interrupts:
    """The engine's SIGINT/SIGTERM handlers and the flags they consult.

    Attributes are plain fields, not properties: :attr:`armed` is set and cleared around every
    call into user code, and ``deferred`` around every main-thread send, so they must cost
    nothing.
    """

    __slots__ = ("armed", "deferred", "pending", "cancel", "_log", "_on_terminate", "_previous")

    def __init__(self, log: logging.Logger, on_terminate: Callable[[], None]) -> None:
        self.armed = False  # user code is running on the main thread
        self.deferred = 0  # depth of main-thread sections that must not be interrupted
        self.pending: type[BaseException] | None = None  # interrupt that hit a deferred section
        #: set while a cell with top-level ``await`` runs on the loop: SIGINT cancels it instead
        self.cancel: Callable[[], object] | None = None
        self._log = log
        self._on_terminate = on_terminate
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        """Install the handlers (main thread only, as Python requires)."""
        for sig, handler in ((signal.SIGINT, self._sigint), (signal.SIGTERM, self._sigterm)):
            self._previous[sig] = signal.signal(sig, handler)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _raise(self, exc: type[BaseException]) -> None:
        if self.deferred:
            self.pending = exc
            return
        self.pending = None
        raise exc()

    def _sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.armed:
            self._raise(KeyboardInterrupt)
        elif self.cancel is not None:
            self.cancel()
        else:
            self._log.info("SIGINT while idle: ignored (it interrupts running code only)")

    def _sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._log.info("SIGTERM: shutting down")
        self._on_terminate()
        if self.armed:
            self._raise(Terminated)

    def raise_pending(self) -> None:
        """Raise an interrupt remembered during a deferred section, if user code still runs."""
        exc = self.pending
        if exc is not None and self.armed and not self.deferred:
            self.pending = None
            raise exc()

    def disarm(self) -> None:
        """Leave user code: forget an interrupt that came too late to stop it."""
        self.armed = False
        self.pending = None

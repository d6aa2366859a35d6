"""``sys.stdout`` and ``sys.stderr`` of an engine: text goes to IOPub as ``stream`` messages.

:class:`OutStream` is the file object user code writes to; the batching rules live in
:class:`~.iopub.IOPub`. :class:`Flusher` is a daemon thread that sends text left pending by the
batching rules within :data:`FLUSH_INTERVAL`, so that ``print`` in a long loop streams live
instead of arriving when the request ends. It sleeps on an event while nothing is pending, so an
idle engine has no periodic wake-ups.
"""

from __future__ import annotations

import logging
import io
import sys
import threading
from typing import Any, TextIO

from .iopub import IOPub

log = logging.getLogger(__name__)

#: pending stream text is sent at most this long after it was written (seconds)
FLUSH_INTERVAL = 0.1


class OutStream(io.TextIOBase):
    """A text stream whose writes become IOPub ``stream`` messages."""

    encoding = "utf-8"  # type: ignore[assignment]
    errors = "strict"  # type: ignore[assignment]

    def __init__(self, iopub: IOPub, name: str, original: TextIO | None) -> None:
        super().__init__()
        self._iopub = iopub
        self._name = name
        self._original = original

    @property
    def name(self) -> str:
        return f"<engine {self._name}>"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        """The original stream's descriptor: libraries that write to it directly still work
        (their output is not captured, as in Jupyter)."""
        if self._original is None:
            raise io.UnsupportedOperation("fileno")
        return self._original.fileno()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            self._iopub.write(self._name, text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._iopub.flush()


class Flusher(threading.Thread):
    """Sends pending stream text at most :data:`FLUSH_INTERVAL` after it was written."""

    def __init__(self, iopub: IOPub, interval: float = FLUSH_INTERVAL) -> None:
        super().__init__(name="ipengine-stream-flusher", daemon=True)
        self._iopub = iopub
        self._interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        iopub = self._iopub
        while True:
            iopub.has_pending.wait()
            if self._stop_event.wait(self._interval) or iopub.closed:
                return
            try:
                iopub.flush()
            except Exception:  # a failed send must not end the thread: later output still matters
                log.warning("could not send stream output", exc_info=True)

    def stop(self) -> None:
        self._stop_event.set()
        self._iopub.has_pending.set()
        self.join(1.0)


def capture(iopub: IOPub) -> tuple[TextIO, TextIO]:
    """Point ``sys.stdout``/``sys.stderr`` at IOPub; return the previous streams."""
    previous = (sys.stdout, sys.stderr)
    sys.stdout = OutStream(iopub, "stdout", sys.__stdout__)  # type: ignore[assignment]
    sys.stderr = OutStream(iopub, "stderr", sys.__stderr__)  # type: ignore[assignment]
    return previous


def restore(previous: tuple[TextIO, TextIO]) -> None:
    sys.stdout, sys.stderr = previous

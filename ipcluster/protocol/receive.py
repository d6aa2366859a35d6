"""The receive step every role runs: drain a socket, split batches, dispatch by ``msg_type``.

The controller's router, the engine's kernel and the client's I/O thread all receive the same
way, because ZeroMQ's descriptors are edge-triggered and its cost is per message:

1. :func:`drain` takes every message already waiting on a socket without blocking (up to a
   limit, so that one busy socket cannot starve the others), and
2. splits each *batch* (several signed packets for one peer sent as one ZeroMQ message, see
   :meth:`~.session.Session.split_batch`) into its messages, then
3. hands each message to the role's handler. An exception there is logged (at a bounded rate, see
   :mod:`.rejects`) and never stops the drain: one malformed or unlucky message must not stall a socket.

Decoding is left to the handler, since the roles decode differently (the controller routes on
the header alone and never decodes a task's content). Dispatching a decoded request goes through
a table keyed by ``msg_type`` (:class:`Handlers`), whose :meth:`~Handlers.answer` turns the
handler's exception into the content of an error reply: on the wire a failure is a reply, never
a dropped message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

import zmq

from ..error import error_content
from .rejects import limited
from .session import Frame, Session
from .wire import NOBLOCK, recv_frames

#: what a request handler returns: the reply's content and its buffers
Reply = tuple[dict[str, Any], list[Frame]]
H = TypeVar("H", bound=Callable[..., Any])

_split_batch = Session.split_batch


def messages(frames: list[Frame]) -> list[list[Frame]]:
    """The messages in what one receive returned: the parts of a batch, or the message itself."""
    parts = _split_batch(frames)
    return [frames] if parts is None else parts


def drain(
    sock: zmq.Socket[Any],
    on_message: Callable[[list[Frame]], object],
    limit: int,
    log: logging.Logger,
    *,
    batches: bool = True,
    lock: AbstractContextManager[Any] | None = None,
) -> bool:
    """Receive up to ``limit`` ZeroMQ messages waiting on ``sock`` and handle each message in them.

    Parameters
    ----------
    on_message:
        Called with the frames of one message (``[*idents, DELIM, packet, *buffers]``).
    limit:
        ZeroMQ messages to take before returning, so the caller can let other work in.
    batches:
        Whether messages may be batches to split (False for raw channels: heartbeats, iopub
        forwarding).
    lock:
        Held around each receive when the socket is shared with another thread (the client's
        DEALER); the handler runs outside it.

    Returns
    -------
    bool
        True when it stopped at ``limit``: more may be waiting, and nothing will signal it (the
        descriptor's edge is spent), so the caller must come back.
    """
    for _ in range(limit):
        if lock is None:
            try:
                frames = recv_frames(sock, NOBLOCK)
            except zmq.Again:
                return False
        else:
            with lock:
                try:
                    frames = recv_frames(sock, NOBLOCK)
                except zmq.Again:
                    return False
        parts = _split_batch(frames) if batches else None
        if parts is None:
            try:
                on_message(frames)
            except Exception as e:
                handler_failed(log, e, len(frames))
            continue
        for part in parts:
            try:
                on_message(part)
            except Exception as e:
                handler_failed(log, e, len(part))
    return True


def handler_failed(log: logging.Logger, err: Exception, nframes: int) -> None:
    """Report a message whose handler raised, at a bounded rate: a flood of hostile messages that
    trip the same bug must not flood the log. The traceback is logged at DEBUG level."""
    rejects = limited(log, f"{log.name}: the receive loop", logging.ERROR)
    rejects.refuse("its handler failed", f"{type(err).__name__}: {err} ({nframes} frames)")
    if rejects.total <= rejects.first and log.isEnabledFor(logging.DEBUG):
        log.debug("the handler's traceback", exc_info=err)


class Handlers(Generic[H]):
    """A dispatch table: one handler per ``msg_type``.

    Roles build one per channel (the controller's queries and engine messages, the engine's
    control messages, the client's task replies), so that what a process does with each message type is written in one
    place, and a test can compare the tables with :data:`~.messages.MSG_TYPES`.
    """

    __slots__ = ("table", "who", "log")

    def __init__(self, table: Mapping[str, H], who: str, log: logging.Logger) -> None:
        self.table: dict[str, H] = dict(table)
        self.who = who  # names the receiver in errors: "the controller", "engine 3"
        self.log = log

    def get(self, msg_type: str) -> H | None:
        return self.table.get(msg_type)

    def answer(self, msg_type: str, *args: Any) -> Reply:
        """Call the handler of ``msg_type``; return its reply, or error-reply content when it
        raised or there is none. This is a loop boundary: CancelledError still propagates."""
        handler = self.table.get(msg_type)
        try:
            if handler is None:
                raise NotImplementedError(f"{self.who} does not handle {msg_type}")
            content, buffers = handler(*args)
        except Exception as e:
            self.log.warning("%s failed: %s: %s", msg_type, type(e).__name__, e)
            return error_content(e), []
        content.setdefault("status", "ok")
        return content, buffers

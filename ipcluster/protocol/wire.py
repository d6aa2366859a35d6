"""Sending and receiving multipart messages with the least Python work per frame.

pyzmq's ``send_multipart``/``recv_multipart`` add per-frame Python overhead (option lookups,
enum conversions, checks) that costs more than the messaging itself for the small messages of
a no-op task. These call the Cython socket methods directly. Received frames are ``zmq.Frame``
objects (``copy=False``), so large buffers are never copied; small ones are read with ``.bytes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import zmq
from zmq.backend import Socket as _CSocket

_send = _CSocket.send
_recv = _CSocket.recv
_get = _CSocket.get
_SNDMORE = int(zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
NOBLOCK = int(zmq.NOBLOCK)


def send_frames(sock: zmq.Socket[Any], frames: Sequence[Any], flags: int = 0) -> None:
    """Send one multipart message (frames: bytes, memoryviews or zmq.Frames; never copied
    in Python; ZeroMQ copies those under its copy threshold, which is cheaper than tracking them)."""
    last = len(frames) - 1
    more = _SNDMORE | flags
    for n, frame in enumerate(frames):
        _send(sock, frame, more if n < last else flags, False, False)


def recv_frames(sock: zmq.Socket[Any], flags: int = 0) -> list[Any]:
    """Receive one multipart message as zmq.Frames (raises zmq.Again with NOBLOCK and nothing there)."""
    frames = [_recv(sock, flags, False, False)]
    while _get(sock, _RCVMORE):
        frames.append(_recv(sock, flags, False, False))
    return frames


def readable(sock: zmq.Socket[Any]) -> bool:
    """Whether a message is waiting (cheaper than a failing non-blocking receive)."""
    return bool(cast(int, _get(sock, _EVENTS)) & _POLLIN)


def fd(sock: zmq.Socket[Any]) -> int:
    """The socket's descriptor for an event loop's ``add_reader`` (edge-triggered: drain on each
    wake-up until ``EAGAIN``)."""
    return cast(int, sock.getsockopt(zmq.FD))

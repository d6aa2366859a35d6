"""The direct data channel: large buffers between a client and an engine, skipping the controller.

A 100 MB array pushed through the controller is received in full by it, then sent on: two
copies through the kernel, a second 100 MB allocation, and a controller whose memory grows by
the size of the largest message in flight. Between a client and an engine on the same host
there is a shorter way. The engine binds a ROUTER on a Unix socket in the controller's private
folder (mode 0700) and announces it when it registers. A client there connects its own ROUTER to
it, and a request or reply whose large buffers add up to ``DIRECT_MIN`` or more travels in two
parts:

- the signed packet goes through the controller as usual, with ``"data": n`` in its header
  (so the controller still records, orders and routes the task, but never holds the buffers);
- the n buffer frames go over the data channel first, as ``[msg_id, *frames]`` (the msg_id of
  the message they belong to).

The receiver joins them by msg_id, whichever arrives first, and unpacks the whole message as if
it had come in one piece: the buffers' lengths are in the signed packet, so a frame of the
wrong size is rejected as it would be on the controller's path. A sender that finds no connection to
its peer (``EHOSTUNREACH``) sends the whole message through the controller instead. Buffers that
nobody claims (their request was refused, the client went away) are dropped after a while.

An engine whose controller offers a shared-memory folder sends a result's buffers as a file
there instead, and only the file's name over the channel, as ``[SHM + msg_id, name, sizes]`` (see
:mod:`ipcluster.protocol.shm`); the receiver maps the file, and the rest goes as above.

Both ends use :class:`DataChannel`: the engine binds it, a client connects it to every engine on
its host. Routing ids are the engine's uuid and the client's session id, the identities they
already have at the controller, so a reply's client is known from the request's routing.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections import OrderedDict, deque
from typing import Any

import zmq

from . import shm
from .rejects import Rejects
from .session import nbytes
from .wire import fd
from .wire import NOBLOCK, readable, recv_frames, send_frames

#: seconds unclaimed buffers are kept, plus one per 100 MB (their message may still be on its way)
TTL = 60.0
#: seconds a message that arrived first waits for its buffers, plus one per 100 MB of them
DATA_WAIT = 30.0
#: marks a message whose buffers wait in a shared-memory file (a msg_id never starts so)
SHM = b"shm:"
#: unclaimed buffer sets kept at most (oldest dropped first): a flood of junk from a process of
#: this user must not fill the engine's memory; a real sender has a few in flight per request
MAX_UNCLAIMED = 4096


def wait_for(size: int, base: float | None = None) -> float:
    """How long a message waits for ``size`` bytes of buffers over the data channel."""
    return (DATA_WAIT if base is None else base) + size / 100e6


def keep_for(size: int) -> float:
    """How long unclaimed buffers of ``size`` bytes are kept."""
    return TTL + size / 100e6


class DataChannel:
    """One end of data channels: a ROUTER that receives buffers into an inbox and sends them.

    ``shm_dir`` is the controller's shared-memory folder (``""``: none): buffers announced in it
    are mapped from there, and with ``write_shm`` this end sends its own through it.
    """

    def __init__(self, ctx: zmq.Context[Any], routing_id: str, log: logging.Logger,
                 shm_dir: str = "", write_shm: bool = False) -> None:
        self.log = log
        self.path = ""  # the Unix socket this end bound, if it did
        self.url = ""
        self.shm_dir = shm_dir
        self.write_shm = write_shm and bool(shm_dir)
        self._written: deque[tuple[float, str]] = deque()  # (expiry, path) of files sent
        sock: zmq.Socket[Any] = zmq.Socket(ctx, zmq.ROUTER)
        sock.setsockopt(zmq.ROUTING_ID, routing_id.encode())
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a peer that is not connected: say so, do not drop
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.LINGER, 0)
        self.sock = sock
        self.fd = fd(sock)
        self._inbox: OrderedDict[str, tuple[list[Any], float]] = OrderedDict()  # msg_id -> frames, expiry
        # what it drops is counted and logged at a bounded rate (a flood must not flood the log)
        self.rejects = Rejects(log, "the data channel")
        self.dropped = Rejects(log, "the data channel's unclaimed buffers")

    def bind(self, folder: str, name: str) -> None:
        """Listen on a Unix socket ``<folder>/data-<name>`` (an engine's end)."""
        self.path = os.path.join(folder, f"data-{name[:12]}")
        self.url = f"ipc://{self.path}"
        self.sock.bind(self.url)

    def drain(self) -> list[str]:
        """Receive every waiting ``[peer, msg_id, *frames]`` into the inbox; return their msg_ids."""
        got = []
        sock = self.sock
        while readable(sock):
            frames = recv_frames(sock, NOBLOCK)
            if len(frames) < 3:
                self.rejects.refuse("too few frames", f"{len(frames)} frame(s)")
                continue
            tag = frames[1].bytes
            if tag.startswith(SHM):
                msg_id = tag[len(SHM):].decode(errors="replace")
                bufs = self._map(msg_id, frames)
                if bufs is None:
                    continue
            else:
                msg_id = tag.decode(errors="replace")
                bufs = frames[2:]
            self._inbox[msg_id] = (bufs, time.monotonic() + keep_for(sum(len(f) for f in bufs)))
            got.append(msg_id)
            if len(self._inbox) > MAX_UNCLAIMED:
                old, _ = self._inbox.popitem(last=False)
                self.dropped.refuse("too many unclaimed", f"buffers of {old}")
        if got:
            self.expire()
        return got

    def _map(self, msg_id: str, frames: list[Any]) -> list[Any] | None:
        """The buffers of a ``[peer, SHM + msg_id, name, sizes]`` message, mapped from their file."""
        try:
            sizes = [n for (n,) in struct.iter_unpack("<Q", frames[3].bytes)]
            if not self.shm_dir:
                raise ValueError("this end knows no shared-memory folder")
            return shm.take(self.shm_dir, frames[2].bytes.decode(), sizes)
        except (ValueError, OSError, IndexError, struct.error) as e:
            self.rejects.refuse("not mappable", f"the buffers of {msg_id} from shared memory: {e}")
            return None

    def pending(self) -> bool:
        """Whether buffers wait to be drained. Check after each send: a send may process the
        socket's commands and so consume the edge of the descriptor that announced them."""
        return readable(self.sock)

    def has(self, msg_id: str) -> bool:
        return msg_id in self._inbox

    def take(self, msg_id: str) -> list[Any] | None:
        entry = self._inbox.pop(msg_id, None)
        return None if entry is None else entry[0]

    def send(self, peer: bytes, msg_id: str, frames: list[Any], track: bool = False) -> Any:
        """Send the buffers of message ``msg_id`` to ``peer``: True (or a MessageTracker with
        ``track``) once queued; None when that peer has no data connection to us."""
        if self.write_shm and not track:
            size = sum(map(nbytes, frames))
            if shm.has_room(self.shm_dir, size):
                try:
                    return self._send_shm(peer, msg_id, frames, size)
                except OSError as e:  # the folder is gone or full: the socket still works
                    self.log.warning("could not write %d bytes to shared memory (%s): sending them over "
                                     "the socket", size, e.strerror)
                    self.write_shm = os.path.isdir(self.shm_dir)
        try:
            if track:
                return self.sock.send_multipart([peer, msg_id.encode(), *frames], NOBLOCK, copy=False, track=True)
            send_frames(self.sock, [peer, msg_id.encode(), *frames], NOBLOCK)
            return True
        except zmq.ZMQError:  # EHOSTUNREACH: not connected (yet, or any more)
            return None

    def _send_shm(self, peer: bytes, msg_id: str, frames: list[Any], size: int) -> bool | None:
        name = shm.write(self.shm_dir, frames)
        path = os.path.join(self.shm_dir, name)
        sizes = b"".join(struct.pack("<Q", nbytes(f)) for f in frames)
        try:
            send_frames(self.sock, [peer, SHM + msg_id.encode(), name.encode(), sizes], NOBLOCK)
        except zmq.ZMQError:  # EHOSTUNREACH: not connected
            os.unlink(path)
            return None
        self._written.append((time.monotonic() + keep_for(size), path))
        return True

    def expire(self) -> None:
        """Drop buffers unclaimed past their time, and unlink files sent but never taken
        (callers schedule this after :meth:`drain` and after sending)."""
        now = time.monotonic()
        written = self._written
        while written and written[0][0] < now:
            try:
                os.unlink(written.popleft()[1])
                self.log.warning("removed an unclaimed shared-memory file")
            except FileNotFoundError:  # taken, as usual
                pass
        for msg_id, (_, expiry) in list(self._inbox.items()):
            if expiry < now:
                del self._inbox[msg_id]
                self.dropped.refuse("unclaimed past their time", msg_id)

    def close(self) -> None:
        self.sock.close(linger=0)
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass

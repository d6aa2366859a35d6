"""The client's end of the data channels to engines on its host (see :mod:`ipcluster.protocol.data`).

A request's large buffers are sent from the caller's thread; results' buffers are received by
the I/O thread and joined to their replies, which may arrive before or after them. All socket
use is under one lock, as for the client's DEALER.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import zmq

from ..protocol.connection import is_socket
from ..protocol.data import TTL, DataChannel, wait_for
from ..protocol.session import DataMissing

log = logging.getLogger(__name__)


class DataLink:
    """Data channels to engines: connect, send, and join received buffers to their replies.

    ``deliver(frames)`` gets a reply joined with its buffers (to handle as if it came whole);
    ``lost(frames, why)`` a reply whose buffers never came.
    """

    def __init__(self, ctx: zmq.Context[Any], routing_id: str, loop: asyncio.AbstractEventLoop,
                 deliver: Callable[[list[Any]], None], lost: Callable[[list[Any], str], None],
                 shm_dir: str = "") -> None:
        self.channel = DataChannel(ctx, routing_id, log, shm_dir)  # engines' results may come mapped
        self.loop = loop
        self._deliver = deliver
        self._lost = lost
        self._lock = threading.Lock()
        self.peers: dict[int, tuple[bytes, str]] = {}  # engine id -> (uuid, url)
        self._parked: dict[str, tuple[list[Any], asyncio.TimerHandle]] = {}  # replies awaiting buffers
        loop.add_reader(self.channel.fd, self._drain)

    def connect(self, eid: int, info: dict[str, Any]) -> None:
        """Open the channel to an engine that offers one on this host."""
        url = str(info.get("data_url") or "")
        if not url.startswith("ipc://") or not is_socket(url[len("ipc://"):]) or eid in self.peers:
            return
        with self._lock:
            if self.channel.sock.closed:
                return
            self.channel.sock.connect(url)
            self.peers[eid] = (str(info.get("uuid", "")).encode(), url)

    def disconnect(self, eid: int) -> None:
        peer = self.peers.pop(eid, None)
        if peer is not None:
            with self._lock:
                try:
                    self.channel.sock.disconnect(peer[1])
                except zmq.ZMQError:
                    pass

    def send(self, eid: int, msg_id: str, frames: list[Any], track: bool) -> Any:
        """Send a request's large buffers to engine ``eid`` (any thread): True or a MessageTracker
        once queued, None when there is no open channel to it."""
        peer = self.peers.get(eid)
        if peer is None:
            return None
        with self._lock:
            if self.channel.sock.closed:
                return None
            sent = self.channel.send(peer[0], msg_id, frames, track)
            pending = self.channel.pending()
        if pending:
            self.loop.call_soon_threadsafe(self._drain)
        return sent

    def on_missing(self, frames: list[Any], err: DataMissing) -> None:
        """I/O thread: a reply whose buffers come over the channel. Join them, or wait for them."""
        msg_id = err.header["msg_id"]
        with self._lock:
            bufs = self.channel.take(msg_id)
        if bufs is not None:
            self._deliver([*frames, *bufs])
            return
        timer = self.loop.call_later(wait_for(err.size), self._never_came, msg_id)
        self._parked[msg_id] = ([f if isinstance(f, bytes) else bytes(f) for f in frames], timer)

    def _drain(self) -> None:
        with self._lock:
            if self.channel.sock.closed:
                return
            arrived = self.channel.drain()
        if arrived:
            self.loop.call_later(TTL + 1, self._expire)  # buffers nobody claims do not stay
        for msg_id in arrived:
            parked = self._parked.pop(msg_id, None)
            if parked is not None:
                frames, timer = parked
                timer.cancel()
                with self._lock:
                    bufs = self.channel.take(msg_id)
                self._deliver([*frames, *(bufs or ())])

    def _expire(self) -> None:
        with self._lock:
            if not self.channel.sock.closed:
                self.channel.expire()

    def _never_came(self, msg_id: str) -> None:
        parked = self._parked.pop(msg_id, None)
        if parked is not None:
            log.error("the buffers of reply %s never arrived over the data channel", msg_id)
            self._lost(parked[0], f"the result's buffers (reply {msg_id}) never arrived over the data channel")

    def close(self) -> None:
        """I/O thread: stop receiving and close the socket; waiting replies are forgotten."""
        for _, timer in self._parked.values():
            timer.cancel()
        self._parked.clear()
        with self._lock:
            try:
                self.loop.remove_reader(self.channel.fd)
            except (ValueError, OSError):
                pass
            self.channel.close()

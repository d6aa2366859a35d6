"""The engine's heart: echoes the controller's heartbeat pings from a C-level ZeroMQ device.

The controller declares an engine dead when it misses pings, so the echo must not depend on the
engine's Python code: a task that runs for an hour, or holds the GIL in a C extension, must not
make its engine look dead. ``zmq.proxy`` runs in C with the GIL released, in its own thread, and
forwards each ping frame unchanged from a SUB socket (connected to the controller's ping PUB) to
a DEALER whose identity is the engine's uuid (so the controller's pong ROUTER knows who answered).

The device runs in the engine's *side context* (a ``zmq.Context`` of its own, shared with the
control thread, :mod:`.control`): its I/O thread never queues a ping behind a large task reply
on the main context, and terminating that context stops the device (the proxy returns ETERM and
closes its sockets).
"""

from __future__ import annotations

import logging
from typing import Any

import zmq
from zmq.devices import ThreadDevice


class Heart:
    """Start with :meth:`start`; terminating ``context`` stops it."""

    def __init__(
        self, context: zmq.Context[Any], ping_url: str, pong_url: str, identity: bytes, log: logging.Logger
    ) -> None:
        self.ping_url = ping_url
        self.pong_url = pong_url
        self.log = log
        device = ThreadDevice(zmq.FORWARDER, zmq.SUB, zmq.DEALER)
        device.context_factory = lambda: context  # type: ignore[method-assign]
        device.daemon = True
        device.setsockopt_in(zmq.SUBSCRIBE, b"")
        device.setsockopt_in(zmq.LINGER, 0)
        device.setsockopt_out(zmq.IDENTITY, identity)
        device.setsockopt_out(zmq.LINGER, 0)
        device.connect_in(ping_url)
        device.connect_out(pong_url)
        self.device = device

    def start(self) -> None:
        self.device.start()
        self.log.debug("heart beating: ping %s, pong %s", self.ping_url, self.pong_url)

    def join(self, timeout: float = 1.0) -> None:
        """Wait for the device thread to end (after its context was terminated)."""
        if self.device.launcher is not None:
            self.device.join(timeout)

"""Heartbeat bookkeeping: which engines answered which pings (state only, no sockets).

Pings are numbered. An engine is alive while its latest echoed ping is within ``misses`` of the
latest one sent; an engine that just registered counts as having answered the current ping, so a
slow first beat does not kill it.
"""

from __future__ import annotations

import struct

_SEQ = struct.Struct("!Q")


class HeartMonitor:
    def __init__(self, misses: int = 3) -> None:
        self.misses = misses
        self.seq = 0
        self._last: dict[bytes, int] = {}

    def next_ping(self) -> bytes:
        """Advance the sequence; return the ping payload to publish."""
        self.seq += 1
        return _SEQ.pack(self.seq)

    def add(self, ident: bytes) -> None:
        self._last[ident] = self.seq

    def remove(self, ident: bytes) -> None:
        self._last.pop(ident, None)

    def pong(self, ident: bytes, payload: bytes) -> None:
        if ident in self._last and len(payload) == _SEQ.size:
            (seq,) = _SEQ.unpack(payload)
            if seq > self._last[ident]:
                self._last[ident] = seq

    def dead(self) -> list[bytes]:
        """Engines that missed more than ``misses`` pings in a row (checked before each new ping)."""
        limit = self.seq - self.misses
        return [ident for ident, last in self._last.items() if last < limit]

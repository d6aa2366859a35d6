"""Signing, packing and unpacking of wire messages.

A message on the wire is a list of ZeroMQ frames, Jupyter style::

    [ident, ..., b"<IDS|MSG>", signature, header, parent_header, metadata, content, buffer, ...]

``header``, ``parent_header``, ``metadata`` and ``content`` are JSON objects (encoded with orjson,
which is several times faster than the stdlib for the small dicts on the hot path). The signature
is the hex HMAC-SHA256 of those four frames under the cluster's key. Buffers (pickled payloads
and out-of-band pickle-5 buffers) follow unsigned, as in Jupyter: they are bound to the signed
header by position, and hashing hundreds of megabytes per message would cap throughput.

This module does not own sockets; callers pass frames in and get frames out, so the same code
serves the controller, the engines and the client, and it is unit-tested without ZeroMQ.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from ..error import ProtocolError

DELIM = b"<IDS|MSG>"
PROTOCOL_VERSION = "1.0"

Frame = Any  # bytes, memoryview or zmq.Frame


def new_key() -> bytes:
    """A fresh random per-cluster signing key (hex text, as stored in connection files)."""
    return uuid.uuid4().hex.encode() + os.urandom(16).hex().encode()


def _as_bytes(frame: Frame) -> bytes:
    if isinstance(frame, bytes):
        return frame
    b = getattr(frame, "bytes", None)  # zmq.Frame
    if b is not None:
        return b
    return bytes(frame)


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def loads(data: Frame) -> Any:
    try:
        return orjson.loads(_as_bytes(data))
    except orjson.JSONDecodeError as e:
        raise ProtocolError(f"message part is not valid JSON: {e}") from e


class Message(dict):
    """An unpacked message: a dict with ``header``, ``parent_header``, ``metadata``, ``content``,
    ``buffers`` and ``msg_type``/``msg_id`` for convenience."""

    __slots__ = ()


class Session:
    """Creates, signs and verifies messages for one process.

    Parameters
    ----------
    key:
        The per-cluster HMAC key. An empty key disables signing (only for tests that say so).
    session_id:
        Identifies this process in headers; message ids are ``<session_id>-<counter>``, unique
        per process without the cost of a uuid per message.
    """

    def __init__(self, key: bytes | str, session_id: str | None = None, username: str = "") -> None:
        if isinstance(key, str):
            key = key.encode()
        self.key = key
        self.session_id = session_id or uuid.uuid4().hex
        self.username = username or os.environ.get("USER", "user")
        self._auth = hmac.new(key, digestmod=hashlib.sha256) if key else None
        self._counter = itertools.count()

    # -- ids and headers -------------------------------------------------------------------
    def new_msg_id(self) -> str:
        return f"{self.session_id}-{next(self._counter)}"

    def msg_header(self, msg_type: str, **extra: Any) -> dict[str, Any]:
        header = {
            "msg_id": self.new_msg_id(),
            "msg_type": msg_type,
            "session": self.session_id,
            "username": self.username,
            "date": time.time(),
            "version": PROTOCOL_VERSION,
        }
        if extra:
            header.update(extra)
        return header

    # -- signing ---------------------------------------------------------------------------
    def sign(self, parts: Sequence[bytes]) -> bytes:
        if self._auth is None:
            return b""
        h = self._auth.copy()
        for p in parts:
            h.update(p)
        return h.hexdigest().encode()

    def verify(self, signature: bytes, parts: Sequence[bytes]) -> bool:
        if self._auth is None:
            return True
        return hmac.compare_digest(signature, self.sign(parts))

    # -- packing ---------------------------------------------------------------------------
    def serialize(
        self,
        msg_type: str,
        content: dict[str, Any] | None = None,
        parent: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[Frame] = (),
        header: dict[str, Any] | None = None,
        idents: Sequence[bytes] = (),
    ) -> tuple[dict[str, Any], list[Frame]]:
        """Build a message; return its header and the frames to send."""
        if header is None:
            header = self.msg_header(msg_type)
        parts = [
            orjson.dumps(header),
            orjson.dumps(parent or {}),
            orjson.dumps(metadata or {}),
            orjson.dumps(content or {}),
        ]
        frames: list[Frame] = [*idents, DELIM, self.sign(parts), *parts, *buffers]
        return header, frames

    @staticmethod
    def split_idents(frames: Sequence[Frame]) -> tuple[list[bytes], int]:
        """Return the routing identities and the index of the delimiter frame."""
        idents: list[bytes] = []
        for i, f in enumerate(frames):
            b = _as_bytes(f) if i < 8 or not isinstance(f, bytes) else f
            if b == DELIM:
                return idents, i
            idents.append(b)
            if i > 16:
                break
        raise ProtocolError("no <IDS|MSG> delimiter in message")

    def unpack(self, frames: Sequence[Frame], verify: bool = True) -> tuple[list[bytes], Message]:
        """Verify and decode a message; buffers are returned as received (zero-copy frames).

        Raises ProtocolError for a malformed message or a bad signature.
        """
        idents, i = self.split_idents(frames)
        if len(frames) < i + 6:
            raise ProtocolError(f"message has {len(frames) - i} parts after the delimiter; need 6")
        signature = _as_bytes(frames[i + 1])
        parts = [_as_bytes(f) for f in frames[i + 2 : i + 6]]
        if verify and not self.verify(signature, parts):
            raise ProtocolError("invalid message signature (is the key the cluster's?)")
        header = loads(parts[0])
        if not isinstance(header, dict) or "msg_type" not in header or "msg_id" not in header:
            raise ProtocolError("message header lacks msg_id or msg_type")
        msg = Message(
            header=header,
            parent_header=loads(parts[1]),
            metadata=loads(parts[2]),
            content=loads(parts[3]),
            buffers=list(frames[i + 6 :]),
            msg_id=header["msg_id"],
            msg_type=header["msg_type"],
        )
        return idents, msg

    def peek_header(self, frames: Sequence[Frame], verify: bool = True) -> tuple[list[bytes], int, dict[str, Any]]:
        """Verify a message and decode only its header: the controller's routing fast path.

        Returns the identities, the delimiter index and the header.
        """
        idents, i = self.split_idents(frames)
        if len(frames) < i + 6:
            raise ProtocolError(f"message has {len(frames) - i} parts after the delimiter; need 6")
        if verify and self._auth is not None:
            parts = [_as_bytes(f) for f in frames[i + 2 : i + 6]]
            if not hmac.compare_digest(_as_bytes(frames[i + 1]), self.sign(parts)):
                raise ProtocolError("invalid message signature (is the key the cluster's?)")
            header = loads(parts[0])
        else:
            header = loads(frames[i + 2])
        if not isinstance(header, dict) or "msg_type" not in header:
            raise ProtocolError("message header lacks msg_type")
        return idents, i, header

"""Signing, packing and unpacking of wire messages.

A message on the wire is a short list of ZeroMQ frames::

    [ident, ..., b"<IDS|MSG>", packet, large_buffer, ...]

``packet`` holds, in one frame, an HMAC-SHA256 signature (32 bytes) and the signed body: a small
binary table of lengths, then the header, parent header, metadata and content (JSON, encoded with
orjson) and every buffer smaller than :data:`INLINE_MAX`. Larger buffers (numpy arrays, big
pickles) follow as frames of their own, so they are never copied in Python; like Jupyter, those
frames are bound to the signed packet by position but not hashed, since hashing hundreds of
megabytes per message would cap throughput.

Why one packet rather than Jupyter's frame per part: each ZeroMQ frame costs a socket call and,
on receipt, a ``RCVMORE`` query; on a 2-core machine a 9-frame message costs ~15 µs to send and
~12 µs to receive in pyzmq, a one-frame message about 1 µs. Small messages (a no-op task) are
the common case, and every one crosses the controller twice.

This module does not own sockets; callers pass frames in and get frames out, so the same code
serves the controller, the engines and the client, and it is unit-tested without ZeroMQ.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import struct
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from ..error import ProtocolError, SerializationError

DELIM = b"<IDS|MSG>"
#: delimiter of a batch: several packets (messages without large buffers) for the same peer
BATCH = b"<IDS|BATCH>"
PROTOCOL_VERSION = "2.0"
SIG_SIZE = 32
#: buffers up to this size travel inside the packet; larger ones as frames of their own
INLINE_MAX = 64 * 1024
#: a message whose large buffers add up to this many bytes sends them over the direct data
#: channel between a client and an engine on the same host, when one is open (see DataMissing)
DIRECT_MIN = 1 << 20
_EXTERNAL = 0xFFFFFFFF
_TABLE = struct.Struct("<IIIIHH")  # lengths of header, parent, metadata, content; buffers; external ones
_LEN = struct.Struct("<I")
_SIZE = struct.Struct("<Q")
_NO_SIG = bytes(SIG_SIZE)
_DELIM_LEN = len(DELIM)
_BATCH_LEN = len(BATCH)


class _HmacSha256:
    """HMAC-SHA256 (RFC 2104) with the keyed inner and outer hash states computed once.

    Each digest copies two prepared SHA-256 states instead of keying a new HMAC, which with
    OpenSSL 3 also looks the algorithm up again on every call: half the cost per message, and
    every message is signed once and verified at least twice.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:  # the block size: longer keys are hashed first
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, body: Any) -> bytes:
        inner = self._inner.copy()
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

Frame = Any  # bytes, memoryview or zmq.Frame


def new_key() -> bytes:
    """A fresh random per-cluster signing key (hex text, as stored in connection files)."""
    return uuid.uuid4().hex.encode() + os.urandom(16).hex().encode()


def _view(frame: Frame) -> memoryview:
    buf = getattr(frame, "buffer", None)  # zmq.Frame: no copy
    return buf if buf is not None else memoryview(frame)


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def loads(data: Frame) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ProtocolError(f"message part is not valid JSON: {e}") from e


def nbytes(buf: Any) -> int:
    """The size of a buffer in bytes (``len`` of a memoryview counts items, not bytes)."""
    n = getattr(buf, "nbytes", None)
    return n if n is not None else len(buf)



def external(buffers: Sequence[Frame]) -> list[Frame]:
    """The buffers that :meth:`Session.pack` sends as frames of their own, in order."""
    return [b for b in buffers if nbytes(b) > INLINE_MAX]


class DataMissing(ProtocolError):
    """A message whose large buffers travel separately, over the direct data channel between a
    client and an engine, and have not been joined to it yet.

    Its header says so (``"data": <number of frames>``), signed like the rest; so are the
    buffers' lengths, which the frames must match when the message is unpacked again with them.
    """

    def __init__(self, header: dict[str, Any], size: int) -> None:
        super().__init__(f"message {header.get('msg_id')} lacks the {header.get('data')} buffer frame(s) "
                         "sent over the data channel")
        self.header = header
        self.size = size  # bytes of those frames, from the signed table


class BadSignature(ProtocolError):
    """A message whose signature does not verify: from a peer without the cluster's key, or
    altered in transit. Nothing in it beyond its length was read."""


class MalformedMessage(ProtocolError):
    """A message whose signature verified (so it comes from a holder of the key) but which is not a
    valid message: a table that does not fit, a part that is not a JSON object, a header without a
    string ``msg_id`` and ``msg_type``. Unlike an unsigned message, it deserves an error reply.

    ``header`` is the decoded header when there is one (a dict), else None.
    """

    def __init__(self, header: dict[str, Any] | None, why: str) -> None:
        super().__init__(why)
        self.header = header


class Message(dict[str, Any]):
    """An unpacked message: a dict with ``header``, ``parent_header``, ``metadata``, ``content``,
    ``buffers`` and ``msg_type``/``msg_id`` for convenience."""

    __slots__ = ()


class Packet:
    """A verified packet whose parts are decoded only when asked for (the controller's fast path:
    it routes on the header and never needs the content of a request)."""

    __slots__ = ("body", "offsets", "header")

    def __init__(self, body: memoryview, offsets: list[int], header: dict[str, Any]) -> None:
        self.body = body
        self.offsets = offsets
        self.header = header

    def part(self, n: int) -> memoryview:
        """Raw JSON of part ``n``: 0 header, 1 parent, 2 metadata, 3 content."""
        return self.body[self.offsets[n] : self.offsets[n + 1]]

    def _object(self, n: int, name: str) -> dict[str, Any]:
        try:
            value = orjson.loads(self.part(n))
        except orjson.JSONDecodeError as e:
            raise MalformedMessage(self.header, f"{self.header['msg_type']}: its {name} is not valid JSON: {e}") from None
        if type(value) is not dict:
            raise MalformedMessage(self.header, f"{self.header['msg_type']}: its {name} is not a JSON object")
        return value

    @property
    def parent(self) -> dict[str, Any]:
        return self._object(1, "parent header")

    @property
    def metadata(self) -> dict[str, Any]:
        return self._object(2, "metadata")

    @property
    def content(self) -> dict[str, Any]:
        return self._object(3, "content")


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
        self._auth = bool(key)
        self._mac = _HmacSha256(key).digest
        self._counter = itertools.count()
        #: the largest buffer frame the receiving controller takes (its max_client_frame_bytes or
        #: max_engine_frame_bytes, learnt on connecting); :meth:`serialize` refuses a larger one (0: any)
        self.max_frame = 0

    @property
    def session(self) -> str:
        """``session_id`` under jupyter_client's name: ipyparallel users find a client's tasks
        with ``rc.db_query({"client_uuid": rc.session.session})``."""
        return self.session_id

    # -- ids and headers -------------------------------------------------------------------
    def new_msg_id(self) -> str:
        return f"{self.session_id}-{next(self._counter)}"

    def msg_header(self, msg_type: str, **extra: Any) -> dict[str, Any]:
        header = {
            "msg_id": f"{self.session_id}-{next(self._counter)}",
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
    def sign(self, body: Any) -> bytes:
        """The raw HMAC-SHA256 digest of a packet body (zeros when signing is off)."""
        if not self._auth:
            return _NO_SIG
        return self._mac(body)

    def verify(self, signature: Any, body: Any) -> bool:
        if not self._auth:
            return True
        return hmac.compare_digest(bytes(signature), self._mac(body))

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
        frames = self.pack(
            orjson.dumps(header), orjson.dumps(parent) if parent else b"{}",
            orjson.dumps(metadata) if metadata else b"{}", orjson.dumps(content) if content else b"{}",
            buffers, idents)
        if len(frames) > len(idents) + 2 and self.max_frame and not header.get("data"):
            self._check_frames(frames[len(idents) + 2 :])  # only messages with large buffers get here
        return header, frames

    def _check_frames(self, frames: Sequence[Frame]) -> None:
        big = max(map(nbytes, frames))
        if big > self.max_frame:
            raise SerializationError(
                f"a buffer of {big} bytes is larger than the controller takes ({self.max_frame} bytes: "
                "ControllerApp.max_client_frame_bytes from clients, max_engine_frame_bytes from engines); "
                "it would drop the connection and the message with it. Send the data in parts, or raise "
                "that limit")

    def pack(self, h: bytes, p: Any, m: Any, c: Any, buffers: Sequence[Frame] = (),
             idents: Sequence[bytes] = ()) -> list[Frame]:
        """Frames of a message from already-encoded JSON parts (used to re-sign a changed header)."""
        lens = []
        inline = []
        external = []
        ext_lens = []
        for buf in buffers:
            n = nbytes(buf)
            if n <= INLINE_MAX:
                lens.append(n)
                inline.append(buf)
            else:
                lens.append(_EXTERNAL)
                external.append(buf)
                ext_lens.append(n)
        table = _TABLE.pack(len(h), len(p), len(m), len(c), len(lens), len(ext_lens))
        if lens:
            table += struct.pack(f"<{len(lens)}I", *lens)
        if ext_lens:  # signed: a frame swapped or cut in transit is detected
            table += struct.pack(f"<{len(ext_lens)}Q", *ext_lens)
        body = b"".join((table, h, p, m, c, *inline))
        return [*idents, DELIM, self.sign(body) + body, *external]

    @staticmethod
    def split_idents(frames: Sequence[Frame]) -> tuple[list[bytes], int]:
        """Return the routing identities and the index of the delimiter frame."""
        for i in range(min(len(frames), 16)):
            f = frames[i]
            n = len(f)
            if n == _DELIM_LEN or n == _BATCH_LEN:
                b = f if isinstance(f, bytes) else f.bytes
                if b == DELIM or b == BATCH:
                    return [f if isinstance(f, bytes) else f.bytes for f in frames[:i]], i
        raise ProtocolError("no <IDS|MSG> delimiter in message")

    @staticmethod
    def split_batch(frames: Sequence[Frame]) -> list[list[Frame]] | None:
        """A batch as single messages (``[*idents, DELIM, packet]`` each); None if not a batch.

        A sender may batch messages for one peer that have no large buffers: ZeroMQ's cost is per
        message, so under load one message of many packets is far cheaper than many messages.
        """
        for i in range(min(len(frames), 16)):
            f = frames[i]
            if len(f) == _BATCH_LEN and (f if isinstance(f, bytes) else f.bytes) == BATCH:
                idents = [f if isinstance(f, bytes) else f.bytes for f in frames[:i]]
                return [[*idents, DELIM, packet] for packet in frames[i + 1 :]]
            if len(f) == _DELIM_LEN:
                return None
        return None

    @staticmethod
    def batch(idents: Sequence[bytes], packets: Sequence[Frame]) -> list[Frame]:
        """Frames of one message carrying ``packets`` (a plain message when there is one)."""
        return [*idents, DELIM if len(packets) == 1 else BATCH, *packets]

    def unpack_all(self, frames: Sequence[Frame], verify: bool = True) -> list[tuple[list[bytes], Message]]:
        """:meth:`unpack` for a message or a batch of them."""
        parts = self.split_batch(frames)
        if parts is None:
            return [self.unpack(frames, verify)]
        return [self.unpack(p, verify) for p in parts]

    def peek(self, frames: Sequence[Frame], verify: bool = True) -> tuple[list[bytes], int, Packet]:
        """Verify a message and decode its header only; the other parts decode on demand."""
        idents, i = self.split_idents(frames)
        if len(frames) < i + 2:
            raise ProtocolError("message has no packet after the delimiter")
        if len(frames[i]) == _BATCH_LEN:
            raise ProtocolError("a batch of messages: split it with split_batch first")
        packet = _view(frames[i + 1])
        if len(packet) < SIG_SIZE + _TABLE.size:
            raise ProtocolError(f"message packet is too short ({len(packet)} bytes)")
        body = packet[SIG_SIZE:]
        if verify and self._auth:
            if not hmac.compare_digest(self._mac(body), packet[:SIG_SIZE].tobytes()):
                raise BadSignature("invalid message signature (is the key the cluster's?)")
        # nothing below runs on bytes that did not verify
        lh, lp, lm, lc, nbuf, next_ = _TABLE.unpack_from(body, 0)
        start = _TABLE.size + 4 * nbuf + 8 * next_
        offsets = [start, start + lh, start + lh + lp, start + lh + lp + lm, start + lh + lp + lm + lc]
        if offsets[4] > len(body):
            raise MalformedMessage(None, "message packet is shorter than its table says")
        try:
            header = orjson.loads(body[start : start + lh])
        except orjson.JSONDecodeError as e:
            raise MalformedMessage(None, f"message header is not valid JSON: {e}") from None
        if type(header) is not dict:
            raise MalformedMessage(None, "message header is not a JSON object")
        if type(header.get("msg_id")) is not str or type(header.get("msg_type")) is not str:
            raise MalformedMessage(header, "message header lacks a string msg_id or msg_type")
        offsets.append(nbuf)
        offsets.append(next_)
        return idents, i, Packet(body, offsets, header)

    def unpack(self, frames: Sequence[Frame], verify: bool = True) -> tuple[list[bytes], Message]:
        """Verify and decode a message. Buffers are returned without copies: inline ones as
        memoryviews into the packet, large ones as the received frames.

        Raises ProtocolError for a malformed message or a bad signature.
        """
        idents, i, packet = self.peek(frames, verify)
        body, offsets = packet.body, packet.offsets
        nbuf = offsets[5]
        buffers: list[Any] = []
        if nbuf:
            pos = offsets[4]
            ext = i + 2
            sizes_at = _TABLE.size + 4 * nbuf
            for (n,) in _LEN.iter_unpack(body[_TABLE.size : sizes_at]):
                if n == _EXTERNAL:
                    if ext >= len(frames):
                        if packet.header.get("data") and ext == i + 2:
                            sizes = _SIZE.iter_unpack(body[sizes_at : sizes_at + 8 * offsets[6]])
                            raise DataMissing(packet.header, sum(n for (n,) in sizes))
                        raise MalformedMessage(packet.header, "message lacks a buffer frame its table announces")
                    if ext - i - 2 >= offsets[6]:
                        raise MalformedMessage(packet.header, "message table announces more buffer frames than sizes")
                    (size,) = _SIZE.unpack_from(body, sizes_at + 8 * (ext - i - 2))
                    if len(frames[ext]) != size:
                        raise MalformedMessage(packet.header, f"buffer frame of {len(frames[ext])} bytes where the "
                                               f"signed table says {size}")
                    buffers.append(frames[ext])
                    ext += 1
                else:
                    buffers.append(body[pos : pos + n])
                    pos += n
        header = packet.header
        try:
            parent = orjson.loads(body[offsets[1] : offsets[2]])
            metadata = orjson.loads(body[offsets[2] : offsets[3]])
            content = orjson.loads(body[offsets[3] : offsets[4]])
        except orjson.JSONDecodeError as e:
            raise MalformedMessage(header, f"{header['msg_type']}: a part is not valid JSON: {e}") from None
        if type(content) is not dict or type(parent) is not dict or type(metadata) is not dict:
            raise MalformedMessage(header, f"{header['msg_type']}: content, parent header and metadata must be "
                                   "JSON objects")
        msg = Message(
            header=header,
            parent_header=parent,
            metadata=metadata,
            content=content,
            buffers=buffers,
            msg_id=header["msg_id"],
            msg_type=header["msg_type"],
        )
        return idents, msg


def _auth_error_packet(who: str) -> bytes:
    header = {"msg_id": "auth_error", "msg_type": "auth_error", "session": "controller", "username": "controller",
              "date": 0.0, "version": PROTOCOL_VERSION}
    content = {"evalue": f"message signature did not verify: the {who}'s key does not match the cluster's"}
    frames = Session(b"").pack(orjson.dumps(header), b"{}", b"{}", orjson.dumps(content))
    packet: bytes = frames[1]
    return packet


#: the controller's ``auth_error`` packets, by receiver ("client", "engine"): unsigned (the peer's key
#: is wrong, so it could not verify one signed with ours), and fixed, so that a receiver recognises
#: one by comparing bytes and never parses an unsigned message
AUTH_ERRORS = {who: _auth_error_packet(who) for who in ("client", "engine")}
_AUTH_LENS = frozenset(len(p) for p in AUTH_ERRORS.values())
_AUTH_TEXT = {p: orjson.loads(p[SIG_SIZE + _TABLE.size :].split(b"{}{}", 1)[1])["evalue"] for p in AUTH_ERRORS.values()}


def auth_error(frames: Sequence[Frame]) -> str | None:
    """The text of the controller's ``auth_error`` if ``frames`` are one, else None (no parsing)."""
    if len(frames) < 2 or len(frames[-1]) not in _AUTH_LENS:
        return None
    last = frames[-1]
    text: str | None = _AUTH_TEXT.get(last if type(last) is bytes else bytes(_view(last)))
    return text

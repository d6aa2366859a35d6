"""An in-process controller (real Router and sockets on 127.0.0.1) and raw-socket peers."""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import zmq
import zmq.asyncio

from ipcluster.controller.db import MemoryStore
from ipcluster.controller.hub import Hub
from ipcluster.controller.router import Router
from ipcluster.controller.schedulers import LeastLoad
from ipcluster.protocol.session import Session
from ipcluster.protocol.serialize import pack_apply

KEY = b"test-key"
WAIT = 5.0


class Peer:
    """A raw DEALER speaking the protocol: a stand-in client or engine."""

    def __init__(self, ctx: zmq.asyncio.Context, url: str, identity: bytes | None = None, key: bytes = KEY) -> None:
        self.session = Session(key)
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        if identity:
            self.sock.identity = identity
        self.sock.connect(url)
        self.pending: collections.deque = collections.deque()

    async def send(self, msg_type: str, content: dict[str, Any] | None = None, idents: list[bytes] = (),
                   buffers: list[Any] = (), metadata: dict[str, Any] | None = None,
                   parent: dict[str, Any] | None = None, **header_extra: Any) -> dict[str, Any]:
        header = self.session.msg_header(msg_type, **header_extra)
        _, frames = self.session.serialize(msg_type, content, parent, metadata, buffers, header=header, idents=idents)
        await self.sock.send_multipart(frames)
        return header

    async def recv(self, timeout: float = WAIT) -> tuple[list[bytes], dict[str, Any]]:
        """The next message (the controller may send several at once, as a batch)."""
        if not self.pending:
            frames = await asyncio.wait_for(self.sock.recv_multipart(), timeout)
            self.pending.extend(self.session.unpack_all(frames))
        return self.pending.popleft()

    def close(self) -> None:
        self.sock.close()


class Controller:
    def __init__(self, router: Router, urls: dict[str, str], ctx: zmq.asyncio.Context) -> None:
        self.router = router
        self.hub = router.hub
        self.urls = urls
        self.ctx = ctx
        self.peers: list[Any] = []

    def peer(self, kind: str, identity: bytes | None = None, key: bytes = KEY) -> Peer:
        p = Peer(self.ctx, self.urls[kind], identity, key)
        self.peers.append(p)
        return p

    async def engine(self, uuid: bytes) -> tuple[Peer, int]:
        e = self.peer("engine", uuid)
        await e.send("registration_request", {"uuid": uuid.decode(), "hostname": "h", "pid": os.getpid()})
        _, reply = await e.recv()
        assert reply["content"]["status"] == "ok", reply["content"]
        return e, reply["content"]["id"]

    def sub(self) -> zmq.asyncio.Socket:
        s = self.ctx.socket(zmq.SUB)
        s.linger = 0
        s.subscribe(b"")
        s.connect(self.urls["iopub"])
        self.peers.append(s)
        return s


@pytest.fixture
async def controller() -> AsyncIterator[Controller]:
    sync_ctx = zmq.Context()
    kinds = {"client": zmq.ROUTER, "engine": zmq.ROUTER, "iopub_out": zmq.XPUB, "iopub_in": zmq.XSUB,
             "hb_ping": zmq.PUB, "hb_pong": zmq.ROUTER}
    socks = {k: sync_ctx.socket(v) for k, v in kinds.items()}
    socks["engine"].setsockopt(zmq.ROUTER_MANDATORY, 1)
    socks["iopub_out"].setsockopt(zmq.XPUB_VERBOSE, 1)
    urls = {}
    for name, s in socks.items():
        s.linger = 0
        port = s.bind_to_random_port("tcp://127.0.0.1")
        urls[name] = f"tcp://127.0.0.1:{port}"
    urls["iopub"] = urls["iopub_out"]
    router = Router(Hub(MemoryStore(max_result_bytes=1 << 20, max_result_size=1 << 16), LeastLoad()),
                    Session(KEY), socks, cluster_id="t", hb_period=0.1, hb_misses=1000)  # tests that want deaths lower it
    router.start()
    actx = zmq.asyncio.Context()
    c = Controller(router, urls, actx)
    try:
        yield c
    finally:
        router.stop()
        for p in c.peers:
            (p.close() if isinstance(p, Peer) else p.close(0))
        for s in socks.values():
            s.close(0)
        actx.term()
        sync_ctx.term()


def apply_buffers(f: Any = len, *args: Any) -> list[Any]:
    return pack_apply(f, args or ([1, 2],), {})

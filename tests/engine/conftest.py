"""A fake controller made of raw ZeroMQ sockets, and a real engine process to talk to it.

The engine is started exactly as launchers start it (``python -m ipcluster.engine --file=...``)
against sockets bound here on 127.0.0.1: a ROUTER for the engine channel, a SUB (bound,
subscribed to everything) standing in for the controller's IOPub XSUB, and a PUB/ROUTER pair for
the heartbeat. Tests wait on events (a reply, an IOPub message, the process's exit), each with a
short timeout, and every engine is killed in teardown if it is still running.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from ipcluster.protocol.connection import write_private_json
from ipcluster.protocol.serialize import deserialize_result, pack_apply
from ipcluster.protocol.session import Message, Session, new_key

#: seconds any single wait in these tests may take
WAIT = 10.0
CLIENT = b"client-0"


class FakeController:
    """The controller's four engine-facing sockets plus a Session with the cluster key."""

    def __init__(self, tmp_path: Path) -> None:
        self.key = new_key()
        self.session = Session(self.key)
        self.ctx = zmq.asyncio.Context()
        self.router = self._bound(zmq.ROUTER)
        self.iopub = self._bound(zmq.SUB)
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.hb_ping = self._bound(zmq.PUB)
        self.hb_pong = self._bound(zmq.ROUTER)
        self.file = tmp_path / "security" / "ipcontroller-engine.json"
        self.info = {
            "key": self.key.decode(),
            "signature_scheme": "hmac-sha256",
            "interface": "tcp://127.0.0.1",
            "engine_port": self._port(self.router),
            "iopub_port": self._port(self.iopub),
            "hb_ping_port": self._port(self.hb_ping),
            "hb_pong_port": self._port(self.hb_pong),
            "cluster_id": "",
        }
        self.replies: dict[str, Message] = {}
        self._pending: collections.deque[tuple[list[bytes], Message]] = collections.deque()
        self.iopub_seen: list[Message] = []
        self._iopub_queue: asyncio.Queue[tuple[bytes, Message]] = asyncio.Queue()
        self._iopub_reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Read IOPub all the time, as a controller does. This matters: a ZeroMQ socket handles
        new connections only when its owner calls into it, so a SUB nobody reads never sends
        its subscription to an engine that connects, and the engine's output is dropped."""
        self._iopub_reader = asyncio.create_task(self._read_iopub())

    async def _read_iopub(self) -> None:
        while True:
            frames = await self.iopub.recv_multipart(copy=False)
            _, msg = self.session.unpack(frames[1:])
            self._iopub_queue.put_nowait((frames[0].bytes, msg))

    def _bound(self, kind: int) -> zmq.asyncio.Socket:
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 0)  # a ROUTER drops, rather than queues, above its HWM
        s.setsockopt(zmq.RCVHWM, 0)
        s.bind("tcp://127.0.0.1:0")
        return s

    @staticmethod
    def _port(s: zmq.Socket[Any]) -> int:
        return int(s.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1])

    def write_file(self) -> Path:
        return write_private_json(self.file, self.info)

    async def close(self) -> None:
        if self._iopub_reader is not None:
            self._iopub_reader.cancel()
            await asyncio.gather(self._iopub_reader, return_exceptions=True)
        for s in (self.router, self.iopub, self.hb_ping, self.hb_pong):
            s.close(linger=0)
        self.ctx.term()

    # -- engine channel ----------------------------------------------------------------
    async def recv(self, timeout: float = WAIT) -> tuple[list[bytes], Message]:
        """The next signed message on the engine ROUTER: (idents, message). The engine sends
        replies in batches when several tasks were queued."""
        if not self._pending:
            async with asyncio.timeout(timeout):
                frames = await self.router.recv_multipart(copy=False)
            self._pending.extend(self.session.unpack_all(frames))
        return self._pending.popleft()

    async def send(
        self,
        idents: list[bytes],
        msg_type: str,
        content: dict[str, Any] | None = None,
        buffers: list[Any] = (),  # type: ignore[assignment]
        parent: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        header, frames = self.session.serialize(msg_type, content, parent=parent, buffers=buffers, idents=idents)
        await self.router.send_multipart(frames, copy=False)
        return header

    async def reply_to(self, msg_id: str, timeout: float = WAIT) -> Message:
        """Wait for the reply whose parent is ``msg_id`` (replies to others are kept)."""
        async with asyncio.timeout(timeout):
            while msg_id not in self.replies:
                idents, msg = await self.recv()
                self.replies[msg["parent_header"].get("msg_id", "")] = msg
                msg["idents"] = idents
        return self.replies.pop(msg_id)

    # -- iopub ---------------------------------------------------------------------------
    async def next_iopub(self, timeout: float = WAIT) -> tuple[bytes, Message]:
        async with asyncio.timeout(timeout):
            topic, msg = await self._iopub_queue.get()
        self.iopub_seen.append(msg)
        return topic, msg

    async def iopub_for(self, msg_id: str, count: int, timeout: float = WAIT) -> list[Message]:
        """The first ``count`` IOPub messages whose parent is ``msg_id`` (others are skipped)."""
        out = [m for m in self.iopub_seen if m["parent_header"].get("msg_id") == msg_id]
        try:
            async with asyncio.timeout(timeout):
                while len(out) < count:
                    _, msg = await self.next_iopub()
                    if msg["parent_header"].get("msg_id") == msg_id:
                        out.append(msg)
        except TimeoutError:
            seen = [(m["msg_type"], m["parent_header"].get("msg_id")) for m in self.iopub_seen]
            raise AssertionError(f"{len(out)} of {count} iopub messages for {msg_id}; all seen: {seen}") from None
        return out[:count]


def _sleep_30s() -> None:
    import time

    print("sleeping", flush=True)
    time.sleep(30)


class Engine:
    """A running engine process registered with a FakeController."""

    def __init__(self, controller: FakeController, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.controller = controller
        self.proc = proc
        self.log = log
        self.identity = b""
        self.id = -1

    async def register(self, engine_id: int = 0, **extra: Any) -> dict[str, Any]:
        idents, msg = await self.controller.recv()
        assert msg["msg_type"] == "registration_request", msg
        self.identity = idents[0]
        content = {"status": "ok", "id": engine_id, "hb_period": 1.0, **extra}  # extra: max_frame_bytes, ...
        await self.controller.send(idents, "registration_reply", content, parent=msg["header"])
        self.id = engine_id
        return msg["content"]

    async def request(
        self, msg_type: str, content: dict[str, Any] | None = None, buffers: list[Any] = ()  # type: ignore[assignment]
    ) -> dict[str, Any]:
        """Send a request as the controller forwards it: prefixed by a client identity."""
        return await self.controller.send([self.identity, CLIENT], msg_type, content or {}, buffers)

    async def apply(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Message:
        header = await self.request("apply_request", {}, pack_apply(f, args, kwargs))
        return await self.controller.reply_to(header["msg_id"])

    async def execute(self, code: str, silent: bool = False) -> Message:
        header = await self.request("execute_request", {"code": code, "silent": silent})
        return await self.controller.reply_to(header["msg_id"])

    async def start_sleeping(self) -> dict[str, Any]:
        """Start a 30 s apply that prints first; return its header once it runs (the print seen)."""
        header = await self.request("apply_request", {}, pack_apply(_sleep_30s, (), {}))
        await self.controller.iopub_for(header["msg_id"], 1)
        return header

    async def wait_exit(self, timeout: float = WAIT) -> int:
        return await asyncio.to_thread(self.proc.wait, timeout)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


def result_of(reply: Message) -> Any:
    """The value of an ok apply_reply."""
    assert reply["content"]["status"] == "ok", reply["content"]
    return deserialize_result(reply["buffers"])


def start_engine(controller: FakeController, tmp_path: Path, *args: str, name: str = "engine") -> Engine:
    log = tmp_path / f"{name}.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ipcluster.engine", f"--file={controller.file}", "--log-level=DEBUG", *args],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return Engine(controller, proc, log)


def kill(engine: Engine) -> None:
    if engine.proc.poll() is None:
        engine.proc.send_signal(signal.SIGKILL)
        engine.proc.wait(WAIT)


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[FakeController]:
    c = FakeController(tmp_path)
    c.start()
    c.write_file()
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def engine_factory(controller: FakeController, tmp_path: Path) -> AsyncIterator[Callable[..., Engine]]:
    """Start engines (not yet registered); all are killed in teardown."""
    started: list[Engine] = []

    def factory(*args: str) -> Engine:
        e = start_engine(controller, tmp_path, *args, name=f"engine{len(started)}")
        started.append(e)
        return e

    try:
        yield factory
    finally:
        for e in started:
            kill(e)
            # shown by pytest only when the test failed
            print(f"--- {e.log.name} (exit {e.proc.returncode}) ---\n{e.stderr()}")


@pytest.fixture
async def engine(engine_factory: Callable[..., Engine]) -> Engine:
    """A registered engine."""
    e = engine_factory()
    await e.register()
    return e

"""Lightweight simulated engines that speak ipcluster's real wire protocol (``docs/protocol.md``).

Many engines share one process and one asyncio loop (``zmq.asyncio``). Each has its own DEALER
on the controller's engine port, with its uuid as identity, registers with a signed
``registration_request``, echoes heartbeats on a pong DEALER of the same identity, and answers
``apply_request`` by unpickling the function and arguments, calling it, and replying with a
signed ``apply_reply`` carrying the pickled result and the reply metadata engines send. No
IPython, no output capture: what is left is the controller's work per engine and per task.

``python -m benchmarks.simengine --connection FILE --n N``: prepares, waits for a line ``go`` on
stdin, then creates and registers the N engines and prints one JSON line
``{"registered": N, "seconds": t, "ids": [...]}``; it serves tasks until stdin closes, then
unregisters every engine and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
import uuid
from typing import Any

import zmq
import zmq.asyncio

from ipcluster.protocol.connection import read_connection_file, url
from ipcluster.protocol.serialize import serialize_object, unpack_apply
from ipcluster.protocol.session import Session


class SimEngine:
    __slots__ = ("sim", "uuid", "sock", "pong", "id")

    def __init__(self, sim: "Simulator") -> None:
        self.sim = sim
        self.uuid = uuid.uuid4().hex.encode()
        self.id = -1
        ctx, info = sim.ctx, sim.info
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.IDENTITY, self.uuid)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(url(info, "engine_port"))
        self.pong = ctx.socket(zmq.DEALER)
        self.pong.setsockopt(zmq.IDENTITY, self.uuid)
        self.pong.setsockopt(zmq.LINGER, 0)
        self.pong.connect(url(info, "hb_pong_port"))

    async def register(self) -> int:
        s = self.sim.session
        _, frames = s.serialize("registration_request",
                                {"uuid": self.uuid.decode(), "hostname": socket.gethostname(), "pid": os.getpid()})
        await self.sock.send_multipart(frames)
        _, msg = s.unpack(await self.sock.recv_multipart())
        content = msg["content"]
        if msg["msg_type"] != "registration_reply" or content.get("status") != "ok":
            raise RuntimeError(f"registration refused: {content}")
        self.id = int(content["id"])
        return self.id

    async def serve(self) -> None:
        while True:
            frames = await self.sock.recv_multipart()
            for idents, msg in self.sim.session.unpack_all(frames):  # the controller batches under load
                if not await self._handle(idents, msg):
                    return

    async def _handle(self, idents: list[bytes], msg: Any) -> bool:
        """Answer one request the way an engine would; False on shutdown."""
        s = self.sim.session
        msg_type = msg["msg_type"]
        if msg_type == "apply_request":
            started = time.time()
            try:
                f, args, kwargs = unpack_apply(msg["buffers"])
                bufs = serialize_object(f(*args, **kwargs))
                content, status = {"status": "ok"}, "ok"
            except Exception as e:  # report it the way an engine would
                bufs, status = [], "error"
                content = {"status": "error", "ename": type(e).__name__, "evalue": str(e), "traceback": ""}
            md = {"engine_id": self.id, "engine_uuid": self.uuid.decode(), "started": started,
                  "completed": time.time(), "iopub_count": 0, "status": status}
            _, out = s.serialize("apply_reply", content, msg["header"], md, bufs, idents=idents)
            await self.sock.send_multipart(out)
        elif msg_type == "shutdown_request":
            return False
        # abort_request and anything else: nothing queued here to act on
        return True

    async def unregister(self) -> None:
        _, frames = self.sim.session.serialize("unregistration_request", {"id": self.id})
        await self.sock.send_multipart(frames)

    def close(self) -> None:
        self.sock.close(0)
        self.pong.close(0)


class Simulator:
    def __init__(self, info: dict[str, Any], n: int) -> None:
        self.info = info
        self.n = n
        self.session = Session(info["key"].encode(), username="simengine")
        self.ctx = zmq.asyncio.Context()
        self.ctx.set(zmq.MAX_SOCKETS, max(1024, 2 * n + 64))
        self.engines: list[SimEngine] = []

    async def heartbeat(self) -> None:
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.LINGER, 0)
        sub.connect(url(self.info, "hb_ping_port"))
        try:
            while True:
                ping = await sub.recv()
                for e in self.engines:
                    if e.id >= 0:
                        e.pong.send(ping, zmq.NOBLOCK)
        finally:
            sub.close(0)

    async def run(self, go: asyncio.Event, stop: asyncio.Event) -> None:
        hb = asyncio.create_task(self.heartbeat())
        await go.wait()
        t0 = time.perf_counter()
        self.engines = [SimEngine(self) for _ in range(self.n)]
        ids = await asyncio.gather(*(e.register() for e in self.engines))
        elapsed = time.perf_counter() - t0
        print(json.dumps({"registered": len(ids), "seconds": elapsed, "ids": ids}), flush=True)
        servers = [asyncio.create_task(e.serve()) for e in self.engines]
        await stop.wait()
        for t in servers:
            t.cancel()
        hb.cancel()
        for e in self.engines:
            await e.unregister()
        await asyncio.sleep(0.05)  # let ZeroMQ hand the unregistrations to the kernel
        for e in self.engines:
            e.close()
        self.ctx.term()


async def _main(args: argparse.Namespace) -> None:
    info = read_connection_file(args.connection, "engine")
    sim = Simulator(info, args.n)
    go, stop = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_stdin() -> None:
        line = sys.stdin.readline()
        if line.strip() == "go":
            go.set()
        elif not line:  # EOF: the harness is done with us
            loop.remove_reader(sys.stdin.fileno())
            go.set()
            stop.set()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    await sim.run(go, stop)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.simengine")
    p.add_argument("--connection", required=True, help="the controller's engine connection file")
    p.add_argument("--n", type=int, default=256, help="engines in this process")
    asyncio.run(_main(p.parse_args(argv)))


if __name__ == "__main__":
    main()

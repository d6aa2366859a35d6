"""A real controller under hostile input on its TCP ports: floods of garbage, unsigned and
wrong-key messages, oversized frames.

The controller runs as its own process (``python -m ipcluster.controller``), its log going to a
file, so that what a flood costs in log bytes and memory is measured on the real thing.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq

import ipcluster as ipp
from ipcluster.protocol.connection import write_private_json
from ipcluster.protocol.session import BATCH, DELIM, Session, auth_error

WAIT = 20.0


class Controller:
    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.profile = tmp_path / "profile"
        self.log = tmp_path / "controller.log"
        self._out = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ipcluster.controller", f"--profile-dir={self.profile}", "--ip=127.0.0.1",
             "--ControllerApp.ipc=False", *args], stdout=self._out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        client_file = self.profile / "security" / "ipcontroller-client.json"
        deadline = time.monotonic() + WAIT
        engine_file = self.profile / "security" / "ipcontroller-engine.json"
        while not (client_file.exists() and engine_file.exists()):  # bounded: its start-up (files move in whole)
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "the controller did not start"
            time.sleep(0.05)
        self.client_file = client_file
        self.client_info = json.loads(client_file.read_text())
        self.engine_info = json.loads(engine_file.read_text())
        self.key = self.client_info["key"].encode()
        self.ps = psutil.Process(self.proc.pid)
        self.ctx = zmq.Context()
        self.sockets: list[zmq.Socket] = []

    def url(self, info: dict[str, Any], port: str) -> str:
        return f"tcp://127.0.0.1:{info[port]}"

    def dealer(self, port: str) -> zmq.Socket:
        info = self.client_info if port == "client_port" else self.engine_info
        s = self.ctx.socket(zmq.DEALER)
        s.linger = 0
        s.rcvtimeo = int(WAIT * 1000)
        s.connect(self.url(info, port))
        self.sockets.append(s)
        return s

    def stop(self) -> None:
        for s in self.sockets:
            s.close(0)
        self.ctx.term()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._out.close()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    started: list[Controller] = []

    def start(*args: str) -> Controller:
        started.append(Controller(tmp_path, *args))
        return started[-1]

    try:
        yield start
    finally:
        for c in started:
            c.stop()


def garbage(rng: random.Random, key: bytes) -> list[bytes]:
    """One hostile message of a random shape."""
    kind = rng.randrange(10)
    def junk(n: int = 200) -> bytes:
        return rng.randbytes(rng.randrange(n))
    if kind == 0:  # random frames
        return [junk() for _ in range(rng.randrange(1, 8))]
    if kind == 1:  # the delimiters in odd places
        frames = [junk(40) for _ in range(rng.randrange(0, 6))]
        for _ in range(rng.randrange(1, 3)):
            frames.insert(rng.randrange(len(frames) + 1), rng.choice([DELIM, BATCH]))
        return frames
    if kind == 2:  # a batch of junk packets
        return [BATCH, *(junk(300) for _ in range(rng.randrange(0, 20)))]
    if kind == 3:  # a table that claims huge lengths
        table = struct.pack("<IIIIHH", *(rng.choice([0xFFFFFFFF, 1 << 30, 7]) for _ in range(4)), 0xFFFF, 0xFFFF)
        return [DELIM, rng.randbytes(32) + table + junk(), *(junk() for _ in range(rng.randrange(3)))]
    if kind == 4:  # non-UTF-8, JSON that is not an object, in the old frame-per-part layout
        return [DELIM, junk(64), rng.choice([b"\xff\xfe\xfd", b"[1, 2]", b"null", b'"x"', b"1e999"]), b"{}", b"{}"]
    if kind == 5:  # well-formed but unsigned, or signed with another key
        session = Session(rng.choice([b"", b"wrong", key[:-1]]))
        msg_type = rng.choice(["apply_request", "shutdown_request", "execute_request", "registration_request"])
        return session.serialize(msg_type, {"code": "1"}, buffers=[junk()])[1]
    if kind == 6:  # a genuine message cut short or altered after signing
        frames = Session(key).serialize("apply_request", {}, buffers=[b"x" * 100])[1]
        packet = frames[1]
        cut = rng.randrange(len(packet))
        altered = packet[:cut] + bytes([packet[cut] ^ (1 << rng.randrange(8))]) + packet[cut + 1:]  # one bit flipped
        return [DELIM, packet[:cut] if rng.random() < 0.5 else altered]
    if kind == 7:  # empty frames
        return [b""] * rng.randrange(1, 5)
    if kind == 8:  # a packet of JSON that is not an object
        body = b"[]" * rng.randrange(1, 50)
        return [DELIM, bytes(32) + body]
    return [rng.choice([DELIM, BATCH])]  # a delimiter alone


def sync(sock: zmq.Socket, frames: list[bytes], key: bytes, want: str) -> None:
    """Send a signed message after the flood and wait for its answer: the flood is behind it."""
    session = Session(key)
    sock.send_multipart(frames)
    while True:
        got = sock.recv_multipart()
        if auth_error(got):
            continue
        try:
            _, msg = session.unpack(got)
        except ipp.error.ProtocolError:
            continue
        if msg["msg_type"] == want:
            return


def test_a_flood_of_hostile_messages_costs_little_log_and_memory(start: Any) -> None:
    controller = start()
    rng = random.Random(13)
    client_sock = controller.dealer("client_port")
    engine_sock = controller.dealer("engine_port")
    sync(client_sock, Session(controller.key).serialize("connection_request")[1], controller.key, "connection_reply")
    rss0 = controller.ps.memory_info().rss
    log0 = controller.log.stat().st_size
    n = 100_000
    t0 = time.perf_counter()
    for i in range(n):
        (client_sock if i % 2 else engine_sock).send_multipart(garbage(rng, controller.key))
    # a signed request behind each half of the flood: answered, so the flood has been handled
    sync(client_sock, Session(controller.key).serialize("connection_request")[1], controller.key, "connection_reply")
    register = Session(controller.key).serialize("registration_request", {"uuid": "probe", "hostname": "h", "pid": 1})
    sync(engine_sock, register[1], controller.key, "registration_reply")
    elapsed = time.perf_counter() - t0
    rss = controller.ps.memory_info().rss
    log_bytes = controller.log.stat().st_size - log0
    print(f"\n{n} hostile messages in {elapsed:.2f} s; log grew {log_bytes} bytes "
          f"({log_bytes / n:.2f} per message); controller RSS {rss0 >> 20} -> {rss >> 20} MiB")
    text = controller.log.read_text(errors="replace")
    assert "Traceback" not in text
    assert log_bytes < 20_000, text[-3000:]
    # what ZeroMQ has read and the controller not yet handled waits in memory: about 50 MiB here
    assert rss - rss0 < 128 << 20
    # the controller still serves a real client, and none of it made a task
    rc = ipp.Client(str(controller.client_file), timeout=10)
    try:
        assert rc.hub_history() == []
        assert rc.queue_status()["unassigned"] == 0
    finally:
        rc.close()
    assert controller.proc.poll() is None


def test_an_oversized_frame_drops_the_peer_not_the_controller(start: Any) -> None:
    controller = start("--ControllerApp.max_client_frame_bytes=1048576")
    key = controller.key
    big = controller.dealer("client_port")
    sync(big, Session(key).serialize("connection_request")[1], key, "connection_reply")
    rss0 = controller.ps.memory_info().rss
    payload = os.urandom(1 << 20) * 64  # 64 MiB, in one frame
    for _ in range(4):
        big.send_multipart([DELIM, payload], copy=False)
    small = controller.dealer("client_port")  # another connection is served
    sync(small, Session(key).serialize("connection_request")[1], key, "connection_reply")
    big.rcvtimeo = 500
    with pytest.raises(zmq.Again):  # nothing answers the dropped peer
        big.recv_multipart()
    assert controller.ps.memory_info().rss - rss0 < 32 << 20
    # a client learns the limit, and refuses a larger buffer with a clear error before sending
    rc = ipp.Client(str(controller.client_file), timeout=10)
    try:
        with pytest.raises(ipp.error.SerializationError, match="max_client_frame_bytes"):
            rc.load_balanced_view().apply_async(len, b"x" * (2 << 20))
    finally:
        rc.close()
    assert controller.proc.poll() is None


def test_the_default_limits_take_a_100_mb_push_through_the_controller(rc: ipp.Client) -> None:
    """A load-balanced task has no target engine, so its buffers cross the controller whatever the host."""
    payload = b"x" * (100 << 20)
    assert rc.load_balanced_view().apply_sync(len, payload) == len(payload)


def run_engine(path: Path, timeout: float = WAIT) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "ipcluster.engine", f"--file={path}"], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stderr + proc.stdout, time.monotonic() - t0


def test_key_problems_are_refused_at_once_and_say_why(start: Any, tmp_path: Path) -> None:
    controller = start()
    info = controller.client_info
    # an empty key in a client file
    empty = write_private_json(tmp_path / "empty.json", {**info, "key": ""})
    t0 = time.monotonic()
    with pytest.raises(ipp.error.ConnectionFileError, match=f"{empty} has an empty key"):
        ipp.Client(str(empty), timeout=30)
    with pytest.raises(ipp.error.ConnectionFileError, match="the given connection_info has an empty key"):
        ipp.Client(connection_info={**info, "key": ""}, timeout=30)
    # a client file others can read
    shared = write_private_json(tmp_path / "shared.json", info)
    os.chmod(shared, 0o644)
    with pytest.raises(ipp.error.ConnectionFileError, match=f"readable by others.*chmod 600 {shared}"):
        ipp.Client(str(shared), timeout=30)
    assert time.monotonic() - t0 < 5
    # an engine with the wrong key learns it from the controller and exits
    wrong = write_private_json(tmp_path / "wrong.json", {**controller.engine_info, "key": "not-the-key"})
    code, out, wrong_took = run_engine(wrong)
    assert code != 0 and "refused our signature" in out and "engine's key does not match" in out, out
    assert wrong_took < 10
    # an engine file others can read
    readable = write_private_json(tmp_path / "readable.json", controller.engine_info)
    os.chmod(readable, 0o644)
    code, out, took = run_engine(readable)
    assert code != 0 and "chmod 600" in out, out
    assert took < 10
    print(f"\nengine with a wrong key exited in {wrong_took:.2f} s, with a readable file in {took:.2f} s")


def test_only_signed_engine_output_reaches_clients(start: Any) -> None:
    controller = start()
    sub = controller.ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.rcvtimeo = int(WAIT * 1000)
    sub.subscribe(b"")
    sub.connect(controller.url(controller.client_info, "iopub_port"))
    controller.sockets.append(sub)
    while sub.recv_multipart()[0] != b"controller.iopub_welcome":  # output published from now on reaches us
        pass
    pub = controller.ctx.socket(zmq.PUB)
    pub.linger = 0
    pub.connect(controller.url(controller.engine_info, "iopub_port"))
    controller.sockets.append(pub)
    topic = [b"engine.0.stream"]
    def stream(key: bytes, text: str) -> list[bytes]:
        return Session(key).serialize("stream", {"name": "stdout", "text": text}, idents=topic)[1]
    forged = [stream(b"", "unsigned"), stream(b"wrong", "wrong key"), [*topic, DELIM, b"\0" * 80]]
    sub.rcvtimeo = 50
    got = None
    while got is None:  # a PUB drops what it sends before its connection is up: until one arrives
        for frames in forged:
            pub.send_multipart(frames)
        pub.send_multipart(stream(controller.key, "genuine"))
        try:
            got = sub.recv_multipart()
        except zmq.Again:
            pass
    assert b"genuine" in got[-1]
    sub.rcvtimeo = 300
    with pytest.raises(zmq.Again):  # and nothing else came through
        while True:
            assert b"genuine" in sub.recv_multipart()[-1]
    assert "iopub engine port refused" in controller.log.read_text()


def test_a_flood_at_an_engines_data_channel_costs_little_log_and_memory(tmp_path: Path) -> None:
    """An engine listens on one socket of its own, its data channel (a Unix socket in the
    controller's private folder): 100,000 junk messages there leave it serving, its memory
    bounded (MAX_UNCLAIMED buffer sets at most) and its log a few lines longer."""
    cluster = ipp.Cluster(n=1, profile_dir=str(tmp_path / "profile"), log_level="WARN")
    rc = cluster.start_and_connect_sync()
    ctx = zmq.Context()
    try:
        rc.wait_for_engines(1, timeout=WAIT)
        [info] = rc._io.engine_info.values()
        url, pid = info["data_url"], info["pid"]
        assert url.startswith("ipc://")
        engine = psutil.Process(pid)
        assert rc[0].apply_sync(lambda: 1) == 1
        [log_file] = cluster.log_dir.glob("engines-*.log")
        log0, rss0 = log_file.stat().st_size, engine.memory_info().rss
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(url)
        rng = random.Random(7)
        shapes = [
            lambda: [rng.randbytes(rng.randrange(40))],  # too few frames
            lambda: [rng.randbytes(16), rng.randbytes(rng.randrange(200))],  # buffers nobody asked for
            lambda: [b"shm:" + rng.randbytes(8), b"../../etc/passwd", rng.randbytes(8)],  # not a file of ours
            lambda: [b"shm:x", b"buf-" + b"0" * 32, b"\xff" * 8],  # claims an absurd size
            lambda: [b""] * rng.randrange(2, 6),
        ]
        n = 100_000
        for i in range(n):
            sock.send_multipart(shapes[i % len(shapes)]())
        sock.send_multipart([b"flood-marker", b"x"])  # behind the flood in the same pipe
        deadline = time.monotonic() + WAIT
        while not rc[0].apply_sync(_data_channel_has, "flood-marker"):  # a bounded poll: no event
            assert time.monotonic() < deadline, "the engine never drained its data channel"
        rss = engine.memory_info().rss
        log_bytes = log_file.stat().st_size - log0
        text = log_file.read_text(errors="replace")
        print(f"\n{n} junk messages at the engine's data channel: log grew {log_bytes} bytes, "
              f"engine RSS {rss0 >> 20} -> {rss >> 20} MiB")
        assert "Traceback" not in text
        assert log_bytes < 20_000, text[-3000:]
        assert rss - rss0 < 96 << 20  # about 40 MiB here: ZeroMQ's buffers and MAX_UNCLAIMED junk sets
        assert rc[0].apply_sync(lambda: "still serving") == "still serving"
        sock.close(0)
    finally:
        ctx.term()
        rc.close()
        cluster.stop_cluster_sync()


def _data_channel_has(msg_id: str) -> bool:
    """On the engine: whether buffers of ``msg_id`` wait in its data channel's inbox."""
    from ipcluster.engine.app import EngineApp

    kernel = EngineApp.instance()._kernel
    return kernel is not None and kernel.data is not None and kernel.data.has(msg_id)

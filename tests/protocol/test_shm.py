"""Large results through shared memory (ipcluster.protocol.shm), and the data channel's use of it
between two real ROUTER sockets on a Unix socket."""

from __future__ import annotations

import logging
import os
import stat
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from ipcluster.protocol import data as datamod
from ipcluster.protocol import shm
from ipcluster.protocol.data import SHM, DataChannel

log = logging.getLogger("test")
MB = 1 << 20


def test_write_then_take_maps_the_bytes_and_leaves_no_file(tmp_path: Path) -> None:
    folder = shm.make_folder(str(tmp_path))
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    a = np.arange(MB // 8, dtype=np.float64)
    tail = b"xyz" * 1000
    name = shm.write(folder, [memoryview(a).cast("B"), tail])
    assert stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) == 0o600
    views = shm.take(folder, name, [a.nbytes, len(tail)])
    assert os.listdir(folder) == []  # unlinked as soon as it was mapped
    got = np.frombuffer(views[0], dtype=np.float64)
    assert (got == a).all() and bytes(views[1]) == tail
    got[0] = -1.0  # the receiver's own copy-on-write pages
    assert got[0] == -1.0 and a[0] == 0.0


def test_take_refuses_what_the_sender_did_not_announce(tmp_path: Path) -> None:
    folder = shm.make_folder(str(tmp_path))
    (Path(folder) / "other").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a shared-memory buffer name"):
        shm.take(folder, "../other", [1])
    with pytest.raises(ValueError, match="not a shared-memory buffer name"):
        shm.take(folder, "other", [1])
    name = shm.write(folder, [b"abcd"])
    with pytest.raises(ValueError, match="4 bytes where 5 were announced"):
        shm.take(folder, name, [5])
    assert sorted(os.listdir(folder)) == ["other"]  # the bad file went too
    with pytest.raises(FileNotFoundError):
        shm.take(folder, name, [4])


def test_no_folder_without_a_usable_base(tmp_path: Path) -> None:
    assert shm.make_folder("") == ""
    assert shm.make_folder(str(tmp_path / "missing")) == ""
    assert shm.has_room(str(tmp_path), 1) and not shm.has_room(str(tmp_path), 1 << 62)
    assert not shm.has_room(str(tmp_path / "missing"), 1)


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def pair(ctx: zmq.Context, sockets: Path, shm_dir: str) -> tuple[DataChannel, DataChannel]:
    """An engine's end that writes to ``shm_dir`` and a client's end connected to it."""
    engine = DataChannel(ctx, "engine", log, shm_dir, write_shm=True)
    engine.bind(str(sockets), "engine")
    client = DataChannel(ctx, "client", log, shm_dir)
    monitor = client.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    client.sock.connect(engine.url)
    assert monitor.poll(10_000), "no handshake"
    monitor.close(linger=0)
    # Each end learns the other's routing id in its own time: a ROUTER can address its peer once
    # a message from it has come through. The client's end may also need a moment after the
    # handshake event, so it retries (a send that finds no peer is refused, never queued).
    deadline = time.monotonic() + 10
    while client.send(b"engine", "hello", [b"hi"]) is None:
        assert time.monotonic() < deadline, "the client's end never reached the engine's"
        client.sock.poll(5)
    assert arrive(engine) == ["hello"] and engine.take("hello") is not None
    return engine, client


def arrive(channel: DataChannel) -> list[str]:
    assert channel.sock.poll(10_000), "nothing arrived"
    return channel.drain()


def test_an_engine_end_sends_large_buffers_as_a_file(ctx: zmq.Context, tmp_path: Path) -> None:
    folder = shm.make_folder(str(tmp_path))
    engine, client = pair(ctx, tmp_path, folder)
    try:
        a = np.random.default_rng(0).random(MB // 4)
        assert engine.send(b"client", "m-1", [memoryview(a).cast("B"), b"\1" * MB]) is True
        assert len(os.listdir(folder)) == 1
        assert arrive(client) == ["m-1"]
        assert os.listdir(folder) == []
        bufs = client.take("m-1")
        assert bufs is not None and (np.frombuffer(bufs[0]) == a).all() and bytes(bufs[1]) == b"\1" * MB
        # the client's end does not write files: its buffers travel over the socket
        assert client.send(b"engine", "r-1", [b"\2" * MB]) is True and os.listdir(folder) == []
        assert arrive(engine) == ["r-1"]
        assert [bytes(b) for b in engine.take("r-1") or ()] == [b"\2" * MB]
    finally:
        engine.close()
        client.close()


def test_without_a_usable_folder_the_socket_carries_them(ctx: zmq.Context, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_bytes(b"")
    engine, client = pair(ctx, tmp_path, str(not_a_folder))
    try:
        assert engine.send(b"client", "m-1", [b"\3" * MB]) is True  # the write failed: ENOTDIR
        assert not engine.write_shm  # and it stops trying
        assert arrive(client) == ["m-1"]
        assert [bytes(b) for b in client.take("m-1") or ()] == [b"\3" * MB]
    finally:
        engine.close()
        client.close()


def test_unclaimed_files_are_removed_and_refused_names_dropped(
    ctx: zmq.Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = shm.make_folder(str(tmp_path))
    engine, client = pair(ctx, tmp_path, folder)
    try:
        monkeypatch.setattr(datamod, "TTL", -1.0)  # expired as soon as sent
        assert engine.send(b"client", "m-1", [b"\4" * MB]) is True
        engine.expire()
        assert os.listdir(folder) == []
        assert arrive(client) == [] and not client.has("m-1")
        assert "the buffers of m-1 from shared memory" in caplog.text
        engine.sock.send_multipart([b"client", SHM + b"m-2", b"../escape", struct.pack("<Q", 1)])
        assert arrive(client) == [] and "not a shared-memory buffer name" in caplog.text
    finally:
        engine.close()
        client.close()

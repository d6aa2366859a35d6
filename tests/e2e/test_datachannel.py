"""The direct data channel: large buffers between a client and an engine on one host skip the
controller (see ipcluster.protocol.data), in order with everything else, and fail clearly."""

from __future__ import annotations

import json
import mmap
import stat
import time
from pathlib import Path

import numpy as np
import pytest

import ipcluster as ipp
from ipcluster import error
from ipcluster.protocol import data as datamod

from .conftest import start, stop

MB = 1 << 20


def controller_peak_kb(cluster: ipp.Cluster) -> int:
    pid = json.loads(cluster.connection_file("client").read_text())["pid"]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_large_buffers_go_straight_to_the_engine_and_back(tmp_path: Path) -> None:
    cluster, rc = start(tmp_path)
    try:
        assert set(rc._io.data.peers) == {0, 1}
        assert all(info["data_url"].startswith("ipc://") for info in rc.engine_info.values())
        a = np.random.default_rng(1).random(8 * MB)  # 64 MB
        before = controller_peak_kb(cluster)
        push = rc[0].push({"a": a}, block=False, track=True)
        push.get(timeout=30)
        assert push.sent
        b = rc[0].pull("a", block=True)
        assert (b == a).all() and b.flags.writeable
        rc[:].scatter("s", a, block=True)
        assert (rc[:].gather("s", block=True) == a).all()
        assert controller_peak_kb(cluster) - before < 16 * 1024  # it never held the 64 MB
        # the controller recorded the tasks but kept neither the request's nor the result's buffers
        with pytest.raises(error.ControllerError, match="sent straight to its engine"):
            rc.resubmit(push.msg_ids, block=True)
        pull = rc[0].pull("a", block=False)
        pull.get(timeout=30)
        other = ipp.Client(url_file=str(cluster.connection_file("client")))
        try:
            with pytest.raises(error.IPClusterError, match="delivered straight to its client"):
                other.get_result(pull.msg_ids[0]).get(timeout=10)
        finally:
            other.close()
        small = rc[0].apply_sync(lambda x: x, np.ones(1000))  # under 1 MiB: through the controller
        assert small.sum() == 1000
    finally:
        stop(cluster, rc)


def mapped(a: np.ndarray) -> bool:
    """Whether an array lives in memory mapped from a shared-memory file (protocol.shm)."""
    base: object = a
    while getattr(base, "base", None) is not None:
        base = base.base  # type: ignore[attr-defined]
    return isinstance(getattr(base, "obj", None), mmap.mmap)


def test_large_results_are_handed_over_in_shared_memory(tmp_path: Path) -> None:
    folder = tmp_path / "shm"
    folder.mkdir()
    cluster, rc = start(tmp_path, n=1, controller_args=[f"--ControllerApp.shm_dir={folder}"])
    try:
        info = json.loads(cluster.connection_file("engine").read_text())
        own = Path(info["shm"])
        assert own.parent == folder and stat.S_IMODE(own.stat().st_mode) == 0o700
        assert json.loads(cluster.connection_file("client").read_text())["shm"] == str(own)
        a = np.random.default_rng(2).random(MB)  # 8 MB
        rc[0].push({"a": a}, block=True)
        # The engine can address the client on the data channel once their connection's handshake
        # is through (until then results come over the socket, as designed): ask until it is.
        deadline = time.monotonic() + 30
        while not mapped(b := rc[0].pull("a", block=True)):
            assert time.monotonic() < deadline, "results never came through shared memory"
        assert (b == a).all() and b.flags.writeable
        b[0] = -1.0  # the client's own copy: the engine's array is untouched
        assert rc[0].apply_sync(lambda: float(a[0])) == a[0]  # noqa: F821
        assert list(own.iterdir()) == []  # the client unlinked the file when it mapped it
        small = rc[0].apply_sync(lambda: a[:4].copy())  # noqa: F821
        assert (small == a[:4]).all() and not mapped(small)  # under 1 MiB: inline, as before
    finally:
        stop(cluster, rc)
    assert not own.exists() and folder.is_dir()  # the controller removed its own folder only


def test_without_shared_memory_results_come_over_the_socket(tmp_path: Path) -> None:
    cluster, rc = start(tmp_path, n=1, controller_args=["--ControllerApp.shm_dir="])
    try:
        assert "shm" not in json.loads(cluster.connection_file("engine").read_text())
        a = np.arange(MB, dtype=np.float64)
        rc[0].push({"a": a}, block=True)
        b = rc[0].pull("a", block=True)
        assert (b == a).all() and not mapped(b)
    finally:
        stop(cluster, rc)


def test_order_is_kept_across_the_two_paths(tmp_path: Path) -> None:
    """A non-blocking push (buffers over the data channel) and the calls after it (through the
    controller) run in the order they were made."""
    cluster, rc = start(tmp_path, n=1)
    try:
        e0 = rc[0]
        ars = []
        for i in range(20):
            e0.push({"x": np.full(MB // 4, float(i))}, block=False)  # 2 MB
            ars.append(e0.apply_async(lambda: float(x[0])))  # noqa: F821
        assert [ar.get(timeout=30) for ar in ars] == [float(i) for i in range(20)]
    finally:
        stop(cluster, rc)


def test_without_a_data_channel_everything_goes_through_the_controller(tmp_path: Path) -> None:
    cluster, rc = start(tmp_path, n=1, engine_args=["--EngineApp.data_channel=False"])
    try:
        assert rc._io.data.peers == {} and "data_url" not in rc.engine_info[0]
        a = np.arange(4 * MB, dtype=np.float64)  # 32 MB
        before = controller_peak_kb(cluster)
        rc[0].push({"a": a}, block=True)
        assert (rc[0].pull("a", block=True) == a).all()
        assert controller_peak_kb(cluster) - before > 30 * 1024  # the controller carried it
    finally:
        stop(cluster, rc)


def test_buffers_that_never_reach_the_engine_fail_their_request_only(tmp_path: Path) -> None:
    cluster, rc = start(tmp_path, n=1, engine_args=["--Kernel.data_wait=0.5"])
    try:
        io = rc._io
        real = io.data.send
        io.data.send = lambda eid, msg_id, frames, track: True  # says sent, sends nothing
        try:
            lost = rc[0].push({"a": np.ones(MB)}, block=False)
        finally:
            io.data.send = real
        after = rc[0].apply_async(lambda: 5)  # queued behind it: waits, then runs
        with pytest.raises(error.RemoteError, match="never arrived over the data channel"):
            lost.get(timeout=30)
        assert after.get(timeout=30) == 5
        assert rc[0].apply_sync(lambda: 6) == 6
    finally:
        stop(cluster, rc)


def test_result_buffers_that_never_reach_the_client_fail_that_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster, rc = start(tmp_path, n=1)
    try:
        monkeypatch.setattr(datamod, "DATA_WAIT", 0.3)
        channel = rc._io.data.channel
        drain = channel.drain

        def lossy() -> list[str]:  # the buffers arrive and are lost
            for msg_id in drain():
                channel.take(msg_id)
            return []

        rc[0].push({"a": np.ones(MB)}, block=True)
        channel.drain = lossy
        with pytest.raises(error.ProtocolError, match="never arrived over the data channel"):
            rc[0].pull("a", block=False).get(timeout=30)
        channel.drain = drain
        monkeypatch.setattr(datamod, "DATA_WAIT", 30.0)  # the next reply waits as long as it must
        assert rc[0].pull("a", block=True).sum() == MB
    finally:
        stop(cluster, rc)

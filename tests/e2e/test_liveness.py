"""Liveness with real processes: a hung controller, a cluster without engines, a killed client."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ipcluster as ipp
from ipcluster import error

from .conftest import start, stop

#: the client's heartbeat in these tests: a hung controller is noticed after about 0.8 s
PERIOD, MISSES = 0.2, 3


def controller_pid(cluster: ipp.Cluster) -> int:
    return json.loads(cluster.connection_file("client").read_text())["pid"]


def client_of(cluster: ipp.Cluster, **kw) -> ipp.Client:
    return ipp.Client(url_file=str(cluster.connection_file("client")), controller_hb_period=PERIOD,
                      controller_hb_misses=MISSES, **kw)


def test_hung_controller_fails_pending_results_then_recovers(own) -> None:
    cluster, rc = own
    client = client_of(cluster)
    pid = controller_pid(cluster)
    try:
        ar = client[0].apply_async(time.sleep, 30)
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            with pytest.raises(error.ControllerError, match=r"has not answered for [\d.]+ s \(\d+ heartbeats\): "
                                                            r"it is hung or unreachable"):
                ar.get()  # no timeout of its own: the client's liveness ends it
            elapsed = time.monotonic() - t0
            bound = PERIOD * (MISSES + 1)
            assert elapsed < 3 * bound, f"noticed after {elapsed:.2f} s (bound {bound:.2f} s)"
            print(f"SIGSTOP to ControllerError: {elapsed:.2f} s (bound {bound:.2f} s)")
            with pytest.raises(error.ControllerError, match="hung"):  # refused while it is silent
                client[1].apply_async(os.getpid)
        finally:
            os.kill(pid, signal.SIGCONT)
        # it answers again: new requests go through (a bounded poll: recovery shows only in use)
        deadline = time.monotonic() + 10
        while True:
            try:
                assert client[1].apply_sync(lambda: "back") == "back"
                break
            except error.ControllerError:
                assert time.monotonic() < deadline, "the client did not recover"
                time.sleep(PERIOD)  # the poll's interval: the next ping's answer ends it
    finally:
        client.close()


@pytest.fixture
def no_engines(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[ipp.Cluster, ipp.Client]]:
    cluster, rc = start(tmp_path, n=0, controller_args=["--hb-period=0.2",
                                                        f"--ControllerApp.engine_timeout={request.param}"])
    try:
        yield cluster, rc
    finally:
        stop(cluster, rc)


@pytest.mark.parametrize("no_engines", [1.0], indirect=True)
def test_balanced_map_without_engines_warns_then_fails(no_engines) -> None:
    cluster, rc = no_engines
    view = rc.load_balanced_view()
    with pytest.warns(error.NoEnginesWarning, match=r"no engines are registered.*within 1 s"):
        amr = view.map_async(abs, [-1, -2, -3])
    t0 = time.monotonic()
    ar = view.apply_async(abs, -4)
    with pytest.raises(error.NoEnginesError, match="engine_timeout"):
        amr.get(timeout=15)
    assert time.monotonic() - t0 < 3 * (1.0 + 0.2)
    with pytest.raises(error.NoEnginesError, match="engine_timeout"):
        ar.get(timeout=15)
    assert rc.queue_status()["unassigned"] == 0


@pytest.mark.parametrize("no_engines", [30.0], indirect=True)
def test_balanced_task_runs_when_an_engine_registers_in_time(no_engines) -> None:
    cluster, rc = no_engines
    ar = rc.load_balanced_view().apply_async(lambda: "ran")  # told in a log line, not a warning per task
    assert rc.queue_status()["unassigned"] == 1
    cluster.start_engines_sync(1)
    assert ar.get(timeout=30) == "ran"


KILLED_CLIENT = """
import sys, time
import ipcluster as ipp
rc = ipp.Client(url_file=sys.argv[1], controller_hb_period=0.2)
amr = rc.load_balanced_view().map_async(time.sleep, [0.5] * 20_000, chunksize=1)
print(rc.queue_status()["unassigned"], flush=True)  # answered after every task reached the controller
time.sleep(300)
"""


def test_a_killed_clients_queue_is_dropped_and_others_run(tmp_path: Path) -> None:
    cluster, rc = start(tmp_path, controller_args=["--hb-period=0.2", "--ControllerApp.client_timeout=1"])
    proc = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, str(cluster.connection_file("client"))],
                            stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 40)
        assert ready and proc.stdout is not None, "the other client did not queue its tasks in time"
        queued = int(proc.stdout.readline())
        before = rc.queue_status()["unassigned"]
        assert queued > 19_000 and before > 19_000
        proc.kill()
        proc.wait(10)
        t0 = time.monotonic()
        assert rc.load_balanced_view().apply_sync(lambda: "mine") == "mine"  # no 20,000 tasks to wait behind
        elapsed = time.monotonic() - t0
        after = rc.queue_status()["unassigned"]
        print(f"killed client: unassigned {before} before, {after} after; another client's apply took {elapsed:.2f} s")
        assert elapsed < 10 and after == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
        stop(cluster, rc)


def test_a_closed_clients_queue_is_dropped_at_once(own) -> None:
    cluster, rc = own
    leaving = client_of(cluster)
    leaving.load_balanced_view().map_async(time.sleep, [0.5] * 500, chunksize=1)
    assert leaving.queue_status()["unassigned"] > 400
    leaving.close()
    t0 = time.monotonic()
    assert rc.load_balanced_view().apply_sync(lambda: "mine") == "mine"
    assert time.monotonic() - t0 < 5
    assert rc.queue_status()["unassigned"] == 0

"""Failures with real processes: killed engines and controllers, interrupts, bad keys."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

import ipcluster as ipp
from ipcluster import error
from ipcluster.protocol.connection import write_private_json


def test_killed_engine_fails_its_tasks_and_the_client_is_told(own) -> None:
    cluster, rc = own
    cluster.restart_engines_on_death = False  # see test_supervision.py for what happens by default
    pids = rc[:].apply_sync(os.getpid)
    ar = rc[1].apply_async(time.sleep, 30)
    os.kill(pids[1], signal.SIGKILL)
    with pytest.raises(error.EngineError):
        ar.get(timeout=15)  # hb_period 0.2 s: noticed within a second or so
    deadline = time.monotonic() + 10
    while rc.ids != [0] and time.monotonic() < deadline:
        rc.wait_for_engines(1, timeout=1)
    assert rc.ids == [0]
    assert rc[0].apply_sync(lambda: "alive") == "alive"
    with pytest.raises(error.NoEnginesError):
        rc[1].apply_sync(lambda: 1)


def test_interrupt_stops_the_running_task_not_the_engine(own, tmp_path) -> None:
    cluster, rc = own
    started = tmp_path / "started"
    ar = rc[0].execute(f"import time, pathlib; pathlib.Path({str(started)!r}).touch(); time.sleep(30)")
    deadline = time.monotonic() + 10
    while not started.exists():  # bounded poll: the task's only outward sign of having started
        assert time.monotonic() < deadline and not ar.ready()
        ar.wait(0.02)
    cluster.signal_engine_sync(signal.SIGINT, 0)
    with pytest.raises(error.RemoteError) as e:
        ar.get(timeout=10)
    assert e.value.ename == "KeyboardInterrupt"
    assert rc[0].apply_sync(lambda: "ok") == "ok"


def test_killed_controller_gives_an_error_not_a_hang(own) -> None:
    cluster, rc = own
    ar = rc[0].apply_async(time.sleep, 30)
    controller_pid = json.loads(cluster.connection_file("client").read_text())["pid"]
    psutil.Process(controller_pid).kill()
    with pytest.raises(error.ControllerError):
        ar.get(timeout=15)


def test_wrong_key_is_refused_clearly(own, tmp_path) -> None:
    cluster, rc = own
    info = json.loads(cluster.connection_file("client").read_text())
    info["key"] = "not-the-key"
    bad = write_private_json(tmp_path / "bad.json", info)  # a connection file others can read is refused
    with pytest.raises(error.AuthenticationError, match="key"):
        ipp.Client(url_file=str(bad), timeout=5)
    assert rc[0].apply_sync(lambda: 1) == 1  # the controller is unharmed


def test_shutdown_stops_engines_and_controller(own) -> None:
    cluster, rc = own
    engines = [psutil.Process(p) for p in rc[:].apply_sync(os.getpid)]  # handles outlive the processes
    rc.shutdown(hub=True, block=True)
    gone, alive = psutil.wait_procs(engines, timeout=10)
    assert not alive

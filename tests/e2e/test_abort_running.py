"""Stopping a running task with real processes: ar.abort(running=True) and a run-time timeout
interrupt it (SIGINT); an engine that ignores the interrupt is killed and comes back under its id."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ipcluster as ipp
from ipcluster import error

from .conftest import start, stop
from .test_supervision import pid_of, until


@pytest.fixture
def cluster_rc(tmp_path: Path) -> Iterator[tuple[ipp.Cluster, ipp.Client]]:
    cluster, rc = start(tmp_path, controller_args=["--hb-period=0.2", "--ControllerApp.interrupt_grace_period=1"])
    try:
        yield cluster, rc
    finally:
        stop(cluster, rc)


def sleeper(marker: str, seconds: float) -> None:
    import pathlib
    import time

    pathlib.Path(marker).touch()
    time.sleep(seconds)


def stubborn(marker: str) -> None:
    import pathlib
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pathlib.Path(marker).touch()
    while True:
        pass


def test_aborting_a_running_task_interrupts_it_and_the_engine_goes_on(cluster_rc, tmp_path) -> None:
    cluster, rc = cluster_rc
    marker = tmp_path / "started"
    pid = pid_of(rc, 0)
    ar = rc.load_balanced_view(targets=[0]).apply_async(sleeper, str(marker), 60)
    until(marker.exists)  # running now
    t0 = time.monotonic()
    ar.abort(running=True)
    with pytest.raises(error.TaskAborted, match="aborted while it ran on engine 0"):
        ar.get(timeout=5)
    print(f"abort to TaskAborted: {time.monotonic() - t0:.3f} s")
    assert time.monotonic() - t0 < 2
    assert rc[0].apply_sync(os.getpid) == pid  # the same engine takes new work
    assert cluster.supervisor.deaths == []


def test_a_running_task_past_its_timeout_is_interrupted(cluster_rc, tmp_path) -> None:
    cluster, rc = cluster_rc
    marker = tmp_path / "started"
    pid = pid_of(rc, 1)
    lview = rc.load_balanced_view(targets=[1])
    lview.timeout = 1.0
    t0 = time.monotonic()
    ar = lview.apply_async(sleeper, str(marker), 60)
    with pytest.raises(error.TaskTimeout):
        ar.get(timeout=10)
    assert marker.exists() and time.monotonic() - t0 < 3
    assert rc[1].apply_sync(os.getpid) == pid
    assert cluster.supervisor.deaths == []


def test_a_task_that_ignores_the_interrupt_costs_its_engine_not_the_others(cluster_rc, tmp_path) -> None:
    cluster, rc = cluster_rc
    marker = tmp_path / "started"
    old, other = pid_of(rc, 0), pid_of(rc, 1)
    ar = rc.load_balanced_view(targets=[0]).apply_async(stubborn, str(marker))
    until(marker.exists)
    t0 = time.monotonic()
    ar.abort(running=True)
    with pytest.raises(error.TaskAborted):
        ar.get(timeout=5)
    aborted = time.monotonic() - t0
    [death] = cluster.supervisor.wait_for_deaths_sync(1, timeout=20)
    killed = time.monotonic() - t0
    until(lambda: pid_of(rc, 0) not in (None, old))
    back = time.monotonic() - t0
    print(f"ignored SIGINT: TaskAborted {aborted:.3f} s, engine killed {killed:.2f} s, registered again {back:.2f} s")
    assert aborted < 2 and death.engine_id == 0 and death.signal == "SIGKILL" and death.restarted
    assert rc[0].apply_sync(os.getpid) == death.new_pid
    assert pid_of(rc, 1) == other and rc[1].apply_sync(os.getpid) == other  # untouched

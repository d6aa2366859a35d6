"""Engine supervision with real processes: dead engines are reported and come back under their id;
a task that keeps killing engines fails with TaskKilledEngines instead of killing them all."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ipcluster as ipp
from ipcluster import error

from .conftest import start, stop


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[ipp.Cluster, ipp.Client]]:
    # hb 0.2 s x 3 misses: the controller declares a dead engine dead within about 0.8 s
    cluster, rc = start(tmp_path, controller_args=["--hb-period=0.2"], engine_restart_window=60)
    try:
        yield cluster, rc
    finally:
        stop(cluster, rc)


def until(cond, timeout: float = 20.0) -> None:
    """A deadline-bounded poll, the last resort: the client has no event for 'engine N is back'."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def pid_of(rc: ipp.Client, eid: int) -> int | None:
    return rc.engine_info.get(eid, {}).get("pid")


def test_a_killed_engine_is_reported_and_comes_back_under_its_id(supervised) -> None:
    cluster, rc = supervised
    old = pid_of(rc, 0)
    assert old is not None
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)
    [death] = cluster.supervisor.wait_for_deaths_sync(1, timeout=20)
    until(lambda: pid_of(rc, 0) not in (None, old))
    back = time.monotonic() - t0
    print(f"SIGKILL to engine 0 registered again: {back:.2f} s")
    assert rc.ids == [0, 1]
    assert death.engine_id == 0 and death.pid == old and death.signal == "SIGKILL" and death.exit_code == -9
    assert death.oom is not True  # the kernel's OOM-kill count did not move (or cannot be read)
    assert death.restarted and death.new_pid == pid_of(rc, 0)
    assert "killed by SIGKILL" in death.summary()
    assert rc[0].apply_sync(os.getpid) == death.new_pid
    state = json.loads(cluster.cluster_file.read_text())
    assert state["engine_deaths"][0]["signal"] == "SIGKILL"
    assert death.new_pid in [p["pid"] for s in state["engines"].values() for p in s["processes"]]


def test_a_task_that_segfaults_its_engine_fails_at_the_kill_limit(supervised) -> None:
    cluster, rc = supervised

    def crash():
        import os
        import signal

        os.write(2, b"about to crash\n")  # to the engine's own stderr (sys.stderr goes to the client)
        os.kill(os.getpid(), signal.SIGSEGV)

    lview = rc.load_balanced_view()
    lview.retries = 5
    ar = lview.apply_async(crash)
    with pytest.raises(error.TaskKilledEngines) as info:  # an EngineError
        ar.get(timeout=30)
    assert "task_kill_limit = 2" in str(info.value) and "was running on 2 engines" in str(info.value)
    deaths = cluster.supervisor.wait_for_deaths_sync(2, timeout=20)
    assert [d.signal for d in deaths] == ["SIGSEGV", "SIGSEGV"]
    assert any("about to crash" in line for line in deaths[0].output)
    assert all(d.restarted for d in deaths)
    until(lambda: len(rc.ids) == 2 and all(pid_of(rc, e) == d.new_pid for d in deaths for e in [d.engine_id]))
    assert rc[:].apply_sync(lambda: "alive") == ["alive", "alive"]


def test_engines_killed_again_and_again_during_a_map_every_result_arrives(supervised) -> None:
    cluster, rc = supervised
    lview = rc.load_balanced_view()
    lview.retries = 10

    def work(x):
        import time

        time.sleep(0.005)
        return x

    n = 2000
    amr = lview.map_async(work, range(n), chunksize=1)
    kills = 0
    for target in (0, 1, 0, 1):
        until(lambda: amr.progress >= (kills + 1) * n // 6 or amr.ready(), timeout=40)
        pid = pid_of(rc, target)
        if amr.ready() or pid is None:
            break
        os.kill(pid, signal.SIGKILL)
        kills += 1
        until(lambda: pid_of(rc, target) not in (None, pid))  # back before the next kill
    assert amr.get(timeout=60) == list(range(n))
    assert kills >= 2, "the map finished before the engines were killed: make it longer"
    deaths = cluster.supervisor.wait_for_deaths_sync(kills, timeout=20)
    assert [d.engine_id for d in deaths] == [0, 1, 0, 1][:kills] and all(d.restarted for d in deaths)
    assert sorted(rc.ids) == [0, 1]
    assert cluster.controller is not None
    log = Path(cluster.controller.processes[0].log_file).read_text()  # the retries, as the controller logged them
    gone = [line for line in log.splitlines() if " gone (" in line]  # missed heartbeats, or unreachable
    assert len(gone) == kills and all("unfinished task(s) retried or failed" in line for line in gone)


def test_an_engine_dying_too_often_stays_down_and_says_why(tmp_path: Path) -> None:
    cluster, rc = start(tmp_path, controller_args=["--hb-period=0.2"], engine_restart_limit=1)
    try:
        first = pid_of(rc, 0)
        assert first is not None
        os.kill(first, signal.SIGKILL)
        cluster.supervisor.wait_for_deaths_sync(1, timeout=20)
        until(lambda: pid_of(rc, 0) not in (None, first))
        second = pid_of(rc, 0)
        assert second is not None
        os.kill(second, signal.SIGKILL)
        _, death = cluster.supervisor.wait_for_deaths_sync(2, timeout=20)
        assert not death.restarted and "engine_restart_limit" in death.note
        until(lambda: rc.ids == [1])  # the controller declared it dead; nothing took its place
        assert rc[1].apply_sync(lambda: "alive") == "alive"
    finally:
        stop(cluster, rc)

"""Operations on clusters a process did not start: daemonize, find and stop by file, clean.

Real processes throughout: a daemonized ``ipcluster start``, a cluster owned by another Python
process, a cluster whose controller crashed. Every wait is on an event (a readiness report, a
line on a pipe, a process exit) with a bounded timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from ipcluster.cluster import (
    Cluster,
    clean_profile,
    find_cluster,
    find_clusters,
    report_ready,
    start_daemon,
    stop_recorded,
)
from ipcluster.error import ProcessExited


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def recorded_pids(state: dict) -> list[int]:
    pids = [p["pid"] for p in state["controller"]["processes"]]
    return pids + [p["pid"] for s in state["engines"].values() for p in s["processes"]]


async def reap(pid: int, timeout: float = 10) -> int:
    """Collect a child's exit status (it has exited or is about to)."""
    _, status = await asyncio.wait_for(asyncio.to_thread(os.waitpid, pid, 0), timeout)
    return os.waitstatus_to_exitcode(status)


async def test_daemonized_start_then_stop_by_file(tmp_path: Path) -> None:
    profile = tmp_path / "profile_d"

    def argv(fd: int) -> list[str]:
        return [
            sys.executable, "-m", "ipcluster", "start", "-n", "1", f"--profile-dir={profile}",
            "--cluster-id=d", "--Cluster.stop_timeout=5", f"--IPClusterStart.ready_fd={fd}",
        ]

    daemon = await start_daemon(argv, os.environ, tmp_path / "ipcluster.log", timeout=40, stop_timeout=5)
    try:
        assert daemon.info["engines"] == 1 and daemon.info["pid"] == daemon.pid
        record = find_cluster(profile, "d")
        assert record is not None and record.running and record.state is not None
        assert record.controller_pid == daemon.info["controller_pid"]
        assert len(record.engine_pids()) == 1
        assert record.state["cluster"]["owner_pid"] == daemon.pid
        pids = recorded_pids(record.state)
        assert [r.cluster_id for r in find_clusters(profile)] == ["d"]

        stopped = await stop_recorded(record.state)  # from this process, found by its file
        assert stopped.running_pids() == []
        assert not any(running(pid) for pid in pids)
        assert not record.path.exists()
        assert find_cluster(profile, "d") is None
    finally:
        if running(daemon.pid):
            os.kill(daemon.pid, signal.SIGKILL)
        # the daemon noticed its controller go, stopped what was left and exited cleanly
        assert await reap(daemon.pid) == 0


async def test_daemon_that_exits_without_reporting(tmp_path: Path) -> None:
    def argv(fd: int) -> list[str]:
        return [sys.executable, "-c", "import sys; print('no luck', file=sys.stderr); sys.exit(3)"]

    with pytest.raises(ProcessExited) as info:
        await start_daemon(argv, os.environ, tmp_path / "d.log", timeout=30, stop_timeout=5)
    assert info.value.exit_code == 3
    assert "no luck" in info.value.output and "did not start" in str(info.value)


async def test_daemon_that_never_reports_is_stopped(tmp_path: Path) -> None:
    # it keeps the inherited write end open and blocks reading a pipe of its own: it neither
    # reports nor exits until it is signalled
    script = "import os; r, w = os.pipe(); os.read(r, 1)"

    def argv(fd: int) -> list[str]:
        return [sys.executable, "-c", script]

    with pytest.raises(ProcessExited) as info:
        await start_daemon(argv, os.environ, tmp_path / "d.log", timeout=0.5, stop_timeout=5)
    assert info.value.exit_code == -signal.SIGTERM


async def test_report_ready_reaches_the_waiting_process(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from ipcluster.cluster import report_ready
        report_ready(int(sys.argv[1]), {"engines": 0, "hello": "there"})
        """
    )

    def argv(fd: int) -> list[str]:
        return [sys.executable, "-c", code, str(fd)]

    daemon = await start_daemon(argv, os.environ, tmp_path / "d.log", timeout=30, stop_timeout=5)
    assert daemon.info == {"engines": 0, "hello": "there"}
    assert await reap(daemon.pid) == 0
    r, w = os.pipe()
    report_ready(w, {"x": 1})  # closes its end
    with os.fdopen(r) as f:
        assert json.loads(f.read()) == {"x": 1}


OWNER = """
import json, sys
from ipcluster.cluster import Cluster
c = Cluster(profile_dir=sys.argv[1], cluster_id="other", n=1, controller_timeout=15, stop_timeout=5)
c.start_cluster_sync()
print(json.dumps(c.running_pids()), flush=True)
sys.stdin.read()  # until the test closes our stdin; the cluster then stops at exit, if still up
"""


async def test_cluster_of_another_python_process_is_stopped_by_file(tmp_path: Path) -> None:
    profile = tmp_path / "profile_o"
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(profile)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)  # type: ignore[union-attr]
        assert line, proc.stderr.read()  # type: ignore[union-attr]
        pids = json.loads(line)
        loaded = Cluster.from_file(profile_dir=profile, cluster_id="other")
        assert loaded.owner_pid == proc.pid and loaded.owner_kind == "python"
        await loaded.stop_cluster()
        assert not any(running(pid) for pid in pids)
        assert not loaded.cluster_file.exists()
        assert running(proc.pid)  # a Python owner is a user's interpreter: left alone
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        assert await asyncio.to_thread(proc.wait, 20) == 0
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


async def test_clean_profile_removes_dead_clusters_only(tmp_path: Path) -> None:
    profile = tmp_path / "profile_c"
    opts = dict(profile_dir=str(profile), controller_timeout=15, stop_timeout=5)
    crashed = Cluster(cluster_id="crashed", n=1, **opts)
    alive = Cluster(cluster_id="alive", n=0, **opts)
    try:
        await crashed.start_cluster()
        await alive.start_cluster()
        assert crashed.controller is not None
        orphan = crashed.running_pids()[1]
        os.kill(crashed.controller.pids[0], signal.SIGKILL)
        await crashed.controller.wait(timeout=10)
        assert {r.cluster_id: r.running for r in find_clusters(profile)} == {"alive": True, "crashed": False}

        removed = await clean_profile(profile)
        assert "cluster 'crashed'" in removed
        assert not running(orphan)
        assert not crashed.cluster_file.exists() and not crashed.log_dir.exists()
        assert not crashed.connection_file("client").exists()
        assert [r.cluster_id for r in find_clusters(profile)] == ["alive"]
        assert alive.cluster_file.exists() and alive.connection_file("client").exists()

        assert await clean_profile(profile) == []  # nothing left to clean
    finally:
        await crashed.stop_cluster()
        await alive.stop_cluster()
    assert crashed.running_pids() == [] and alive.running_pids() == []


async def test_cluster_manager_loads_clusters_of_every_profile(tmp_path: Path) -> None:
    """ipyparallel's ``ClusterManager().load_clusters()``: clusters found by file in each profile,
    keyed "<profile>:<cluster_id>", that drive the running cluster (here: stop it)."""
    from ipcluster.cluster import ClusterManager

    ipython_dir = tmp_path / "ipython"
    started = [
        Cluster(n=1, profile_dir=str(ipython_dir / f"profile_{name}"), cluster_id=cid, log_level="WARN")
        for name, cid in (("one", "a"), ("two", "b"))
    ]
    try:
        for c in started:
            await c.start_cluster()
        manager = ClusterManager(ipython_dir=ipython_dir)
        clusters = manager.load_clusters()
        assert sorted(clusters) == ["one:a", "two:b"]
        found = manager.get_cluster("two:b")
        assert found.controller is not None and found.controller.pids == started[1].controller.pids
        await found.stop_cluster()
        assert not started[1].running_pids() or all(not running(p) for p in started[1].running_pids())
        assert sorted(manager.load_clusters()) == ["one:a"]  # a stopped cluster's file is gone
        with pytest.raises(Exception, match="no cluster 'two:b'"):
            manager.get_cluster("two:b")
    finally:
        for c in started:
            await c.stop_cluster()

"""Cluster with real controller and engine processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pytest

from ipcluster.error import RemoteError

from ipcluster.cluster import Cluster
from ipcluster.error import ClusterTimeout, IPClusterError, ProcessExited


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # gone, even between a check and the handle
        return False


def gone(pids: list[int]) -> bool:
    return not [p for p in pids if running(p)]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Bounded poll, for state that has no event to wait on (a client's engine list shrinking)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


def make_cluster(tmp_path: Path, **kwargs: object) -> Cluster:
    opts: dict[str, object] = dict(
        profile_dir=str(tmp_path / "profile_test"), n=2, controller_timeout=15, engine_timeout=20, stop_timeout=5
    )
    opts.update(kwargs)
    return Cluster(**opts)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = make_cluster(tmp_path)
    try:
        yield c
    finally:
        await c.stop_cluster()
        assert c.running_pids() == []


def test_start_and_connect_sync_then_stop(tmp_path: Path) -> None:
    c = make_cluster(tmp_path)
    rc = c.start_and_connect_sync()
    try:
        assert sorted(rc.ids) == [0, 1]
        pids = c.running_pids()
        assert len(pids) == 3
        state = json.loads(c.cluster_file.read_text())
        assert state["cluster"]["cluster_id"] == c.cluster_id
        recorded = [p["pid"] for s in state["engines"].values() for p in s["processes"]]
        assert sorted(recorded) == sorted(pids[1:])
        assert state["controller"]["processes"][0]["pid"] == pids[0]
        assert oct(c.cluster_file.stat().st_mode & 0o777) == "0o600"
        assert rc[:].apply_sync(os.getpid) != []
        # processes on this host talk over the controller's Unix sockets, in a private folder
        ipc = json.loads(c.connection_file("client").read_text())["ipc"]
        ipc_dir = Path(ipc["client_port"]).parent
        assert oct(ipc_dir.stat().st_mode & 0o777) == "0o700"
        assert rc._io.client_url == f"ipc://{ipc['client_port']}"
        assert set(json.loads(c.connection_file("engine").read_text())["ipc"]) == {
            "engine_port", "iopub_port", "hb_ping_port", "hb_pong_port"}
    finally:
        c.stop_cluster_sync()
    assert c.running_pids() == []
    assert gone(pids)
    assert not c.cluster_file.exists()
    assert not c.connection_file("client").exists() and not c.connection_file("engine").exists()
    assert not ipc_dir.exists()  # removed with the controller


def test_tcp_only_controller(tmp_path: Path) -> None:
    """With ``ipc`` off, everything goes over TCP on localhost, as it must between hosts."""
    c = make_cluster(tmp_path, n=1, controller_args=["--ControllerApp.ipc=False"])
    rc = c.start_and_connect_sync()
    try:
        assert "ipc" not in json.loads(c.connection_file("client").read_text())
        assert rc._io.client_url.startswith("tcp://127.0.0.1:")
        assert rc[0].apply_sync(lambda: 7) == 7
    finally:
        c.stop_cluster_sync()


def test_cluster_id_default_is_fresh(tmp_path: Path) -> None:
    a, b = make_cluster(tmp_path), make_cluster(tmp_path)
    assert a.cluster_id != b.cluster_id
    stamp, _, suffix = a.cluster_id.partition("-")
    assert stamp.isdigit() and len(suffix) == 4
    assert a.profile == "test"


def test_profile_config_is_read(tmp_path: Path) -> None:
    profile = tmp_path / "profile_cfg"
    profile.mkdir()
    (profile / "ipcluster_config.py").write_text("c.Cluster.n = 3\nc.Cluster.engine_timeout = 7.0\n")
    assert Cluster(profile_dir=str(profile)).n == 3
    c = Cluster(profile_dir=str(profile), n=1)  # keyword arguments win
    assert (c.n, c.engine_timeout) == (1, 7.0)
    assert Cluster(profile_dir=str(profile), load_profile=False).n is None


def test_profile_config_reaches_the_launchers(tmp_path: Path) -> None:
    """Launcher sections of ipcluster_config.py, under ipyparallel's class names too."""
    profile = tmp_path / "profile_cfg"
    profile.mkdir()
    (profile / "ipcluster_config.py").write_text(
        "c.SlurmEngineSetLauncher.queue = 'short'\n"
    )
    c = Cluster(profile_dir=str(profile))
    assert c._make_launcher("slurm", argv=["true"], name="engines-x").queue == "short"  # type: ignore[attr-defined]


def test_unknown_launcher_name(tmp_path: Path) -> None:
    c = make_cluster(tmp_path, engines="nosuch")
    with pytest.raises(IPClusterError, match="unknown launcher 'nosuch'; available launchers: .*local"):
        c.start_cluster_sync()
    assert c.running_pids() == []


def test_context_manager(tmp_path: Path) -> None:
    with make_cluster(tmp_path, n=1) as rc:
        assert len(rc.ids) == 1
        pids = [p.pid for p in psutil.Process().children()]
    assert gone(pids)


async def test_async_context_manager(tmp_path: Path) -> None:
    c = make_cluster(tmp_path, n=1)
    async with c as rc:
        assert len(rc.ids) == 1
        pids = c.running_pids()
    assert gone(pids) and c.running_pids() == []


async def test_sync_api_inside_a_running_loop(tmp_path: Path) -> None:
    """The notebook case: blocking methods called while an event loop runs in this thread."""
    c = make_cluster(tmp_path, n=1)
    rc = c.start_and_connect_sync()
    try:
        assert len(rc.ids) == 1
    finally:
        c.stop_cluster_sync()
    assert c.running_pids() == []


async def test_add_and_stop_engine_sets(cluster: Cluster) -> None:
    # quick heartbeats: an engine stopped right after registering may die before it can unregister
    cluster.controller_args = ["--hb-period=0.25"]
    rc = await cluster.start_and_connect(n=1)
    first = next(iter(cluster.engines))
    second = await cluster.start_engines(2)
    assert second != first and set(cluster.engines) == {first, second}
    await cluster.wait_for_engines(rc, 3)
    assert len(rc.ids) == 3
    recorded = json.loads(cluster.cluster_file.read_text())["engines"]
    assert set(recorded) == {first, second}

    pids = cluster.engines[second].pids
    await cluster.stop_engines(second)
    assert gone(pids)
    assert set(cluster.engines) == {first}
    assert set(json.loads(cluster.cluster_file.read_text())["engines"]) == {first}
    await until(lambda: len(rc.ids) == 1)


async def test_n_zero_starts_the_controller_alone(tmp_path: Path) -> None:
    c = make_cluster(tmp_path, n=0)
    try:
        rc = await c.start_and_connect()
        assert c.engines == {} and rc.ids == []
        assert c.running_pids() == c.controller.pids  # type: ignore[union-attr]
        with pytest.raises(IPClusterError, match="no engines to start"):
            await c.start_engines()  # n=0 is a count, not "one per core"
        await c.start_engines(1)  # engines can be added later
        await c.wait_for_engines(rc, 1)
        assert len(rc.ids) == 1
    finally:
        await c.stop_cluster()
    assert c.running_pids() == []


async def test_signal_engines(cluster: Cluster) -> None:
    await cluster.start_and_connect(n=2)
    launcher = next(iter(cluster.engines.values()))
    await cluster.signal_engines(signal.SIGTERM)
    # 0: a clean exit; -SIGTERM: the signal came before the engine installed its handler
    assert await launcher.wait(timeout=10) in (0, -signal.SIGTERM)
    assert cluster.running_pids() == cluster.controller.pids  # type: ignore[union-attr]


def busy(marker: str) -> None:
    import pathlib
    import time

    pathlib.Path(marker).touch()
    time.sleep(30)


async def test_sigint_interrupts_a_task(cluster: Cluster, tmp_path: Path) -> None:
    rc = await cluster.start_and_connect(n=1)
    marker = tmp_path / "running"
    ar = rc[0].apply_async(busy, str(marker))
    await until(marker.exists)  # the task is running now
    await cluster.signal_engine(signal.SIGINT, 0)
    with pytest.raises(RemoteError) as info:
        await asyncio.wait_for(asyncio.to_thread(ar.get, 10), 15)
    assert info.value.ename == "KeyboardInterrupt"
    assert rc[0].apply_sync(lambda: 42) == 42  # the engine survives


async def test_killed_engine_is_noticed(tmp_path: Path) -> None:
    c = make_cluster(tmp_path, controller_args=["--hb-period=0.25"], restart_engines_on_death=False)
    try:
        rc = await c.start_and_connect(n=2)
        launcher = next(iter(c.engines.values()))
        victim = launcher.processes[0]
        os.kill(victim.pid, signal.SIGKILL)
        assert await launcher.wait_first_exit(timeout=10) is victim
        assert victim.poll() == -signal.SIGKILL
        assert victim.pid not in c.running_pids()
        await until(lambda: len(rc.ids) == 1)  # the controller declared it dead and told the client
    finally:
        await c.stop_cluster()
    assert c.running_pids() == []


async def test_restart_engines(cluster: Cluster) -> None:
    cluster.controller_args = ["--hb-period=0.25"]  # see test_add_and_stop_engine_sets
    rc = await cluster.start_and_connect(n=2)
    (set_id,) = cluster.engines
    old, old_ids = cluster.engines[set_id].pids, set(rc.ids)
    await cluster.restart_engines()
    assert gone(old)
    assert set(cluster.engines) == {set_id}
    new = cluster.engines[set_id].pids
    assert len(new) == 2 and not set(new) & set(old)
    await until(lambda: len(rc.ids) == 2 and not set(rc.ids) & old_ids)  # engine ids are never reused

    victim = min(rc.ids)
    await cluster.restart_engine(victim)
    assert len(cluster.engines[set_id].running_pids) == 2
    await until(lambda: victim not in rc.ids and len(rc.ids) == 2)
    logs = list(cluster.log_dir.glob(f"engines-{set_id}-*.log"))
    assert len(logs) == 5  # a fresh output file for every process ever started


async def test_state_file_round_trip_stops_from_elsewhere(cluster: Cluster) -> None:
    await cluster.start_cluster(n=1)
    pids = cluster.running_pids()
    loaded = Cluster.from_file(profile_dir=cluster.profile_dir, cluster_id=cluster.cluster_id)
    assert loaded.shutdown_atexit is False
    assert loaded.cluster_id == cluster.cluster_id and loaded.n == cluster.n
    assert loaded.running_pids() == pids
    assert loaded.to_dict()["engines"].keys() == cluster.to_dict()["engines"].keys()
    await loaded.stop_cluster()
    assert loaded.running_pids() == []
    assert not cluster.cluster_file.exists()
    assert await cluster.controller.wait(timeout=10) in (0, -signal.SIGTERM)  # type: ignore[union-attr]
    assert cluster.running_pids() == []


async def test_starting_twice_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.start_cluster(n=1)
    twin = make_cluster(tmp_path, cluster_id=cluster.cluster_id)
    with pytest.raises(IPClusterError, match="already running"):
        await twin.start_controller()
    assert cluster.connection_file("client").exists()  # the running cluster is untouched
    with pytest.raises(IPClusterError, match="already running"):
        await cluster.start_controller()


async def test_stale_files_are_replaced(tmp_path: Path) -> None:
    c = make_cluster(tmp_path, cluster_id="stale")
    sec = Path(c.profile_dir) / "security"
    sec.mkdir(parents=True)
    (sec / "ipcontroller-stale-client.json").write_text(json.dumps({"pid": 999999999, "key": "x"}))
    c.cluster_file.write_text(json.dumps({"cluster": {}, "controller": {"processes": [{"pid": 999999999}]}}))
    try:
        await c.start_controller()
        assert c.controller is not None
        assert json.loads(c.connection_file("client").read_text())["pid"] == c.controller.pids[0]
    finally:
        await c.stop_cluster()


async def test_controller_failure_reports_exit_code_and_output(tmp_path: Path) -> None:
    c = make_cluster(tmp_path, controller_args=["--scheme=no-such-scheme"])
    with pytest.raises(ProcessExited) as info:
        await c.start_and_connect(n=1)
    assert info.value.exit_code not in (0, None)
    assert "no-such-scheme" in info.value.output
    assert c.running_pids() == []
    assert not c.cluster_file.exists()


async def test_engine_failure_is_reported_fast(tmp_path: Path) -> None:
    c = make_cluster(tmp_path, engine_args=["--file=/nonexistent/engine.json", "--timeout=0.2"], engine_timeout=30)
    t0 = time.monotonic()
    with pytest.raises(ProcessExited) as info:
        await c.start_and_connect(n=1)
    assert time.monotonic() - t0 < 10  # not engine_timeout
    assert "engines-" in str(info.value) and info.value.exit_code
    assert c.running_pids() == []


async def test_engines_that_never_register_time_out(tmp_path: Path) -> None:
    c = make_cluster(tmp_path, engine_timeout=0.5)
    await c.start_cluster(n=1)
    try:
        rc = await c.connect_client()
        with pytest.raises(ClusterTimeout):
            await c.wait_for_engines(rc, 5, timeout=0.5)
    finally:
        await c.stop_cluster()


def test_stopped_at_interpreter_exit(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json
        from ipcluster.cluster import Cluster
        c = Cluster(profile_dir={str(tmp_path / "profile_x")!r}, n=1)
        c.start_cluster_sync()
        print(json.dumps(c.running_pids()), flush=True)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    pids = json.loads(out.stdout)
    assert len(pids) == 2
    assert gone(pids)
    assert not list((tmp_path / "profile_x" / "security").glob("cluster-*.json"))


def test_controller_that_cannot_start_leaves_no_socket_folder(tmp_path: Path) -> None:
    import socket as socketlib

    busy = socketlib.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["TMPDIR"] = str(tmp_path)  # where the controller makes its sockets' folder
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ipcluster.controller", f"--profile-dir={tmp_path / 'profile'}",
             f"--ControllerApp.client_port={port}"],
            env=env, capture_output=True, text=True, timeout=30)
    finally:
        busy.close()
    assert proc.returncode == 1
    assert f"cannot listen on tcp://127.0.0.1:{port}: Address already in use" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("ipcluster-*"))

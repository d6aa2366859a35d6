"""Engines over SSH, against real sshd daemons: on localhost, and on two network-namespace hosts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from traitlets.config import Config

import ipcluster as ipp
from ipcluster.error import LauncherError, ProcessExited, RemoteError
from ipcluster.launchers.ssh import SSHLauncher

from .infra import Daemon, LoopbackSSHD, NetnsHosts, SSHKeys, wait_gone

HERE = Path(__file__).parent


def ssh_config(sshd: LoopbackSSHD, **traits: object) -> Config:
    c = Config()
    c.SSHEngineSetLauncher.ssh_args = ["-F", str(sshd.ssh_config)]
    c.SSHEngineSetLauncher.remote_python = sys.executable
    for name, value in traits.items():
        setattr(c.SSHEngineSetLauncher, name, value)
    return c


def engine_pids(rc: ipp.Client) -> list[int]:
    return sorted(rc[:].apply_sync(os.getpid))


@pytest.mark.ssh
@pytest.mark.timeout(90)
def test_localhost_engines_with_a_loopback_controller(sshd: LoopbackSSHD, profile: str) -> None:
    c = ssh_config(sshd, engines={"localhost": 2})
    cluster = ipp.Cluster(engines="ssh", profile_dir=profile, config=c, log_level="WARN")
    rc = cluster.start_and_connect_sync()  # n unset: the host list's 2 engines
    try:
        assert len(rc.ids) == 2
        pids = engine_pids(rc)
        launched = cluster.running_pids()[1:]  # the local ssh processes, not the engines
        assert not set(pids) & set(launched)
        for pid in pids:  # the key came on stdin: no connection file on the engine's command line
            assert "--file=-" in psutil.Process(pid).cmdline()
        # a signal for the engines travels over the lifeline and interrupts the task, not the engine
        started = Path(profile) / "started"
        ar = rc[0].execute(f"import time, pathlib; pathlib.Path({str(started)!r}).touch(); time.sleep(30)")
        deadline = time.monotonic() + 10
        while not started.exists():  # bounded poll: the task's only outward sign of having started
            assert time.monotonic() < deadline and not ar.ready()
            ar.wait(0.02)
        cluster.signal_engines_sync(signal.SIGINT)
        with pytest.raises(RemoteError) as e:
            ar.get(timeout=10)
        assert e.value.ename == "KeyboardInterrupt"
        assert engine_pids(rc) == pids
    finally:
        rc.close()
        cluster.stop_cluster_sync()
    assert cluster.running_pids() == []
    assert wait_gone(pids, 5) == []


@pytest.mark.ssh
@pytest.mark.timeout(60)
def test_another_process_stops_ssh_engines_from_the_state_file(sshd: LoopbackSSHD, profile: str) -> None:
    c = ssh_config(sshd, engines={"127.0.0.1": 1})
    cluster = ipp.Cluster(engines="ssh", profile_dir=profile, config=c, log_level="WARN", shutdown_atexit=False)
    rc = cluster.start_and_connect_sync()
    try:
        pids = engine_pids(rc)
        assert len(pids) == 1  # the host list's count, not one per core
        restored = ipp.Cluster.from_file(profile_dir=profile, cluster_id=cluster.cluster_id)
        assert restored.engines[next(iter(restored.engines))].to_dict()["hosts"]
        restored.stop_cluster_sync()
        assert wait_gone(pids, 10) == []
    finally:
        rc.close()
        cluster.stop_cluster_sync()


@pytest.mark.ssh
@pytest.mark.timeout(60)
def test_missing_remote_python_is_a_clear_error(sshd: LoopbackSSHD, profile: str) -> None:
    c = ssh_config(sshd, engines={"localhost": 1}, remote_python="/nonexistent/python")
    cluster = ipp.Cluster(engines="ssh", profile_dir=profile, config=c, log_level="WARN")
    t0 = time.monotonic()
    with pytest.raises(LauncherError, match=r"remote_python '/nonexistent/python' cannot be run on localhost"):
        cluster.start_and_connect_sync()
    assert time.monotonic() - t0 < 15
    assert cluster.running_pids() == []


@pytest.mark.ssh
@pytest.mark.timeout(60)
def test_remote_python_without_ipcluster_is_a_clear_error(sshd: LoopbackSSHD, profile: str, tmp_path: Path) -> None:
    bare = tmp_path / "bare-python"  # this Python without site-packages: no ipcluster there
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    c = ssh_config(sshd, engines={"localhost": 1}, remote_python=str(bare))
    cluster = ipp.Cluster(engines="ssh", profile_dir=profile, config=c, log_level="WARN")
    t0 = time.monotonic()
    with pytest.raises(ProcessExited, match=r"ipcluster is not installed for .*bare-python on localhost"):
        cluster.start_and_connect_sync()
    assert time.monotonic() - t0 < 15


@pytest.mark.ssh
@pytest.mark.timeout(60)
def test_refused_login_is_a_clear_error(sshd: LoopbackSSHD, profile: str, tmp_path: Path) -> None:
    stranger = SSHKeys(tmp_path / "stranger")  # a key sshd does not know
    config = stranger.ssh_config(tmp_path / "stranger.conf", {}, port=sshd.port)
    c = ssh_config(sshd, engines={"localhost": 1}, ssh_args=["-F", str(config)])
    cluster = ipp.Cluster(engines="ssh", profile_dir=profile, config=c, log_level="WARN")
    t0 = time.monotonic()
    with pytest.raises(LauncherError, match=r"ssh login to localhost was refused"):
        cluster.start_and_connect_sync()
    assert time.monotonic() - t0 < 15


def test_remote_engines_with_a_loopback_controller_are_refused_at_once(profile: str) -> None:
    """No sshd needed: the refusal comes before any ssh runs."""
    c = Config()
    c.SSHEngineSetLauncher.engines = {"node7": 2, "localhost": 1}
    cluster = ipp.Cluster(engines="ssh", profile_dir=profile, config=c, log_level="WARN")
    t0 = time.monotonic()
    with pytest.raises(LauncherError, match=r"engines on node7 cannot reach .* set c\.Cluster\.controller_ip"):
        cluster.start_cluster_sync()
    assert time.monotonic() - t0 < 10
    assert cluster.running_pids() == []


# -- two hosts in network namespaces -------------------------------------------------------------


@pytest.mark.ssh
@pytest.mark.timeout(150)
@pytest.mark.parametrize("listen", ["bridge", "all"])
def test_px_and_map_across_two_namespace_hosts(netns: NetnsHosts, tmp_path: Path, listen: str) -> None:
    """'bridge': the controller listens on its bridge address only (the hosts cannot reach its
    loopback). 'all': it listens everywhere and lists its host name, bridge address and loopback;
    the engines must find that the bridge address is the one that answers."""
    args = {
        "engines": {"h1": 1, "h2": 1},
        "ssh_config": str(netns.ssh_config),
        "ip": netns.ctl_ip if listen == "bridge" else "0.0.0.0",
        "profile_dir": str(tmp_path / "profile"),
    }
    t0 = time.monotonic()
    proc = subprocess.run(
        ["ip", "netns", "exec", netns.ns("ctl"), sys.executable, str(HERE / "netns_driver.py"), json.dumps(args)],
        capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert result["px_success"], result
    assert "on h1" in result["px_stdout"] and "on h2" in result["px_stdout"]
    assert result["px_hosts"] == ["h1", "h2"]
    assert result["map_values"] == [x * x for x in range(12)]
    assert result["map_hosts"] == ["h1", "h2"]
    assert result["running_after_stop"] == []
    assert wait_gone(result["engine_pids"], 5) == []
    deadline = time.monotonic() + 5  # sshd's per-session processes end just after the engines
    while netns.leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert netns.leftovers() == {}
    print(f"netns cluster: {elapsed:.1f} s in all, start {result['start_s']:.1f} s, "
          f"map {result['map_s']:.2f} s, stop {result['stop_s']:.2f} s")


@pytest.mark.ssh
@pytest.mark.timeout(60)
def test_unreachable_host_is_reported_within_the_connect_timeout(netns: NetnsHosts, tmp_path: Path) -> None:
    """ssh runs inside the controller namespace, where 'nowhere' routes to an address nobody has."""
    launcher = SSHLauncher(
        argv=[sys.executable, "-m", "ipcluster.engine", f"--file={tmp_path / 'never.json'}"],
        ssh_cmd=["ip", "netns", "exec", netns.ns("ctl"), "ssh"],
        ssh_args=["-F", str(netns.ssh_config)],
        engines={"nowhere": 1},
        connect_timeout=2,
        log_dir=str(tmp_path / "log"),
        name="engines",
    )

    async def attempt() -> str:
        await launcher.start(1)
        try:
            proc = await launcher.wait_first_exit(timeout=20)
            return str(launcher.exited_error(proc))
        finally:
            await launcher.stop()

    t0 = time.monotonic()
    message = asyncio.run(attempt())
    assert time.monotonic() - t0 < 15
    assert "SSH host nowhere is unreachable" in message, message


@pytest.mark.ssh
@pytest.mark.timeout(60)
def test_ipcluster_start_with_an_ipyparallel_config_file_and_ctrl_c(sshd: LoopbackSSHD, tmp_path: Path) -> None:
    """The command line, a profile's ipcluster_config.py in ipyparallel's names, and Ctrl-C."""
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "ipcluster_config.py").write_text(
        'c.Cluster.engine_launcher_class = "SSHEngineSetLauncher"\n'
        'c.SSHEngineSetLauncher.engines = {"localhost": 2}\n'
        f"c.SSHEngineSetLauncher.ssh_args = ['-F', {str(sshd.ssh_config)!r}]\n"
        f"c.SSHEngineSetLauncher.remote_python = {sys.executable!r}\n"
    )
    ipcluster = str(Path(sys.executable).with_name("ipcluster"))
    cli = Daemon([ipcluster, "start", f"--profile-dir={profile}"], "is up: 2 engine(s) ready")
    try:
        cli.wait_ready(30)
        # the engines run under sshd's sessions, not under the ipcluster command
        engines = [p.pid for p in psutil.Process(sshd.daemon.proc.pid).children(recursive=True)
                   if "ipcluster.engine" in " ".join(p.cmdline())]
        assert len(engines) == 2
        cli.proc.send_signal(signal.SIGINT)
        assert cli.proc.wait(30) == 0
    finally:
        cli.stop()
    assert wait_gone(engines, 5) == []
    assert not list((profile / "security").glob("cluster-*.json"))


OWNER = """
import os, sys, time
from traitlets.config import Config
import ipcluster as ipp
c = Config()
c.SSHEngineSetLauncher.engines = {"localhost": 2}
c.SSHEngineSetLauncher.ssh_args = ["-F", sys.argv[1]]
c.SSHEngineSetLauncher.remote_python = sys.executable
cluster = ipp.Cluster(engines="ssh", profile_dir=sys.argv[2], config=c, log_level="WARN")
rc = cluster.start_and_connect_sync()
print("READY", *rc[:].apply_sync(os.getpid), flush=True)
import signal
signal.pause()  # until the test kills us
"""


@pytest.mark.ssh
@pytest.mark.timeout(60)
def test_remote_engines_exit_when_the_process_that_started_them_is_killed(sshd: LoopbackSSHD, profile: str) -> None:
    """SIGKILL leaves no chance to clean up: the engines' stdin closing is what stops them."""
    owner = Daemon([sys.executable, "-c", OWNER, str(sshd.ssh_config), profile], "READY")
    try:
        owner.wait_ready(40)
        engines = [int(p) for p in next(x for x in owner.lines if x.startswith("READY")).split()[1:]]
        assert len(engines) == 2 and all(psutil.pid_exists(p) for p in engines)
        owner.proc.kill()
        owner.proc.wait(10)
        assert wait_gone(engines, 10) == []
    finally:
        owner.stop()
        # the controller is a plain local process: it outlives a killed owner; stop it from its state
        for state in (Path(profile) / "security").glob("cluster-*.json"):
            ipp.Cluster.from_file(state).stop_cluster_sync()

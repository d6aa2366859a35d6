"""The SSH and MPI launchers' pure parts, and the engine's remote start-up, without daemons."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from traitlets.config import Config

from ipcluster.engine.remote import RemoteStartError, StdinLink, candidate_hosts, first_reachable, mpi_rank
from ipcluster.error import LauncherError
from ipcluster.launchers import find_launcher_class, launcher_class_name
from ipcluster.launchers.mpi import MPIEngineSetLauncher, MPILauncher
from ipcluster.launchers.ssh import (
    SSHEngineSetLauncher,
    SSHLauncher,
    _for_remote,
    diagnose,
    is_local_host,
    parse_hostfile,
    spread,
)

ENGINE_ARGV = [sys.executable, "-m", "ipcluster.engine", "--file=/p/security/ipcontroller-engine.json", "--timeout=30"]


# -- names and config ------------------------------------------------------------------------------


def test_names_resolve_to_the_launchers() -> None:
    assert find_launcher_class("ssh") is SSHEngineSetLauncher
    assert find_launcher_class("SSHEngineSetLauncher") is SSHEngineSetLauncher
    assert find_launcher_class("mpi") is MPIEngineSetLauncher
    assert find_launcher_class("MPIEngineSetLauncher") is MPIEngineSetLauncher
    assert launcher_class_name(SSHEngineSetLauncher) == "ssh"
    assert launcher_class_name(MPIEngineSetLauncher) == "mpi"


def test_ipyparallel_config_names_take_effect() -> None:
    c = Config()
    c.SSHEngineSetLauncher.engines = {"node1": 3}
    c.SSHEngineSetLauncher.ssh_args = ["-p", "2222"]
    c.SSHLauncher.remote_python = "/opt/py/bin/python"
    c.MPILauncher.mpi_args = ["--bind-to", "none"]
    ssh = SSHEngineSetLauncher(config=c)
    assert ssh.engines == {"node1": 3}
    assert ssh.ssh_args == ["-p", "2222"]
    assert ssh.remote_python == "/opt/py/bin/python"
    assert MPIEngineSetLauncher(config=c).mpi_args == ["--bind-to", "none"]


# -- hosts -------------------------------------------------------------------------------------------


def test_hostfile_and_engines_merge(tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# cluster\nnode1 2\nalice@node2   # one engine\n\nnode1 1\n")
    assert parse_hostfile(hostfile.read_text()) == {"node1": 3, "alice@node2": 1}
    launcher = SSHLauncher(engines={"node0": 1}, hostfile=str(hostfile))
    assert launcher.host_counts() == {"node0": 1, "node1": 3, "alice@node2": 1}
    assert launcher.default_count == 5
    with pytest.raises(LauncherError, match="line 1"):
        parse_hostfile("node1 two\n")
    with pytest.raises(LauncherError, match="cannot read the SSH hostfile"):
        SSHLauncher(hostfile=str(tmp_path / "missing")).host_counts()
    with pytest.raises(LauncherError, match="invalid SSH host"):
        SSHLauncher(engines={"-oProxyCommand=x": 1}).host_counts()


def test_engines_may_carry_per_host_arguments() -> None:
    c = Config()
    c.SSHEngineSetLauncher.engines = {"node1": (2, ["--log-level=DEBUG"]), "node2": 1}
    launcher = SSHEngineSetLauncher(config=c, argv=ENGINE_ARGV)
    assert launcher.host_counts() == {"node1": 2, "node2": 1}
    assert launcher.host_args("node1") == ["--log-level=DEBUG"] and launcher.host_args("node2") == []


def test_spread_fills_slots_then_goes_round_robin() -> None:
    hosts = {"a": 2, "b": 1}
    assert spread(hosts, 3) == ["a", "a", "b"]
    assert spread(hosts, 1) == ["a"]
    assert spread(hosts, 5) == ["a", "a", "b", "a", "b"]
    assert spread(hosts, 1, running={"a": 2}) == ["b"]  # a replacement goes where a slot is free


def test_local_and_remote_hosts() -> None:
    for host in ("localhost", "127.0.0.1", "root@127.0.0.2", "::1", socket.gethostname()):
        assert is_local_host(host), host
    for host in ("node7", "10.0.0.5", "bob@example.org"):
        assert not is_local_host(host), host
    assert SSHLauncher(engines={"localhost": 1, "node7": 2}).remote_hosts == ["node7"]


# -- commands ----------------------------------------------------------------------------------------


def test_remote_command_is_quoted_and_reads_stdin() -> None:
    launcher = SSHLauncher(
        argv=[*ENGINE_ARGV, "--EngineApp.x=it's; rm -rf /"], remote_python="/opt/my python/bin/python",
        ssh_args=["-F", "/cfg"], connect_timeout=3, env={"OMP_NUM_THREADS": "1 2"},
    )
    path, remote_argv = launcher._engine_command()
    assert path == Path("/p/security/ipcontroller-engine.json")
    argv = launcher.ssh_argv("node1", remote_argv)
    assert argv[:3] == ["ssh", "-F", "/cfg"]
    assert "ConnectTimeout=3" in argv and "BatchMode=yes" in argv
    assert argv[-2] == "node1"
    words = shlex.split(argv[-1])  # what the remote shell will see
    assert words[:4] == ["exec", "env", "PYTHONUNBUFFERED=1", "OMP_NUM_THREADS=1 2"]
    assert words[4:] == ["/opt/my python/bin/python", "-m", "ipcluster.engine", "--file=-", "--timeout=30",
                         "--EngineApp.x=it's; rm -rf /"]


def test_only_engines_go_over_ssh() -> None:
    launcher = SSHLauncher(argv=[sys.executable, "-m", "ipcluster.controller"], engines={"h": 1})
    with pytest.raises(LauncherError, match="starts engines"):
        launcher._engine_command()


def test_remote_hosts_get_no_local_paths_or_loopback() -> None:
    info = {"key": "k", "interface": "tcp://vm", "ipc": {"engine_port": "/tmp/x"}, "shm": "/dev/shm/x",
            "addresses": ["vm", "10.1.2.3", "127.0.0.1"]}
    remote = _for_remote(info)
    assert "ipc" not in remote and "shm" not in remote
    assert remote["addresses"] == ["vm", "10.1.2.3"]
    assert candidate_hosts(remote) == ["vm", "10.1.2.3"]


def test_controller_lists_every_address_it_listens_on() -> None:
    from ipcluster.controller.app import listen_addresses

    assert listen_addresses("10.1.2.3", "10.1.2.3") == ["10.1.2.3"]
    assert listen_addresses("10.1.2.3", "head.example.org") == ["head.example.org", "10.1.2.3"]
    every = listen_addresses("0.0.0.0", "vm")
    assert every[0] == "vm" and "127.0.0.1" in every
    assert all(not a.startswith("127.") for a in every[1 : every.index("127.0.0.1")])  # loopback last


def test_diagnoses_name_the_host() -> None:
    assert "ssh login to h1 was refused" in diagnose("h1", 255, "root@h1: Permission denied (publickey).", "py")
    assert "SSH host h2 is unreachable" in diagnose(
        "h2", 255, "ssh: connect to host 10.0.0.9 port 22: Connection timed out", "py"
    )
    assert "remote_python '/x/py' cannot be run on h3" in diagnose(
        "h3", 127, "bash: line 1: /x/py: No such file or directory", "/x/py"
    )
    assert "ipcluster is not installed for py on h4" in diagnose(
        "h4", 1, "/usr/bin/python3: No module named ipcluster", "py"
    )
    assert "ssh does not know h6's host key" in diagnose("h6", 255, "Host key verification failed.", "py")
    assert "cannot reach the controller" in diagnose("h5", 1, "cannot reach the controller at any of its", "py")


def test_mpi_command_and_environment() -> None:
    launcher = MPILauncher(argv=["python", "-m", "ipcluster.engine"], mpi_args=["--bind-to", "none"],
                           allow_run_as_root=True, oversubscribe=True)
    assert launcher.mpi_argv(4) == ["mpiexec", "-n", "4", "--bind-to", "none", "python", "-m", "ipcluster.engine"]
    env = launcher.mpi_env()
    assert env["OMPI_ALLOW_RUN_AS_ROOT"] == "1" and env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] == "1"
    assert env["OMPI_MCA_rmaps_base_oversubscribe"] == "1"
    plain = MPILauncher().mpi_env()
    assert "OMPI_ALLOW_RUN_AS_ROOT" not in plain or os.environ.get("OMPI_ALLOW_RUN_AS_ROOT")


def test_mpi_launcher_state_round_trips() -> None:
    launcher = MPILauncher(name="engines-x")
    launcher.counts = {1234: 8}
    restored = MPILauncher.from_dict(launcher.to_dict())
    assert isinstance(restored, MPILauncher) and restored.counts == {1234: 8}


def test_missing_infrastructure_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from .infra import require

    monkeypatch.delenv("IPCLUSTER_REQUIRE_INFRA", raising=False)
    with pytest.raises(pytest.skip.Exception, match="/nonexistent/sshd"):
        require("ssh", "/nonexistent/sshd")
    monkeypatch.setenv("IPCLUSTER_REQUIRE_INFRA", "1")
    with pytest.raises(pytest.fail.Exception, match="IPCLUSTER_REQUIRE_INFRA=1"):
        require("ssh", "/nonexistent/sshd")
    require("ssh", sys.executable)  # present: nothing happens


# -- the engine's side ---------------------------------------------------------------------------------


def test_mpi_rank_from_the_process_manager() -> None:
    assert mpi_rank({"OMPI_COMM_WORLD_RANK": "3"}) == 3
    assert mpi_rank({"PMI_RANK": "0"}) == 0
    assert mpi_rank({"PMIX_RANK": "5"}) == 5
    assert mpi_rank({}) is None


async def test_stdin_link_reads_info_then_signals_then_eof() -> None:
    read_end, write_end = os.pipe()
    try:
        link = StdinLink(read_end)
        os.write(write_end, json.dumps({"key": "k"}).encode() + b"\nsignal 0\n")
        assert await link.read_info(5) == {"key": "k"}
        closed = asyncio.Event()
        loop = asyncio.get_running_loop()
        thread = link.watch(lambda: loop.call_soon_threadsafe(closed.set), grace=None)  # no hard exit here
        os.close(write_end)
        write_end = -1
        await asyncio.wait_for(closed.wait(), 5)
        thread.join(5)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


async def test_stdin_link_times_out_and_rejects_garbage() -> None:
    pipes = [os.pipe(), os.pipe()]
    try:
        with pytest.raises(RemoteStartError, match="within 0.2 s"):
            await StdinLink(pipes[0][0]).read_info(0.2)
        os.write(pipes[1][1], b"not json\n")
        with pytest.raises(RemoteStartError, match="not JSON"):
            await StdinLink(pipes[1][0]).read_info(5)
    finally:
        for read_end, write_end in pipes:
            os.close(write_end)  # ends the timed-out link's reader thread
            os.close(read_end)


def refusing_port(*hosts: str) -> tuple[int, list[socket.socket]]:
    """A port that refuses connections on each of ``hosts`` for as long as the sockets are held
    (bound, never listening: no other process can take the port meanwhile)."""
    socks = [socket.socket()]
    socks[0].bind((hosts[0], 0))
    port = socks[0].getsockname()[1]
    for host in hosts[1:]:
        s = socket.socket()
        s.bind((host, port))
        socks.append(s)
    return port, socks


async def test_first_reachable_keeps_the_address_that_answers() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    blocker = socket.socket()
    blocker.bind(("127.0.0.2", port))  # 127.0.0.2 is loopback too, but refuses on this port
    try:
        assert await first_reachable(["127.0.0.2", "127.0.0.1"], port, 5) == "127.0.0.1"
    finally:
        blocker.close()
        server.close()
        await server.wait_closed()
    port, socks = refusing_port("127.0.0.2", "127.0.0.1")
    try:
        with pytest.raises(RemoteStartError, match=r"127\.0\.0\.2:\d+ \(.*\); 127\.0\.0\.1:\d+ \("):
            await first_reachable(["127.0.0.2", "127.0.0.1"], port, 5)
    finally:
        for sock in socks:
            sock.close()


def test_engine_that_reaches_no_address_exits_naming_them(tmp_path: Path) -> None:
    port, socks = refusing_port("127.0.0.3", "127.0.0.4")
    info = {"key": "k", "signature_scheme": "hmac-sha256", "interface": "tcp://127.0.0.3",
            "addresses": ["127.0.0.3", "127.0.0.4"], "engine_port": port, "iopub_port": port,
            "hb_ping_port": port, "hb_pong_port": port}
    t0 = time.monotonic()
    # stdin stays open, as the SSH launcher keeps it: closing it would stop the engine
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipcluster.engine", "--file=-", "--timeout=10"],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    assert proc.stdin is not None and proc.stderr is not None
    try:
        proc.stdin.write(json.dumps(info) + "\n")
        proc.stdin.flush()
        assert proc.wait(30) == 1
        stderr = proc.stderr.read()
    finally:
        for sock in socks:
            sock.close()
        proc.stdin.close()
        proc.stderr.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert time.monotonic() - t0 < 15
    assert f"127.0.0.3:{port}" in stderr and f"127.0.0.4:{port}" in stderr, stderr
    assert "cannot reach the controller" in stderr


def test_engine_whose_stdin_closes_during_start_up_says_why() -> None:
    info = {"key": "k", "interface": "tcp://127.0.0.1", "engine_port": 1, "iopub_port": 1,
            "hb_ping_port": 1, "hb_pong_port": 1, "addresses": ["127.0.0.1"]}
    proc = subprocess.run(
        [sys.executable, "-m", "ipcluster.engine", "--file=-", "--timeout=10"],
        input=json.dumps(info) + "\n", capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 1
    assert "stdin closed" in proc.stderr or "cannot reach the controller" in proc.stderr, proc.stderr

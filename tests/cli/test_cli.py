"""The ``ipcluster`` command, run as a real process against real clusters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from .conftest import processes_using

EXIT_ALREADY_RUNNING = 10
EXIT_NOT_RUNNING = 11


def ipcluster(*args: str, timeout: float = 45) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ipcluster", *args], capture_output=True, text=True, timeout=timeout
    )


def state_of(ipython_dir: Path, cluster_id: str, profile: str = "default") -> dict:
    return json.loads((ipython_dir / f"profile_{profile}" / "security" / f"cluster-{cluster_id}.json").read_text())


def recorded_pids(state: dict) -> list[int]:
    pids = [p["pid"] for p in state["controller"]["processes"]]
    pids += [p["pid"] for s in state["engines"].values() for p in s["processes"]]
    return pids + [state["cluster"]["owner_pid"]]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def list_rows(ipython_dir: Path) -> dict[str, list[str]]:
    out = ipcluster("list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["PROFILE", "CLUSTER", "ID", "RUNNING", "ENGINES", "CONTROLLER", "PID"]
    rows = {row.split()[1]: row.split() for row in lines[1:]}
    as_json = ipcluster("list", "-o", "json")  # the same clusters, as ipyparallel's `list -o json`
    assert as_json.returncode == 0, as_json.stderr
    listed = json.loads(as_json.stdout)
    assert sorted(c["cluster_id"] or "''" for c in listed) == sorted(rows)
    for c in listed:
        row = rows[c["cluster_id"] or "''"]
        assert row[2] == ("yes" if c["running"] else "no") and int(row[3]) == c["engines"]
        assert c["state"]["cluster"]["cluster_id"] == c["cluster_id"]
    return rows


def reap(proc: subprocess.Popen[str]) -> None:
    """Kill a foreground ``ipcluster start`` a failed test left running, and close its pipes."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]


def test_daemonized_cluster_lifecycle(ipython_dir: Path) -> None:
    profile = ipython_dir / "profile_default"
    profile.mkdir()
    (profile / "ipcluster_config.py").write_text("c.Cluster.n = 2\n")  # the profile's config is read
    out = ipcluster("start", "--daemonize", "--cluster-id=bg")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 engine(s) ready" in out.stdout and "ipcluster stop --cluster-id=bg" in out.stdout
    state = state_of(ipython_dir, "bg")
    assert state["cluster"]["owner_kind"] == "ipcluster"
    assert all(alive(pid) for pid in recorded_pids(state))

    rows = list_rows(ipython_dir)
    assert rows["bg"] == ["default", "bg", "yes", "2", str(state["controller"]["processes"][0]["pid"])]

    again = ipcluster("start", "-n", "1", "--daemonize", "--cluster-id=bg")
    assert again.returncode == EXIT_ALREADY_RUNNING
    assert "already running" in again.stderr
    assert all(alive(pid) for pid in recorded_pids(state))  # left running

    more = ipcluster("engines", "-n", "1", "--cluster-id=bg")
    assert more.returncode == 0, more.stdout + more.stderr
    assert "3 engine(s) registered" in more.stdout
    state = state_of(ipython_dir, "bg")
    assert len(state["engines"]) == 2
    assert list_rows(ipython_dir)["bg"][3] == "3"
    pids = recorded_pids(state)
    assert all(alive(pid) for pid in pids)

    stop = ipcluster("stop", "--cluster-id=bg")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "3 engine(s)" in stop.stdout
    assert not any(alive(pid) for pid in pids)  # the added engines and the daemon too
    assert not (ipython_dir / "profile_default" / "security" / "cluster-bg.json").exists()

    again = ipcluster("stop", "--cluster-id=bg")
    assert again.returncode == EXIT_NOT_RUNNING
    assert "no cluster 'bg' is running in profile default" in again.stderr


def test_foreground_start_until_interrupted(ipython_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipcluster", "start", "-n", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert "is up: 1 engine(s) ready" in line, line + proc.stderr.read()  # type: ignore[union-attr]
        pids = recorded_pids(state_of(ipython_dir, ""))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        assert "stopped" in proc.stdout.read()  # type: ignore[union-attr]
    finally:
        reap(proc)
    assert not any(alive(pid) for pid in pids)
    assert not (ipython_dir / "profile_default" / "security" / "cluster-.json").exists()


def test_stop_ends_a_foreground_cluster(ipython_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipcluster", "start", "-n", "1", "--profile=work"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert "is up" in line, line + proc.stderr.read()  # type: ignore[union-attr]
        nothing = ipcluster("stop")  # wrong profile: says where clusters do run
        assert nothing.returncode == EXIT_NOT_RUNNING
        assert "no cluster '' is running in profile default" in nothing.stderr
        stop = ipcluster("stop", "--profile=work")
        assert stop.returncode == 0, stop.stderr
        assert proc.wait(timeout=20) == 0  # it noticed its controller go, stopped the engines, exited
    finally:
        reap(proc)


def test_clean_and_stop_all(ipython_dir: Path) -> None:
    starts = [  # two clusters side by side, started concurrently
        subprocess.Popen(
            [sys.executable, "-m", "ipcluster", "start", "-n", "1", "--daemonize", f"--cluster-id={cid}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for cid in ("a", "b")
    ]
    for proc in starts:
        out, err = proc.communicate(timeout=45)
        assert proc.returncode == 0, out + err
    a = state_of(ipython_dir, "a")
    sec = ipython_dir / "profile_default" / "security"
    a_info = json.loads((sec / "ipcontroller-a-client.json").read_text())
    socket_folder = Path(a_info["ipc"]["client_port"]).parent
    shm_folder = Path(a_info.get("shm") or socket_folder)  # no /dev/shm: the check below repeats
    assert socket_folder.is_dir() and shm_folder.is_dir()
    # cluster a crashes: its daemon and controller die, its engine is orphaned
    owner = psutil.Process(a["cluster"]["owner_pid"])  # before the kill: a reaped pid has no handle
    for pid in (owner.pid, a["controller"]["processes"][0]["pid"]):
        os.kill(pid, signal.SIGKILL)
    orphan = recorded_pids(a)[1]
    psutil.wait_procs([owner], timeout=10)
    rows = list_rows(ipython_dir)
    assert rows["a"][2] == "no" and rows["b"][2] == "yes"

    hint = ipcluster("stop")
    assert hint.returncode == EXIT_NOT_RUNNING and "running there: 'b'" in hint.stderr

    clean = ipcluster("clean")
    assert clean.returncode == 0, clean.stderr
    assert "removed cluster 'a'" in clean.stdout
    assert not alive(orphan)
    assert not socket_folder.exists() and not shm_folder.exists()  # its killed controller could not
    assert not (sec / "cluster-a.json").exists() and not (sec / "ipcontroller-a-client.json").exists()
    assert not (ipython_dir / "profile_default" / "log" / "cluster-a").exists()
    assert (sec / "cluster-b.json").exists() and (ipython_dir / "profile_default" / "log" / "cluster-b").exists()

    b = recorded_pids(state_of(ipython_dir, "b"))
    stop = ipcluster("stop", "--all")
    assert stop.returncode == 0, stop.stderr
    assert not any(alive(pid) for pid in b)
    assert list_rows_empty(ipython_dir)


def list_rows_empty(ipython_dir: Path) -> bool:
    out = ipcluster("list")
    return out.returncode == 0 and out.stdout.strip() == "No clusters found."


def test_usage_errors() -> None:
    out = ipcluster()
    assert out.returncode == 2 and "start" in out.stdout + out.stderr
    out = ipcluster("engines", "-n", "1", "--cluster-id=none")
    assert out.returncode == EXIT_NOT_RUNNING and "no cluster 'none' is running" in out.stderr


def test_unknown_launcher_is_reported(ipython_dir: Path) -> None:
    out = ipcluster("start", "-n", "1", "--engines=nosuch")
    assert out.returncode == 1
    assert "unknown launcher 'nosuch'" in out.stderr and "local" in out.stderr
    assert not processes_using(ipython_dir)


def test_daemon_that_fails_to_start_reports_why(ipython_dir: Path) -> None:
    out = ipcluster("start", "-n", "1", "--daemonize", "--engines=nosuch")
    assert out.returncode == 1
    assert "did not start" in out.stderr and "unknown launcher 'nosuch'" in out.stderr


def test_client_with_no_arguments_finds_what_ipcluster_started(ipython_dir: Path) -> None:
    import ipcluster as ipp

    out = ipcluster("start", "-n", "2", "--daemonize")  # default profile, default cluster id
    assert out.returncode == 0, out.stdout + out.stderr
    try:
        rc = ipp.Client()
        try:
            rc.wait_for_engines(2, timeout=20)
            assert len(set(rc[:].apply_sync(os.getpid))) == 2
            assert rc.load_balanced_view().map_sync(abs, range(-3, 3)) == [3, 2, 1, 0, 1, 2]
        finally:
            rc.close()
        named = ipp.Client(profile="default", cluster_id="")
        try:
            assert named.ids == [0, 1]
        finally:
            named.close()
    finally:
        stop = ipcluster("stop")
        assert stop.returncode == 0, stop.stdout + stop.stderr


def test_start_with_no_engines_then_add_some(ipython_dir: Path) -> None:
    """`-n 0` is a controller alone (not one engine per core); engines are added later."""
    out = ipcluster("start", "-n", "0", "--daemonize", "--cluster-id=z")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 engine(s) ready" in out.stdout
    try:
        assert state_of(ipython_dir, "z")["engines"] == {}
        none = ipcluster("engines", "-n", "0", "--cluster-id=z")
        assert none.returncode == 1 and "no engines to start" in none.stderr
        more = ipcluster("engines", "-n", "1", "--cluster-id=z")
        assert more.returncode == 0, more.stdout + more.stderr
        assert "1 engine(s) registered" in more.stdout
    finally:
        stop = ipcluster("stop", "--cluster-id=z")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "1 engine(s)" in stop.stdout

"""LocalLauncher with plain Python child processes (no controller or engines needed)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from ipcluster.error import ClusterTimeout, LauncherError, ProcessExited
from ipcluster.launchers import find_launcher_class, launcher_class_name, launcher_names
from ipcluster.launchers.local import LocalLauncher
from ipcluster.launchers.process import Process


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# a child that tells us (by creating a file) that it is ready, then sleeps until signalled
SLEEPER = """
import os, pathlib, signal, sys, time
{setup}
pathlib.Path(sys.argv[1] + "-" + str(os.getpid())).touch()
time.sleep(60)
"""


def sleeper(tmp_path: Path, setup: str = "") -> list[str]:
    return [*py(SLEEPER.format(setup=setup)), str(tmp_path / "ready")]


async def wait_ready(launcher: LocalLauncher, tmp_path: Path) -> None:
    for pid in launcher.pids:
        await launcher.wait_for_path(tmp_path / f"ready-{pid}", timeout=10)


def test_registry_resolves_names() -> None:
    assert "local" in launcher_names()
    assert find_launcher_class("local") is LocalLauncher
    assert find_launcher_class("Local") is LocalLauncher
    assert find_launcher_class("LocalEngineSetLauncher") is LocalLauncher
    assert find_launcher_class("ipcluster.launchers.local:LocalLauncher") is LocalLauncher
    assert find_launcher_class(LocalLauncher) is LocalLauncher
    assert launcher_class_name(LocalLauncher) == "local"


def test_unknown_launcher_lists_the_available_ones() -> None:
    with pytest.raises(LauncherError, match=r"unknown launcher 'nosuch'.*available launchers: .*local"):
        find_launcher_class("nosuch")
    with pytest.raises(LauncherError, match="not a Launcher"):
        find_launcher_class("pathlib.Path")


async def test_start_signal_stop(tmp_path: Path) -> None:
    launcher = LocalLauncher(argv=sleeper(tmp_path), name="sleepers", log_dir=str(tmp_path / "log"))
    await launcher.start(3)
    assert len(launcher.pids) == 3
    await wait_ready(launcher, tmp_path)
    assert launcher.poll() is None
    assert sorted(launcher.running_pids) == sorted(launcher.pids)
    # each process is in its own session, so a terminal's Ctrl-C does not reach it
    assert all(os.getsid(pid) == pid for pid in launcher.pids)

    await launcher.signal(signal.SIGTERM, index=1)
    rc = await launcher.processes[1].wait(timeout=10)
    assert rc == -signal.SIGTERM
    assert launcher.returncodes[1] == -signal.SIGTERM
    assert launcher.poll() is None  # the other two still run

    await launcher.stop()
    assert launcher.running_pids == []
    assert launcher.poll() == -signal.SIGTERM
    assert all(not psutil.pid_exists(pid) for pid in launcher.pids)


async def test_early_exit_carries_code_and_output(tmp_path: Path) -> None:
    code = "import sys; print('starting up'); print('Traceback: boom', file=sys.stderr); sys.exit(3)"
    launcher = LocalLauncher(argv=py(code), name="failing", log_dir=str(tmp_path / "log"))
    await launcher.start(1)
    with pytest.raises(ProcessExited) as info:
        await launcher.wait_for_path(tmp_path / "never.json", timeout=10)
    err = info.value
    assert err.exit_code == 3
    assert "starting up" in err.output and "Traceback: boom" in err.output
    assert "failing process 0" in str(err) and "boom" in str(err)
    assert launcher.poll() == 3


async def test_output_tail_only_covers_this_run(tmp_path: Path) -> None:
    log = tmp_path / "log"
    first = LocalLauncher(argv=py("print('old run')"), name="p", log_dir=str(log))
    await first.start(1)
    assert await first.wait(timeout=10) == 0
    second = LocalLauncher(argv=py("import sys; print('new run'); sys.exit(1)"), name="p", log_dir=str(log))
    await second.start(1)
    assert await second.wait(timeout=10) == 1
    tail = second.exited_error(second.processes[0]).output
    assert "new run" in tail and "old run" not in tail
    assert "old run" in (log / "p-0.log").read_text()  # the file itself is appended to


async def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    stubborn = "signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    launcher = LocalLauncher(argv=sleeper(tmp_path, stubborn), name="stubborn", stop_timeout=0.3)
    await launcher.start(1)
    await wait_ready(launcher, tmp_path)
    await launcher.stop()
    assert launcher.returncodes == [-signal.SIGKILL]


async def test_wait_times_out(tmp_path: Path) -> None:
    launcher = LocalLauncher(argv=sleeper(tmp_path), name="s")
    await launcher.start(1)
    try:
        with pytest.raises(ClusterTimeout):
            await launcher.wait(timeout=0.05)
        with pytest.raises(ClusterTimeout, match="did not appear"):
            await launcher.wait_for_path(tmp_path / "nothing", timeout=0.05)
    finally:
        await launcher.stop()


async def test_wait_for_path_sees_the_file(tmp_path: Path) -> None:
    target = tmp_path / "conn.json"
    code = f"import pathlib, time; pathlib.Path({str(target)!r}).write_text('{{}}'); time.sleep(60)"
    launcher = LocalLauncher(argv=py(code), name="writer")
    await launcher.start(1)
    try:
        await launcher.wait_for_path(target, timeout=10)
        assert launcher.poll() is None
    finally:
        await launcher.stop()


async def test_unexpected_exit_is_reported(tmp_path: Path) -> None:
    launcher = LocalLauncher(argv=sleeper(tmp_path), name="watched")
    exited: asyncio.Queue[Process] = asyncio.Queue()
    launcher.on_exit(lambda _launcher, proc: exited.put_nowait(proc))
    await launcher.start(2)
    await wait_ready(launcher, tmp_path)
    victim = launcher.processes[0]
    psutil.Process(victim.pid).kill()
    proc = await asyncio.wait_for(exited.get(), timeout=10)
    assert proc is victim and proc.poll() == -signal.SIGKILL
    assert await launcher.wait_first_exit(timeout=1) is victim
    await launcher.stop()
    assert exited.empty()  # a requested stop is not reported


async def test_restored_launcher_stops_processes_it_did_not_start(tmp_path: Path) -> None:
    owner = LocalLauncher(argv=sleeper(tmp_path), name="engines-x", log_dir=str(tmp_path / "log"))
    await owner.start(2)
    await wait_ready(owner, tmp_path)
    state = owner.to_dict()
    assert state["class"] == "local" and len(state["processes"]) == 2

    restored = find_launcher_class(state["class"]).from_dict(state, stop_timeout=5)
    assert restored.running_pids == owner.pids
    await restored.stop()
    assert restored.running_pids == []
    assert await owner.wait(timeout=10) == -signal.SIGTERM  # the parent reaps them


async def test_restored_pid_reuse_is_not_signalled(tmp_path: Path) -> None:
    launcher = LocalLauncher(argv=sleeper(tmp_path), name="s")
    await launcher.start(1)
    await wait_ready(launcher, tmp_path)
    state = launcher.to_dict()
    state["processes"][0]["create_time"] -= 1000  # "the pid now belongs to another process"
    restored = LocalLauncher.from_dict(state)
    assert restored.running_pids == []
    await restored.stop()  # must not touch the live process
    assert launcher.poll() is None
    await launcher.stop()


async def test_bad_command_is_a_launcher_error(tmp_path: Path) -> None:
    launcher = LocalLauncher(argv=[str(tmp_path / "no-such-program")], name="bad")
    with pytest.raises(LauncherError, match="could not run"):
        await launcher.start(1)
    with pytest.raises(LauncherError, match="argv is empty"):
        await LocalLauncher(name="empty").start(1)


def test_launched_processes_get_huge_pages_for_malloc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert LocalLauncher().child_env()["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    assert "GLIBC_TUNABLES" not in LocalLauncher(huge_pages=False).child_env()
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")  # kept, and added to
    assert LocalLauncher().child_env()["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0")  # the user's choice wins
    assert LocalLauncher().child_env()["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=0"
    assert LocalLauncher(env={"GLIBC_TUNABLES": "x=1"}).child_env()["GLIBC_TUNABLES"] == "x=1"

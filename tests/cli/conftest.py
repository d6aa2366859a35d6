"""Fixtures for the ``ipcluster`` command tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest


def processes_using(ipython_dir: Path) -> list[psutil.Process]:
    """Processes (other than this one) whose environment points at this test's IPYTHONDIR.

    Daemonized clusters are not our children (they run in sessions of their own), so this is how
    a test finds everything it started, however detached.
    """
    found = []
    for p in psutil.process_iter():
        if p.pid == os.getpid():
            continue
        try:
            if p.environ().get("IPYTHONDIR") == str(ipython_dir) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.fixture(autouse=True)
def no_leaked_processes(ipython_dir: Path) -> Iterator[None]:
    """Fail a test that leaves any process of its cluster(s) running (and kill them)."""
    yield
    leaked = processes_using(ipython_dir)
    described = []
    for p in leaked:
        try:
            described.append(f"{p.pid}: {' '.join(p.cmdline())[:200]}")
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(leaked, timeout=5)
    assert not leaked, "test left processes running:\n" + "\n".join(described)

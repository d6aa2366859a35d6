"""End-to-end fixtures: a real controller and real engine processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import ipcluster as ipp


def start(tmp_path: Path, n: int = 2, **kw) -> tuple[ipp.Cluster, ipp.Client]:
    cluster = ipp.Cluster(n=n, profile_dir=str(tmp_path / "profile"), log_level="WARN", **kw)
    rc = cluster.start_and_connect_sync()
    return cluster, rc


def stop(cluster: ipp.Cluster, rc: ipp.Client) -> None:
    procs = [psutil.Process(p) for p in cluster.running_pids()]  # taken while they run: a handle
    rc.close()                                                    # made after one exits would fail
    cluster.stop_cluster_sync()
    assert cluster.running_pids() == []
    gone, alive = psutil.wait_procs(procs, timeout=10)
    assert not alive, f"processes left behind: {alive}"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ipp.Cluster, ipp.Client]]:
    """One 2-engine cluster for the tests of a module that leave it as they found it."""
    cluster, rc = start(tmp_path_factory.mktemp("shared"), controller_args=["--hb-period=0.5"])
    try:
        yield cluster, rc
    finally:
        stop(cluster, rc)


@pytest.fixture
def rc(shared: tuple[ipp.Cluster, ipp.Client]) -> Iterator[ipp.Client]:
    client = shared[1]
    client.wait_for_engines(2, timeout=20)
    yield client
    client[:].clear(block=True)


@pytest.fixture
def own(tmp_path: Path) -> Iterator[tuple[ipp.Cluster, ipp.Client]]:
    """A cluster of its own, for tests that kill or break things."""
    cluster, rc = start(tmp_path, controller_args=["--hb-period=0.2"])
    try:
        yield cluster, rc
    finally:
        stop(cluster, rc)

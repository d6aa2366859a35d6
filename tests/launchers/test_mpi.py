"""Engines as the ranks of one real mpiexec job (Open MPI or MPICH) with mpi4py."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from traitlets.config import Config

import ipcluster as ipp
from ipcluster.error import LauncherError, ProcessExited

from .infra import require, require_module, wait_gone


def mpi_config() -> Config:
    c = Config()
    c.MPILauncher.allow_run_as_root = os.geteuid() == 0  # Open MPI refuses root otherwise
    c.MPILauncher.oversubscribe = True  # more ranks than this machine's cores
    return c


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_allreduce_in_px_across_mpi_engines(profile: str) -> None:
    require("mpi", "mpiexec")
    require_module("mpi", "mpi4py")
    cluster = ipp.Cluster(engines="mpi", n=3, profile_dir=profile, config=mpi_config(), log_level="INFO")
    t0 = time.monotonic()
    rc = cluster.start_and_connect_sync()
    started = time.monotonic() - t0
    try:
        assert len(rc.ids) == 3
        assert len(cluster.running_pids()) == 2  # the controller and one mpiexec for all three
        shell = InteractiveShell.instance()
        shell.run_cell("%load_ext ipcluster")
        rc.activate()
        with capture_output() as cap:
            cell = shell.run_cell(
                "%%px\nfrom mpi4py import MPI\ncomm = MPI.COMM_WORLD\n"
                "total = comm.allreduce(comm.rank + 1)\nprint('rank', comm.rank, 'of', comm.size, 'total', total)"
            )
        assert cell.success, cap.stdout + cap.stderr
        assert sorted(rc[:]["comm.rank"]) == [0, 1, 2]
        assert rc[:]["total"] == [6, 6, 6]
        assert cap.stdout.count("of 3 total 6") == 3
        mapped = rc.load_balanced_view().map_sync(lambda x: x * 2, range(9))
        assert mapped == [x * 2 for x in range(9)]
        log = next(Path(cluster.log_dir).glob("engines-*.log")).read_text()
        assert all(f"MPI rank {r}" in log for r in range(3)), log  # each engine knew its rank
        old_pids, old_ids = rc[:].apply_sync(os.getpid), set(rc.ids)
        cluster.restart_engines_sync()  # the set comes back at its size: 3 ranks, not 1 mpiexec
        deadline = time.monotonic() + 60
        while len(set(rc.ids) - old_ids) < 3 or set(rc.ids) & old_ids:  # bounded poll on the client's view
            assert time.monotonic() < deadline, rc.ids
            time.sleep(0.05)
        pids = rc[:].apply_sync(os.getpid)
        assert len(pids) == 3 and not set(pids) & set(old_pids)
        assert wait_gone(old_pids, 5) == []
    finally:
        rc.close()
        cluster.stop_cluster_sync()
    assert cluster.running_pids() == []
    assert wait_gone(pids, 5) == []
    print(f"mpi cluster of 3 engines up in {started:.1f} s")


def test_missing_mpiexec_is_a_clear_error(profile: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No MPI needed: the error comes before anything is spawned for the engines."""
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without mpiexec
    cluster = ipp.Cluster(engines="mpi", n=2, profile_dir=profile, log_level="WARN")
    t0 = time.monotonic()
    with pytest.raises(LauncherError, match=r"'mpiexec' was not found on PATH.*c\.MPILauncher\.mpi_cmd"):
        cluster.start_cluster_sync()
    assert time.monotonic() - t0 < 10
    assert cluster.running_pids() == []


@pytest.mark.mpi
@pytest.mark.timeout(60)
@pytest.mark.skipif(os.geteuid() != 0, reason="Open MPI's refusal to run as root needs root")
def test_open_mpi_refusing_root_says_which_option_to_set(profile: str, monkeypatch: pytest.MonkeyPatch) -> None:
    require("mpi", "mpiexec")
    for name in ("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"):
        monkeypatch.delenv(name, raising=False)
    version = subprocess.run(["mpiexec", "--version"], capture_output=True, text=True, timeout=20).stdout.lower()
    if "open mpi" not in version and "openrte" not in version and "open-mpi" not in version:
        pytest.skip("mpiexec is not Open MPI")
    c = Config()
    c.MPILauncher.oversubscribe = True  # root is the only refusal left
    cluster = ipp.Cluster(engines="mpi", n=2, profile_dir=profile, config=c, log_level="WARN")
    t0 = time.monotonic()
    with pytest.raises(ProcessExited, match=r"set c\.MPILauncher\.allow_run_as_root = True"):
        cluster.start_and_connect_sync()
    assert time.monotonic() - t0 < 20
    assert cluster.running_pids() == []

"""What the Slurm and SGE tests do with a real queue: the same scenarios, two systems."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import ipcluster as ipp
from ipcluster.error import ProcessExited

from .infra_batch import Infra

READY_TIMEOUT = 90.0  # seconds for engines in jobs to register on 2 busy cores


def make_cluster(tmp_path: Path, system: str, n: int, shutdown_atexit: bool = False, **launcher: Any) -> ipp.Cluster:
    """A Cluster whose engines are batch jobs, configured the way a user's ipcluster_config.py would."""
    from traitlets.config import Config

    c = Config()
    c.Cluster.engine_launcher_class = system
    section = {"slurm": "SlurmLauncher", "sge": "SGELauncher"}[system]
    c[section].status_interval = 0.5
    c[section].cancel_timeout = 30.0
    for key, value in launcher.items():
        c[section][key] = value
    return ipp.Cluster(
        config=c, n=n, profile_dir=str(tmp_path / "profile"), log_level="WARN",
        engine_timeout=READY_TIMEOUT, controller_timeout=30, shutdown_atexit=shutdown_atexit,
    )


def run_px_and_map(rc: ipp.Client, n: int) -> None:
    """A %%px cell through a real IPython shell, and a load-balanced map that every engine takes part in."""
    shell = InteractiveShell.instance()
    shell.run_cell("%load_ext ipcluster")
    shell.user_ns["rc"] = rc
    rc.activate()
    with capture_output() as cap:
        result = shell.run_cell("%%px\nimport os\nbatch_job_pid = os.getpid()\nprint('engine pid', batch_job_pid)")
    assert result.success, cap.stdout + cap.stderr
    assert cap.stdout.count("engine pid") == n, cap.stdout
    pids = set(rc[:]["batch_job_pid"])
    assert len(pids) == n

    def work(x: int) -> tuple[int, int]:
        import os
        import time

        time.sleep(0.2)  # the work itself: long enough that every idle engine is given some
        return x * x, os.getpid()

    out = rc.load_balanced_view().map_sync(work, range(4 * n), chunksize=1)
    assert [r[0] for r in out] == [x * x for x in range(4 * n)]
    assert {r[1] for r in out} == pids, "not every engine took part in the map"


def stop_and_check(cluster: ipp.Cluster, infra: Infra, rc: ipp.Client | None = None) -> None:
    """Stop the cluster; nothing may be left in the queue, and no engine or controller process."""
    procs = [psutil.Process(p) for p in cluster.running_pids()]
    if rc is not None:
        engine_pids = [info.get("pid") for info in rc.engine_info.values()] if hasattr(rc, "engine_info") else []
        procs += [psutil.Process(p) for p in engine_pids if p and psutil.pid_exists(p)]
        rc.close()
    cluster.stop_cluster_sync()
    assert infra.jobs_left() == [], f"jobs left in the {infra.name} queue: {infra.jobs_left()}"
    _, alive = psutil.wait_procs(procs, timeout=15)
    assert not alive, f"processes left behind: {alive}"


def stop_from_another_process(cluster: ipp.Cluster) -> float:
    """Stop the cluster through its state file from a fresh interpreter; return the seconds it took."""
    code = (
        "import sys; from ipcluster.cluster import Cluster; "
        "Cluster.from_file(sys.argv[1]).stop_cluster_sync()"
    )
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", code, str(cluster.cluster_file)], check=True, timeout=90,
                   env={**os.environ})
    return time.monotonic() - t0


def bad_prologue_is_reported(system: str, infra: Infra, tmp_path: Path, n: int) -> None:
    """A job whose prologue fails ends at once: start_and_connect raises its exit code (127,
    command not found) and the tail of its output, well within the engines' timeout."""
    cluster = make_cluster(tmp_path, system, n=n, prologue=["echo loading modules", "no-such-module-command"])
    t0 = time.monotonic()
    try:
        with pytest.raises(ProcessExited) as info:
            cluster.start_and_connect_sync()
        took = time.monotonic() - t0
        err = info.value
        assert err.exit_code == 127, str(err)
        assert "failed with exit code 127" in str(err)
        assert "no-such-module-command" in err.output and "loading modules" in err.output
        assert took < READY_TIMEOUT / 3, f"took {took:.1f} s to report a job that failed at once"
        print(f"{system}: failing job reported {took:.1f} s after start: {str(err).splitlines()[0]}")
    finally:
        stop_and_check(cluster, infra)

"""Engines as real Slurm jobs (sbatch) on a single-node Slurm started by the fixture."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipcluster.error import ProcessExited

from .batch_scenarios import bad_prologue_is_reported, make_cluster, run_px_and_map, stop_and_check, stop_from_another_process
from .infra_batch import Slurm, slurm  # noqa: F401  (fixture)

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(240)]


def test_engines_in_a_job_array_run_px_and_map_then_nothing_is_left(slurm: Slurm, tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path, "slurm", n=4, engines_per_job=2, fanout="processes")
    t0 = time.monotonic()
    try:
        rc = cluster.start_and_connect_sync()
        ready = time.monotonic() - t0
        states = cluster.job_states()
        [jobs] = states.values()
        assert len(jobs) == 2 and {j["processes"] for j in jobs} == {2}  # one array of two tasks
        assert all(j["job_id"].count("_") == 1 for j in jobs)
        run_px_and_map(rc, 4)
        where = [f"--profile-dir={cluster.profile_dir}", f"--cluster-id={cluster.cluster_id}"]
        status = subprocess.run([sys.executable, "-m", "ipcluster", "status", *where],
                                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert status.returncode == 0, status.stderr
        assert "running" in status.stdout.splitlines()[0], status.stdout
        assert sum(line.strip().startswith("job ") and line.endswith(": running")
                   for line in status.stdout.splitlines()) == 2, status.stdout  # both array tasks
        listed = subprocess.run([sys.executable, "-m", "ipcluster", "list", f"--profile-dir={cluster.profile_dir}"],
                                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert listed.returncode == 0 and "2 running" in listed.stdout, listed.stdout + listed.stderr
        [(set_id, launcher)] = cluster.engines.items()
        assert launcher.command_counts["submit"] == 1
        submitted = cluster.log_dir / f"engines-{set_id}-0.slurm.sh"
        assert cluster.job_script(4) == submitted.read_text()  # exactly what was submitted
        print(f"slurm: 4 engines ready {ready:.1f} s after start; queue commands {dict(launcher.command_counts)}")
        rc.close()
        took = stop_from_another_process(cluster)  # from the state in the cluster file
        print(f"slurm: stopped from another process in {took:.1f} s")
        assert slurm.jobs_left() == []
    finally:
        stop_and_check(cluster, slurm)


def test_a_job_with_a_bad_prologue_is_reported_with_exit_code_and_output(slurm: Slurm, tmp_path: Path) -> None:
    bad_prologue_is_reported("slurm", slurm, tmp_path, n=2)


def test_a_job_cancelled_from_outside_is_reported(slurm: Slurm, tmp_path: Path) -> None:
    # the prologue holds the job before its engines start, so scancel always comes first
    cluster = make_cluster(tmp_path, "slurm", n=1, prologue=["sleep 120"])
    try:
        cluster.start_cluster_sync()
        [launcher] = cluster.engines.values()
        [job_id] = launcher.submitted
        slurm.run("scancel", job_id).check_returncode()
        rc = cluster.connect_client_sync()
        t0 = time.monotonic()
        with pytest.raises(ProcessExited, match="cancelled from outside ipcluster"):
            rc.wait_for_engines(1, timeout=60)  # the client's own wait sees the job's end too
        assert time.monotonic() - t0 < 10
        [jobs] = cluster.job_states().values()
        assert jobs[0]["state"] == "cancelled"
        rc.close()
    finally:
        stop_and_check(cluster, slurm)


def test_a_python_process_that_exits_leaves_no_job_behind(slurm: Slurm, tmp_path: Path) -> None:
    """A script that starts a cluster and exits without stopping it: its jobs are cancelled at exit
    (they would otherwise sit in their 120 s prologue)."""
    script = f"""
import sys
from tests.launchers.batch_scenarios import make_cluster
from pathlib import Path
cluster = make_cluster(Path({str(tmp_path)!r}), "slurm", n=2, shutdown_atexit=True, prologue=["sleep 120"])
cluster.start_cluster_sync()
print("jobs", cluster.engines[next(iter(cluster.engines))].submitted, flush=True)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=str(Path(__file__).parents[2]))
    assert proc.returncode == 0, proc.stderr
    assert "jobs ['" in proc.stdout
    assert slurm.jobs_left() == [], slurm.jobs_left()


def test_engines_drain_before_the_walltime_and_no_task_is_lost(slurm: Slurm, tmp_path: Path) -> None:
    """With walltime 1 min and drain_time 40 s, the job's engine (under srun) gets SIGTERM about 20 s into
    the job: the task it runs is handed back (retried on a local engine), it unregisters and exits 0,
    and the job is reported as drained, not failed."""
    cluster = make_cluster(tmp_path, "slurm", n=1, walltime="1", drain_time=40, fanout="srun")
    try:
        rc = cluster.start_and_connect_sync()
        [launcher] = cluster.engines.values()
        [job_id] = launcher.submitted
        cluster.engine_launcher_class = "local"  # a second engine that no walltime ends
        cluster.start_engines_sync(1)
        rc.wait_for_engines(2, timeout=60)
        end = time.time() + 24  # past the drain, well before the walltime

        def task(end: float) -> str:
            import time

            time.sleep(max(0.0, end - time.time()))  # the work: still running when the drain comes
            return "finished"

        amr = rc.load_balanced_view().map_async(task, [end, end], chunksize=1, retries=1)
        assert amr.get(timeout=90) == ["finished", "finished"]
        with pytest.raises(ProcessExited, match=f"slurm job {job_id} .* stopped its processes 40 s before its walltime"):
            cluster.wait_for_engines_sync(rc, 2, timeout=60)
        [jobs] = cluster.job_states().values()
        assert jobs[0]["state"] == "done" and jobs[0]["reason"] == "drained before its walltime", jobs
        assert "ipcluster-batch: draining before the walltime" in Path(jobs[0]["output"]).read_text()
        rc.close()
    finally:
        stop_and_check(cluster, slurm)


def test_scaled_from_another_process_then_ipcluster_stop_cancels_everything(slurm: Slurm, tmp_path: Path) -> None:
    """Another interpreter adds an engine set (as jobs) through the cluster file; `ipcluster stop` then
    cancels the jobs of both engine sets."""
    cluster = make_cluster(tmp_path, "slurm", n=1, prologue=["sleep 120"])  # jobs that stay in the queue
    try:
        cluster.start_cluster_sync()
        code = (
            "import sys; from ipcluster.cluster import Cluster; "
            "c = Cluster.from_file(sys.argv[1]); print(c.start_engines_sync(2), flush=True)"
        )
        proc = subprocess.run([sys.executable, "-c", code, str(cluster.cluster_file)], capture_output=True,
                              text=True, timeout=90)
        assert proc.returncode == 0, proc.stderr
        assert len(slurm.jobs_left()) == 2  # ours and the other process's
        # `ipcluster stop` (another process again) cancels both sets' jobs, from the cluster file
        proc = subprocess.run(
            [sys.executable, "-m", "ipcluster", "stop", f"--profile-dir={cluster.profile_dir}",
             f"--cluster-id={cluster.cluster_id}"],
            capture_output=True, text=True, timeout=90,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert slurm.jobs_left() == []
    finally:
        stop_and_check(cluster, slurm)

"""Engines as real Son of Grid Engine jobs (qsub) on a single-node cell started by the fixture."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ipcluster.error import ProcessExited

from .batch_scenarios import bad_prologue_is_reported, make_cluster, run_px_and_map, stop_and_check
from .infra_batch import SGE, sge  # noqa: F401  (fixture)

pytestmark = [pytest.mark.sge, pytest.mark.timeout(240)]


def test_engines_in_a_job_array_run_px_and_map_then_nothing_is_left(sge: SGE, tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path, "sge", n=3, engines_per_job=2)
    t0 = time.monotonic()
    try:
        rc = cluster.start_and_connect_sync()
        ready = time.monotonic() - t0
        [jobs] = cluster.job_states().values()
        assert [j["processes"] for j in jobs] == [2, 1]  # an array of two tasks; the last runs one engine
        assert all(j["state"] == "running" for j in jobs)
        run_px_and_map(rc, 3)
        launcher = next(iter(cluster.engines.values()))
        print(f"sge: 3 engines ready {ready:.1f} s after start; queue commands {dict(launcher.command_counts)}")
        stop_and_check(cluster, sge, rc)
    finally:
        stop_and_check(cluster, sge)


def test_a_job_with_a_bad_prologue_is_reported_with_exit_code_and_output(sge: SGE, tmp_path: Path) -> None:
    bad_prologue_is_reported("sge", sge, tmp_path, n=1)


def test_a_job_deleted_from_outside_is_reported(sge: SGE, tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path, "sge", n=1, prologue=["sleep 120"])
    try:
        cluster.start_cluster_sync()
        [launcher] = cluster.engines.values()
        [job_id] = launcher.submitted
        sge.run("qdel", job_id).check_returncode()
        rc = cluster.connect_client_sync()
        # qstat lists a deleted job as "dr" only briefly; if no poll saw that, the job just left the queue
        # without finishing its script, and SGE keeps no exit code ipcluster could read in time
        with pytest.raises(ProcessExited, match=f"sge job {job_id} of .* (was cancelled from outside ipcluster|"
                                                "left the queue without finishing its job script)"):
            cluster.wait_for_engines_sync(rc, 1, timeout=60)
        [jobs] = cluster.job_states().values()
        assert jobs[0]["state"] in ("cancelled", "ended")
        rc.close()
    finally:
        stop_and_check(cluster, sge)

"""A cluster whose engines are real Slurm jobs, as the panel shows it: its jobs and their states."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from traitlets.config import Config

from ipcluster import Cluster
from tests.launchers.infra_batch import Slurm, slurm  # noqa: F401  (fixture)

from .conftest import card_of, stream
from .jupyter import JupyterServer, start_server

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def batch_server(slurm: Slurm, tmp_path: Path) -> Iterator[JupyterServer]:  # noqa: F811
    """A Jupyter server started after the Slurm fixture, so that its squeue finds the daemons."""
    srv = start_server(tmp_path, extra_args=("--ClusterManager.job_poll_interval=0.5",))
    try:
        yield srv
    finally:
        srv.stop()


async def test_engines_queued_as_batch_jobs_show_with_their_jobs_state(
    batch_server: JupyterServer, slurm: Slurm  # noqa: F811
) -> None:
    c = Config()
    c.Cluster.engine_launcher_class = "slurm"
    c.SlurmLauncher.status_interval = 0.5
    c.SlurmLauncher.cancel_timeout = 30.0
    c.SlurmLauncher.prologue = ["sleep 120"]  # the job runs, its engine does not start: nothing registers
    cluster = Cluster(config=c, n=1, ipython_dir=str(batch_server.ipython_dir), profile="batch", log_level="WARN",
                      controller_timeout=30)
    await cluster.start_cluster()
    key = f"batch:{cluster.cluster_id}"
    try:
        [launcher] = cluster.engines.values()
        [job_id] = launcher.submitted
        async with stream(batch_server) as ws:
            view = await ws.until(lambda v: any(j["state"] == "running" for j in card_of(v, key).get("jobs", [])))
            card = card_of(view, key)
            assert card["batch"] == "slurm" and card["engines_requested"] == 1
            assert card.get("engines_registered", 0) == 0
            [job] = card["jobs"]
            assert job["job_id"] == job_id and job["n"] == 1 and job["set"] in cluster.engines
            slurm.run("scancel", job_id).check_returncode()
            await ws.until(lambda v: any(j["state"] in ("cancelled", "ended") for j in card_of(v, key).get("jobs", [])))
    finally:
        await cluster.stop_cluster()
        await asyncio.to_thread(lambda: slurm.jobs_left() == [] or pytest.fail(f"jobs left: {slurm.jobs_left()}"))

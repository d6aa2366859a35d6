"""What a Cluster asks of its batch launchers: job states, the job script, jobs still alive, and
what a start would submit (``ipcluster start --dry-run``).

Kept apart from :mod:`.cluster` so that the Cluster's own code is the same for every launcher:
only here is a launcher asked whether it submits batch jobs.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..error import IPClusterError
from ..launchers import Launcher
from ..launchers.batch import BatchLauncher
from . import argv

if TYPE_CHECKING:
    from .cluster import Cluster


def job_states(launchers: Mapping[str, Launcher | None]) -> dict[str, list[dict[str, Any]]]:
    """Each batch launcher's jobs as of its last status poll, by engine-set id (or "controller")."""
    return {k: v.job_states() for k, v in launchers.items() if isinstance(v, BatchLauncher)}


def job_script(launcher: Launcher, count: int) -> str:
    """The script ``launcher`` would submit for ``count`` engines; nothing is submitted."""
    if not isinstance(launcher, BatchLauncher):
        raise IPClusterError(f"engine launcher {type(launcher).__name__} does not submit job scripts")
    return launcher.job_script(count)


def active_jobs(launchers: Iterable[Launcher | None]) -> list[str]:
    """Ids of batch jobs that may still be pending or running."""
    return [j for launcher in launchers if isinstance(launcher, BatchLauncher) for j in launcher.jobs.active]


async def check_jobs(launchers: Iterable[Launcher | None]) -> None:
    """Raise the error of a batch job already known to have ended (one status poll each)."""
    for launcher in launchers:
        if isinstance(launcher, BatchLauncher):
            await launcher.refresh()
            launcher.check_running()


async def poll_jobs(cluster: "Cluster") -> dict[str, list[dict[str, Any]]]:
    """Ask the queue for the state of every batch job of ``cluster`` now (one status command per
    engine set), without raising their errors; return :meth:`Cluster.job_states`. For
    ``ipcluster status`` and ``list``, which run in a process that did not start the cluster."""
    for launcher in (cluster.controller, *cluster.engines.values()):
        if isinstance(launcher, BatchLauncher) and launcher.jobs.active:
            await launcher.refresh(interval=0)
    return cluster.job_states()


def summary(states: Mapping[str, list[dict[str, Any]]]) -> str:
    """``"2 running, 1 pending"``: how many jobs are in each state (``"-"`` without batch jobs)."""
    counts: dict[str, int] = {}
    for jobs in states.values():
        for job in jobs:
            counts[str(job["state"])] = counts.get(str(job["state"]), 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "-"


def engine_preview(cluster: "Cluster") -> Launcher:
    """The launcher a new engine set of ``cluster`` would get, for looking at, not starting."""
    return cluster._make_launcher(cluster.engine_launcher_class, argv=argv.engine(cluster), name="engines-<id>")


def dry_run(cluster: "Cluster", n: int | None = None) -> str:
    """What starting ``n`` engines (default ``cluster.n``) would do, exactly, without doing it:
    the job script a batch launcher would submit, else the command each engine process runs."""
    launcher = engine_preview(cluster)
    count = cluster.engine_count(n)
    if isinstance(launcher, BatchLauncher):
        return launcher.job_script(count)
    return f"# {count} engine process(es) by the {type(launcher).__name__}, each running:\n{shlex.join(launcher.argv)}\n"

"""What a Cluster asks of its batch launchers: job states, the job script, jobs still alive.

Kept apart from :mod:`.cluster` so that the Cluster's own code is the same for every launcher:
only here is a launcher asked whether it submits batch jobs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..error import IPClusterError
from ..launchers import Launcher
from ..launchers.batch import BatchLauncher


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

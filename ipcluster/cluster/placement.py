"""Where a launcher's engines run, as far as the Cluster needs to know: how many, and whether they
can reach the controller.

Launchers describe themselves through optional attributes rather than a wider base class:
``remote_hosts`` (hosts other than this one, for the SSH launcher), ``engines_per_process``
(one ``mpiexec`` runs several engines) and ``expected_processes`` (engines that a batch
launcher's pending and running jobs will bring).
"""

from __future__ import annotations

from ..error import LauncherError
from ..launchers import Launcher
from ..protocol.connection import is_loopback


def engines_in(launcher: Launcher, running_only: bool) -> int:
    """How many engines a launcher's processes run: one each, unless the launcher says otherwise
    (``engines_per_process``: one ``mpiexec`` runs all the ranks of its set)."""
    expected = getattr(launcher, "expected_processes", None)
    if expected is not None and running_only:  # batch jobs: pending ones will bring engines too
        return int(expected())
    per_process = getattr(launcher, "engines_per_process", None)
    procs = [p for p in launcher.processes if p.running or not running_only]
    return sum(int(per_process(p)) for p in procs) if per_process else len(procs)


def check_reachable(launcher: Launcher, controller_ip: str) -> None:
    """Refuse engines on other hosts when the controller listens on loopback only: they would
    wait for a controller they can never reach."""
    remote = list(getattr(launcher, "remote_hosts", []) or [])
    if remote and is_loopback(controller_ip):
        raise LauncherError(
            f"engines on {', '.join(remote)} cannot reach a controller that listens only on "
            f"{controller_ip}: set c.Cluster.controller_ip = '0.0.0.0' (or an address of this host "
            f"that they can reach; `ipcluster start --ip=0.0.0.0`, `Cluster(controller_ip=...)`)"
        )


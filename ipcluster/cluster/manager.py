"""The clusters recorded in a profile, as seen by a process that did not start them.

The ``ipcluster`` command (and, later, a Jupyter server) knows clusters only through their state
files. These functions find them, stop one found that way, and clean up after those whose
controller has died. They go through :class:`~ipcluster.cluster.Cluster` restored from the file,
so stopping from elsewhere takes the same path as stopping from the process that started it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable
from typing import Any

from traitlets.config import Configurable

from ..error import IPClusterError
from ..launchers.process import pid_alive
from ..protocol.connection import remove_socket_folder, security_dir
from . import owner, state as state_mod
from .cluster import Cluster


@dataclass(frozen=True)
class ClusterRecord:
    """One cluster state file, read once; ``state`` is None when the file cannot be read."""

    path: Path
    state: dict[str, Any] | None

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> ClusterRecord:
        try:
            state: dict[str, Any] | None = state_mod.read_state(path)
        except IPClusterError:
            state = None
        return cls(Path(path), state)

    @property
    def cluster_id(self) -> str:
        return state_mod.cluster_id_of(self.path)

    @property
    def running(self) -> bool:
        """Whether the recorded controller is still running (the cluster is alive)."""
        return self.state is not None and state_mod.state_controller_alive(self.state)

    @property
    def controller_pid(self) -> int | None:
        """The recorded controller's pid (running or not)."""
        procs = ((self.state or {}).get("controller") or {}).get("processes") or [{}]
        pid = procs[0].get("pid")
        return int(pid) if pid is not None else None

    def engine_pids(self) -> list[int]:
        """The recorded engines that are still running."""
        return state_mod.state_engine_pids(self.state) if self.state is not None else []


def find_cluster(profile_dir: str | os.PathLike[str], cluster_id: str) -> ClusterRecord | None:
    """The record of cluster ``cluster_id`` in a profile, or None if it has no state file."""
    path = state_mod.cluster_file(profile_dir, cluster_id)
    return ClusterRecord.read(path) if path.exists() else None


def find_clusters(profile_dir: str | os.PathLike[str]) -> list[ClusterRecord]:
    """The records of every cluster in a profile (running or not), sorted by cluster id."""
    return [ClusterRecord.read(path) for path in state_mod.cluster_files(profile_dir)]


async def stop_recorded(state: dict[str, Any], parent: Configurable | None = None) -> Cluster:
    """Stop every process a state file records, and make sure an ``ipcluster`` owner exits.

    Returns the restored, stopped cluster.
    """
    cluster = Cluster.from_dict(state, parent=parent)
    await cluster.stop_cluster()
    await owner.wait_for_owner(cluster)
    return cluster


async def clean_profile(profile_dir: str | os.PathLike[str], parent: Configurable | None = None) -> list[str]:
    """Remove the files of every cluster in a profile whose controller is not running.

    State files, connection files (with their socket folders) and log folders go; engines such a
    cluster left running are stopped first. Running clusters are left alone. Returns what was
    removed, for the caller to report.
    """
    pdir = Path(profile_dir)
    running: set[str] = set()
    removed: list[str] = []
    for record in find_clusters(pdir):
        if record.running:
            running.add(record.cluster_id)
            continue
        if record.state is not None:
            await stop_recorded(record.state, parent)  # leftover engines, connection files
        record.path.unlink(missing_ok=True)
        removed.append(f"cluster '{record.cluster_id}'")
    for folder in sorted((pdir / "log").glob(f"{state_mod.STATE_PREFIX}*")):
        if folder.is_dir() and folder.name[len(state_mod.STATE_PREFIX) :] not in running:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    for conn in sorted(security_dir(pdir).glob("ipcontroller*-*.json")):
        info = state_mod.read_json(conn)
        try:
            pid = int((info or {}).get("pid", 0))
        except (TypeError, ValueError):
            pid = 0
        if not pid_alive(pid):
            conn.unlink(missing_ok=True)
            removed.append(str(conn))
            removed.extend(remove_socket_folder(info))
    return removed


class ClusterManager:
    """Every cluster recorded in an IPython directory's profiles, as :class:`Cluster` objects.

    ipyparallel's ``ClusterManager().load_clusters()``: a notebook, the JupyterLab panel or a
    script can find clusters started anywhere (``ipcluster start``, ``Cluster()`` in another
    process) and stop or scale them, since a Cluster made from its file drives the running one.
    Keys are ``"<profile>:<cluster_id>"``.
    """

    def __init__(self, ipython_dir: str | os.PathLike[str] | None = None) -> None:
        self.ipython_dir = ipython_dir
        self.clusters: dict[str, Cluster] = {}

    def load_clusters(
        self,
        profile_dirs: Iterable[str | os.PathLike[str]] | None = None,
        profile_dir: str | os.PathLike[str] | None = None,
    ) -> dict[str, Cluster]:
        """Read the cluster files of ``profile_dirs`` (default: every profile); return them all.

        Clusters whose files were removed since the last call are dropped; unreadable files are
        skipped, so one broken file does not hide the other clusters.
        """
        dirs = [Path(profile_dir)] if profile_dir else [Path(p) for p in (profile_dirs or state_mod.profile_dirs(self.ipython_dir))]
        found: dict[str, Cluster] = {}
        for pdir in dirs:
            profile = pdir.name.removeprefix("profile_")
            for record in find_clusters(pdir):
                key = f"{profile}:{record.cluster_id}"
                try:
                    found[key] = self.clusters.get(key) or Cluster.from_file(cluster_file=str(record.path))
                except IPClusterError:
                    continue
        self.clusters = found
        return dict(found)

    def get_cluster(self, key: str) -> Cluster:
        """The cluster loaded under ``key`` (``"<profile>:<cluster_id>"``)."""
        try:
            return self.clusters[key]
        except KeyError:
            raise IPClusterError(f"no cluster {key!r}; loaded: {sorted(self.clusters)}") from None

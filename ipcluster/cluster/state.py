"""Where a cluster's files live, and how to find the clusters recorded in a profile.

A running cluster records itself in ``<profile_dir>/security/cluster-<cluster_id>.json`` (see
:meth:`Cluster.to_dict <ipcluster.cluster.Cluster.to_dict>`), so that another process (the
``ipcluster`` command, a Jupyter server) can list and stop it. Its processes' output goes to
``<profile_dir>/log/cluster-<cluster_id>/``.
"""

from __future__ import annotations

import json
import os
import random
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from ..error import IPClusterError
from ..launchers.process import pid_alive
from ..protocol.connection import (
    read_json_file,
    connection_file_name,
    default_ipython_dir,
    profile_dir as default_profile_dir,
    remove_socket_folder,
    security_dir,
)

STATE_PREFIX = "cluster-"


def new_cluster_id() -> str:
    """A fresh cluster id: ``<epoch seconds>-<4 random characters>``."""
    suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=4))
    return f"{int(time.time())}-{suffix}"


def cluster_file(profile_dir: str | os.PathLike[str], cluster_id: str) -> Path:
    """The state file of cluster ``cluster_id`` in a profile (which need not exist)."""
    return security_dir(profile_dir) / f"{STATE_PREFIX}{cluster_id}.json"


def log_dir(profile_dir: str | os.PathLike[str], cluster_id: str) -> Path:
    """The folder holding the output of a cluster's processes."""
    return Path(profile_dir) / "log" / f"{STATE_PREFIX}{cluster_id}"


def cluster_id_of(path: str | os.PathLike[str]) -> str:
    """The cluster id a state file is named for."""
    name = Path(path).name
    return name[len(STATE_PREFIX) : -len(".json")]


def read_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a cluster state file, with an error that says what is wrong."""
    state = read_json_file(path, "cluster state file", "the cluster is not running")
    if not isinstance(state, dict) or "cluster" not in state:
        raise IPClusterError(f"{path} is not a cluster state file (no 'cluster' section)")
    return state


def state_controller_alive(state: dict[str, Any]) -> bool:
    """Whether the controller recorded in a state dict is still running."""
    controller = state.get("controller") or {}
    procs = controller.get("processes") or []
    return any(pid_alive(int(p["pid"]), p.get("create_time")) for p in procs)


def state_engine_pids(state: dict[str, Any], alive_only: bool = True) -> list[int]:
    """Engine pids recorded in a state dict (by default only the running ones)."""
    pids = []
    for engine_set in (state.get("engines") or {}).values():
        for p in engine_set.get("processes") or []:
            if not alive_only or pid_alive(int(p["pid"]), p.get("create_time")):
                pids.append(int(p["pid"]))
    return pids


def profile_dirs(ipython_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Every ``profile_*`` folder in an IPython directory, sorted by name."""
    base = Path(ipython_dir) if ipython_dir else default_ipython_dir()
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and p.name.startswith("profile_"))


def cluster_files(profile_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """The cluster state files in one profile, sorted by name."""
    sec = security_dir(profile_dir)
    if sec.is_dir():
        yield from sorted(sec.glob(f"{STATE_PREFIX}*.json"))


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None if it is missing or not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def clear_stale_files(profile_dir: str | os.PathLike[str], cluster_id: str) -> None:
    """Refuse to start over a running cluster; remove what a dead one left behind.

    A stale connection file would make a new controller look ready before it is.
    """
    path = cluster_file(profile_dir, cluster_id)
    if path.exists():
        saved = read_json(path) or {}
        if saved and state_controller_alive(saved):
            pid = saved["controller"]["processes"][0]["pid"]
            raise IPClusterError(f"cluster {cluster_id!r} is already running in {profile_dir} (controller pid {pid})")
        path.unlink(missing_ok=True)
    for role in ("client", "engine"):
        conn = security_dir(profile_dir) / connection_file_name(role, cluster_id)
        info = read_json(conn)
        if info is not None and pid_alive(int(info.get("pid", 0))):
            raise IPClusterError(f"a controller (pid {info['pid']}) is already serving {conn.name} in {profile_dir}")
        conn.unlink(missing_ok=True)
        remove_socket_folder(info)


def profile_config(kwargs: dict[str, Any]) -> Config | None:
    """The Cluster section of the profile's ``ipcluster_config.py`` (profile from Cluster kwargs)."""
    pdir = kwargs.get("profile_dir") or default_profile_dir(kwargs.get("profile", "default"), kwargs.get("ipython_dir"))
    path = Path(pdir).expanduser() / "ipcluster_config.py"
    if not path.exists():
        return None
    loaded = PyFileConfigLoader(path.name, path=str(path.parent)).load_config()
    return Config({"Cluster": loaded["Cluster"]}) if "Cluster" in loaded else None

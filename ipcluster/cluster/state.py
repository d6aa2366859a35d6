"""A cluster's files: where they live, and the state file that lets other processes find it.

A running cluster records itself in ``<profile_dir>/security/cluster-<cluster_id>.json`` (see
:meth:`Cluster.to_dict <ipcluster.cluster.Cluster.to_dict>`), so that another process (the
``ipcluster`` command, a Jupyter server) can list and stop it. Its processes' output goes to
``<profile_dir>/log/cluster-<cluster_id>/``.

Writing, reading back and restoring that file is kept here, apart from the Cluster's lifecycle:
the format changes for other reasons (new launchers recording job ids) than starting and stopping.
"""

from __future__ import annotations

import json
import os
import random
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from ..error import IPClusterError, LauncherError
from ..launchers import Launcher, find_launcher_class, launcher_class_name
from ..launchers.process import pid_alive
from ..protocol.connection import (
    read_json_file,
    connection_file_name,
    default_ipython_dir,
    profile_dir as default_profile_dir,
    remove_socket_folder,
    security_dir,
    write_private_json,
)

if TYPE_CHECKING:
    from collections.abc import Container

    from .cluster import Cluster

    C = TypeVar("C", bound=Cluster)

STATE_PREFIX = "cluster-"

# the keys of to_dict()["cluster"] that are traits, restored by from_dict()
SAVED_TRAITS = (
    "n", "profile", "profile_dir", "cluster_id", "controller_ip", "controller_args", "engine_args",
    "log_level", "engine_timeout", "controller_timeout", "stop_timeout", "owner_kind", "engine_launcher_class",
    "controller_launcher_class",
)


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


def resolve_profile_dir(
    profile: str = "default",
    profile_dir: str | os.PathLike[str] | None = None,
    ipython_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """A profile's folder: ``profile_dir`` if given (made absolute), else ``<ipython_dir>/profile_<profile>``."""
    if profile_dir:
        return Path(profile_dir).expanduser().absolute()
    return default_profile_dir(profile, ipython_dir)


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


def remove_connection_files(profile_dir: str | os.PathLike[str], cluster_id: str, pids: Container[int]) -> None:
    """Remove the connection files (and socket folders) of a stopped controller, one of ``pids``.

    A file written by another controller (a restart since) is left alone.
    """
    for role in ("client", "engine"):
        path = security_dir(profile_dir) / connection_file_name(role, cluster_id)
        info = read_json(path)
        if info is None or info.get("pid") is None or info["pid"] in pids:
            path.unlink(missing_ok=True)
            remove_socket_folder(info)


def profile_config(kwargs: dict[str, Any]) -> Config | None:
    """The profile's ``ipcluster_config.py`` (profile from Cluster kwargs): its Cluster section
    configures the Cluster, its launcher sections (``c.LocalEngineSetLauncher...``) the launchers."""
    pdir = kwargs.get("profile_dir") or default_profile_dir(kwargs.get("profile", "default"), kwargs.get("ipython_dir"))
    path = Path(pdir).expanduser() / "ipcluster_config.py"
    if not path.exists():
        return None
    loaded = PyFileConfigLoader(path.name, path=str(path.parent)).load_config()
    return Config(loaded) if loaded else None


# -- one Cluster's state, written and restored ---------------------------------------------------


def cluster_to_dict(cluster: Cluster) -> dict[str, Any]:
    """The state of ``cluster`` as its state file records it (see :meth:`Cluster.to_dict`)."""
    info: dict[str, Any] = {name: getattr(cluster, name) for name in SAVED_TRAITS}
    info["class"] = f"{type(cluster).__module__}:{type(cluster).__qualname__}"
    info["controller_launcher_class"] = _launcher_name(cluster.controller_launcher_class)
    info["engine_launcher_class"] = _launcher_name(cluster.engine_launcher_class)
    info["start_time"] = cluster.start_time
    info["owner_pid"] = cluster.owner_pid
    info["owner_create_time"] = cluster.owner_create_time
    return {
        "cluster": info,
        "controller": cluster.controller.to_dict() if cluster.controller else None,
        "engines": {set_id: launcher.to_dict() for set_id, launcher in cluster.engines.items()},
        "engine_deaths": [death.to_dict() for death in cluster.supervisor.deaths],  # restarted or not
    }


def cluster_from_dict(cls: type[C], d: dict[str, Any], **kwargs: Any) -> C:
    """A ``cls`` rebuilt from :func:`cluster_to_dict` (see :meth:`Cluster.from_dict`)."""
    info = d["cluster"]
    traits = {name: info[name] for name in SAVED_TRAITS if name in info}
    traits.setdefault("shutdown_atexit", False)
    traits.setdefault("load_profile", False)
    traits.update(kwargs)
    cluster = cls(**traits)
    cluster.start_time = info.get("start_time")
    cluster.owner_pid = info.get("owner_pid")
    cluster.owner_create_time = info.get("owner_create_time")
    if d.get("controller"):
        cluster.controller = restore_launcher(cluster, d["controller"])
    for set_id, launcher_state in (d.get("engines") or {}).items():
        cluster.engines[set_id] = restore_launcher(cluster, launcher_state)
    return cluster


def restore_launcher(cluster: Cluster, launcher_state: dict[str, Any]) -> Launcher:
    """A launcher of ``cluster`` rebuilt from its recorded state: its processes can be signalled."""
    cls = find_launcher_class(launcher_state.get("class", "local"))
    return cls.from_dict(launcher_state, parent=cluster, stop_timeout=cluster.stop_timeout)


def write_state(cluster: Cluster, removed: Container[str] = ()) -> None:
    """Write the state file of ``cluster``, keeping engine sets another process recorded there."""
    adopt_recorded_engine_sets(cluster, removed)
    write_private_json(cluster.cluster_file, cluster.to_dict())


def owned_state(cluster: Cluster) -> dict[str, Any] | None:
    """The saved state, if the state file describes this cluster's controller."""
    try:
        saved = read_state(cluster.cluster_file)
    except IPClusterError:
        return None
    procs = (saved.get("controller") or {}).get("processes") or [{}]
    if cluster.controller is None or procs[0].get("pid") not in cluster.controller.pids:
        return None
    return saved


def adopt_recorded_engine_sets(cluster: Cluster, removed: Container[str] = ()) -> None:
    """Take over engine sets that another process (``ipcluster engines``) recorded for ``cluster``.

    ``removed`` are sets this cluster stopped itself; the file may still list them.
    """
    saved = owned_state(cluster)
    if saved is None:
        return
    for set_id, launcher_state in (saved.get("engines") or {}).items():
        if set_id not in cluster.engines and set_id not in removed:
            try:
                cluster.engines[set_id] = restore_launcher(cluster, launcher_state)
            except LauncherError:
                cluster.log.warning("cannot restore engine set %s from %s", set_id, cluster.cluster_file, exc_info=True)


def _launcher_name(value: Any) -> str:
    return launcher_class_name(value) if isinstance(value, type) else str(value)

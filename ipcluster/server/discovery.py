"""Find every cluster recorded in an IPython directory, from the cluster files alone.

The panel lists clusters however they were started (from the panel, ``Cluster()`` in a
notebook, ``ipcluster start``) because every one of them writes
``<profile_dir>/security/cluster-<id>.json`` while it runs. Reading those files, rather than
remembering what this server started, is what makes the list complete. Only the file format
(``Cluster.to_dict()``) is relied on here, not the cluster package's internals.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psutil

PREFIX = "cluster-"


def cluster_key(profile: str, cluster_id: str) -> str:
    """The panel's id for a cluster: ``<profile>:<cluster id>`` (cluster ids may be empty)."""
    return f"{profile}:{cluster_id}"


def split_key(key: str) -> tuple[str, str]:
    """Inverse of :func:`cluster_key` (profile names do not contain ':')."""
    profile, sep, cluster_id = key.partition(":")
    if not sep:
        raise ValueError(f"not a cluster key: {key!r} (expected '<profile>:<cluster id>')")
    return profile, cluster_id


def profile_dirs(ipython_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Profile name -> folder, for every ``profile_*`` folder of ``ipython_dir``."""
    base = Path(ipython_dir)
    if not base.is_dir():
        return {}
    return {p.name[len("profile_"):]: p for p in sorted(base.iterdir()) if p.is_dir() and p.name.startswith("profile_")}


def pid_alive(pid: int, create_time: float | None = None) -> bool:
    """Whether process ``pid`` runs and, if ``create_time`` is given, is the same process (not a reused pid)."""
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - float(create_time)) > 1.0:
            return False
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except (psutil.Error, ValueError):
        return False


def _alive(launcher: dict[str, Any] | None) -> list[dict[str, Any]]:
    procs = (launcher or {}).get("processes") or []
    return [p for p in procs if pid_alive(int(p.get("pid", 0)), p.get("create_time"))]


#: job states of a batch launcher's table (launchers/jobs.py) that are over
FINISHED_JOBS = frozenset({"done", "failed", "cancelled", "timeout", "ended"})


def batch_engines(launcher: dict[str, Any]) -> int | None:
    """Engines a batch engine set asked for, in the jobs its file records as not over (the
    processes of a batch job do not run here, so they cannot be counted by pid); None for a
    launcher that submits no jobs."""
    if not launcher.get("system"):
        return None
    table = launcher.get("jobs") or {}
    states = table.get("jobs") or {}
    counts = table.get("engines") or {}
    return sum(int(counts.get(job_id, 0)) for job_id, entry in states.items()
               if not (isinstance(entry, list) and entry and entry[0] in FINISHED_JOBS))


def summarize(profile: str, path: Path, state: dict[str, Any]) -> dict[str, Any]:
    """The card of one cluster file: what the panel lists without talking to the controller."""
    info = state.get("cluster") or {}
    cluster_id = str(info.get("cluster_id", path.name[len(PREFIX):-len(".json")]))
    engine_sets: dict[str, int] = {}
    batch = ""
    for set_id, launcher in (state.get("engines") or {}).items():
        jobs = batch_engines(launcher)
        if jobs is not None:
            batch = str(launcher["system"])
        engine_sets[set_id] = len(_alive(launcher)) if jobs is None else jobs
    controller_up = bool(_alive(state.get("controller")))
    card: dict[str, Any] = {
        "key": cluster_key(profile, cluster_id),
        "cluster_id": cluster_id,
        "profile": profile,
        "profile_dir": str(path.parent.parent),
        "cluster_file": str(path),
        "launcher": str(info.get("engine_launcher_class", "local")),
        "controller_launcher": str(info.get("controller_launcher_class", "local")),
        "state": "running" if controller_up else "dead",
        "engines_requested": sum(engine_sets.values()),
        "engine_sets": engine_sets,
        "owner": str(info.get("owner_kind", "python")),
    }
    if info.get("start_time"):
        card["start_time"] = float(info["start_time"])
    if batch:
        card["batch"] = batch  # the system its engines are jobs of (the manager asks it for their states)
    return card


def find_clusters(ipython_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Cards of every cluster file in every profile of ``ipython_dir``, by key.

    A file that cannot be read (being written, or not a cluster file) is skipped: the next
    listing sees it.
    """
    found: dict[str, dict[str, Any]] = {}
    for profile, pdir in profile_dirs(ipython_dir).items():
        security = pdir / "security"
        if not security.is_dir():
            continue
        for path in sorted(security.glob(f"{PREFIX}*.json")):
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(state, dict) and "cluster" in state:
                card = summarize(profile, path, state)
                found[card["key"]] = card
    return found

"""Start, find and stop clusters: one controller plus sets of engines in a profile.

This package is the one door to clusters: the ``ipcluster`` command (and anything else that
manages clusters) uses the names exported here, never the launchers or the roles directly.
"""

from .cluster import Cluster
from .daemon import Daemon, report_ready, start_daemon
from .jobs import dry_run, poll_jobs, summary as job_summary
from .manager import ClusterManager, ClusterRecord, clean_profile, find_cluster, find_clusters, stop_recorded
from .options import ClusterOptions, resolve_engine_count
from .state import cluster_file, new_cluster_id, profile_dirs, resolve_profile_dir

__all__ = [
    "Cluster",
    "ClusterManager",
    "ClusterOptions",
    "ClusterRecord",
    "Daemon",
    "clean_profile",
    "dry_run",
    "cluster_file",
    "find_cluster",
    "find_clusters",
    "job_summary",
    "new_cluster_id",
    "poll_jobs",
    "profile_dirs",
    "report_ready",
    "resolve_engine_count",
    "resolve_profile_dir",
    "start_daemon",
    "stop_recorded",
]

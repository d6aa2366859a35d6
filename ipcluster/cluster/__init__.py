"""Start, find and stop clusters: one controller plus sets of engines in a profile."""

from .cluster import Cluster
from .state import cluster_file, new_cluster_id

__all__ = ["Cluster", "cluster_file", "new_cluster_id"]

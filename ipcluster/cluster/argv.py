"""The command lines a Cluster gives its launchers: what the controller and each engine run.

Launchers run these as they are (locally, over SSH, in a batch job), so they name the Python
that runs the Cluster and pass every setting as a flag: nothing depends on the environment of
the host where they end up.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cluster import Cluster


def controller(cluster: "Cluster") -> list[str]:
    """``python -m ipcluster.controller`` with the cluster's profile, address and log level."""
    argv = [
        sys.executable, "-m", "ipcluster.controller",
        f"--profile-dir={cluster.profile_dir}",
        f"--ip={cluster.controller_ip}",
        f"--log-level={cluster._log_level_name()}",
    ]
    if cluster.cluster_id:
        argv.append(f"--cluster-id={cluster.cluster_id}")
    return [*argv, *cluster.controller_args]


def engine(cluster: "Cluster") -> list[str]:
    """``python -m ipcluster.engine`` reading the cluster's engine connection file."""
    return [
        sys.executable, "-m", "ipcluster.engine",
        f"--file={cluster.connection_file('engine')}",
        f"--timeout={cluster.controller_timeout}",
        f"--log-level={cluster._log_level_name()}",
        *cluster.engine_args,
    ]

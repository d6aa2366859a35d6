"""Hosts a dask ``LocalCluster`` (scheduler + worker processes) for the dask adapter.

``python -m benchmarks.systems.dask_host N WORKDIR`` prints the scheduler address, then keeps the
cluster until its standard input closes.
"""

import sys

from distributed import LocalCluster

from .dask_system import _cluster_kwargs

if __name__ == "__main__":
    n, workdir = int(sys.argv[1]), sys.argv[2]
    with LocalCluster(**_cluster_kwargs(n, workdir)) as cluster:
        print(cluster.scheduler_address, flush=True)
        sys.stdin.read()

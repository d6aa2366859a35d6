"""dask.distributed: a ``LocalCluster`` with worker processes (one thread each, as engines).

Workload 1 times ``LocalCluster(...)`` + ``Client`` in this process, as users start it. The
cluster that workloads 2-6 share is hosted by a separate process (``dask_host``), because a
``LocalCluster`` runs its scheduler inside the process that creates it: hosted apart, the
scheduler's memory can be read without the client's arrays in it, as the other systems' are.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from .base import System


def _cluster_kwargs(n: int, workdir: str) -> dict[str, Any]:
    return dict(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                local_directory=workdir)


class DaskSystem(System):
    name = "dask"

    @staticmethod
    def version() -> str:
        import distributed

        return distributed.__version__

    def start(self, n: int, *, session: bool = False) -> None:
        from distributed import Client, LocalCluster

        self.host: subprocess.Popen[str] | None = None
        self.cluster = None
        if session:
            self.host = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.systems.dask_host", str(n), str(self.workdir)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert self.host.stdout is not None
            address = self.host.stdout.readline().strip()
            if not address:
                raise RuntimeError(f"dask host process exited ({self.host.wait()}) before starting")
            self.client = Client(address)
        else:
            self.cluster = LocalCluster(**_cluster_kwargs(n, str(self.workdir)))
            self.client = Client(self.cluster)
        self.client.wait_for_workers(n, timeout=60)
        self.workers = sorted(self.client.scheduler_info()["workers"])
        self.n = n

    def stop(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        if self.host is not None:
            assert self.host.stdin is not None
            self.host.stdin.close()  # the host closes its cluster and exits
            try:
                self.host.wait(30)
            except subprocess.TimeoutExpired:
                self.host.kill()
                self.host.wait()

    def call_direct(self, f: Any) -> Any:
        return self.client.submit(f, pure=False, workers=self.workers[:1]).result()

    def call_balanced(self, f: Any) -> Any:
        return self.client.submit(f, pure=False).result()

    def map(self, f: Any, items: list[Any]) -> list[Any]:
        return self.client.gather(self.client.map(f, items, pure=False))

    def submit_many(self, f: Any, n: int) -> None:
        futures = [self.client.submit(f, pure=False) for _ in range(n)]
        self.client.gather(futures)

    def push(self, a: Any) -> None:
        self.pushed = self.client.scatter(a, workers=self.workers[:1], hash=False)

    def pull(self) -> Any:
        return self.pushed.result()

    def scatter(self, a: Any) -> None:
        import numpy as np

        self.parts = self.client.scatter(np.array_split(a, self.n), hash=False)

    def gather(self) -> Any:
        import numpy as np

        return np.concatenate(self.client.gather(self.parts))

    def controller_pids(self) -> list[int]:
        return [self.host.pid] if self.host is not None else [os.getpid()]

    def engine_pids(self) -> list[int]:
        return list(self.client.run(os.getpid).values())

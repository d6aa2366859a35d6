"""ipcluster and ipyparallel: the same public API, so one adapter drives both.

Only public names are used: ``Cluster(n=N)``, ``start_and_connect_sync()``, ``rc[0]``, ``rc[:]``,
``rc.load_balanced_view()``, ``apply_sync``/``apply_async``, ``map_sync``, ``push``/``pull``,
``scatter``/``gather`` and ``stop_cluster_sync()``. Profiles live under ``$IPYTHONDIR``, which the
worker points at its scratch folder.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from .. import measure
from .base import System


class _IPPStyle(System):
    module = "?"
    #: a substring of the controller's command line (what the Cluster launches)
    controller_marker = "?"

    @classmethod
    def version(cls) -> str:
        return getattr(importlib.import_module(cls.module), "__version__", "?")

    def start(self, n: int, *, session: bool = False) -> None:
        ipp = importlib.import_module(self.module)
        self.cluster = ipp.Cluster(n=n)
        self.rc = self.cluster.start_and_connect_sync()
        if len(self.rc.ids) < n:  # start_and_connect waits for n engines; check, don't trust
            self.rc.wait_for_engines(n, timeout=60)
        self.e0 = self.rc[0]
        self.all = self.rc[:]
        self.lview = self.rc.load_balanced_view()

    def stop(self) -> None:
        try:
            close = getattr(self.rc, "close", None)
            if close is not None:
                close()
        finally:
            self.cluster.stop_cluster_sync()

    def call_direct(self, f: Any) -> Any:
        return self.e0.apply_sync(f)

    def call_balanced(self, f: Any) -> Any:
        return self.lview.apply_sync(f)

    def map(self, f: Any, items: list[Any]) -> list[Any]:
        return self.lview.map_sync(f, items)

    def submit_many(self, f: Any, n: int) -> None:
        ars = [self.lview.apply_async(f) for _ in range(n)]
        for ar in ars:
            ar.get()

    def push(self, a: Any) -> None:
        self.e0.push({"bench_a": a}, block=True)

    def pull(self) -> Any:
        return self.e0.pull("bench_a", block=True)

    def scatter(self, a: Any) -> None:
        self.all.scatter("bench_x", a, block=True)

    def gather(self) -> Any:
        return self.all.gather("bench_x", block=True)

    def controller_pids(self) -> list[int]:
        top = measure.find(lambda p: self.controller_marker in measure.cmdline(p))
        return measure.with_children(top)  # ipyparallel's schedulers are the controller's children

    def engine_pids(self) -> list[int]:
        return list(self.all.apply_sync(os.getpid))


class IPClusterSystem(_IPPStyle):
    name = "ipcluster"
    module = "ipcluster"
    controller_marker = "ipcluster.controller"


class IPyParallelSystem(_IPPStyle):
    name = "ipyparallel"
    module = "ipyparallel"
    controller_marker = "ipyparallel.controller"

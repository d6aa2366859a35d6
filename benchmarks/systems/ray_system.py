"""Ray: a local ``ray.init(num_cpus=N)``; remote functions for load-balanced work, actors as engines.

Ray has no "engine" to address, so the direct round trip and the array transfers use N actors
(``num_cpus=0``, so they never take a CPU from the tasks): ``push`` passes the array to an actor
method that keeps it (``ray.put`` + task), ``pull`` gets it back from that actor. ``ray.get`` of
an array maps the shared-memory object store without copying: that is what Ray users get, and
the numbers say so.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from .. import measure
from .base import System


class RaySystem(System):
    name = "ray"

    @staticmethod
    def version() -> str:
        import ray

        return ray.__version__

    def start(self, n: int, *, session: bool = False) -> None:
        import ray

        # the object store and logs go to a short private path (Unix socket paths are limited)
        self.tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")
        ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False, _temp_dir=self.tmp,
                 object_store_memory=2 * 1024**3)
        self._remote: dict[Any, Any] = {}
        # ready = N worker processes have each run a task (Ray starts workers lazily)
        pid = ray.remote(lambda: os.getpid())
        ray.get([pid.remote() for _ in range(n)])
        self.n = n
        self.actors: list[Any] = []
        if session:
            @ray.remote(num_cpus=0)
            class Engine:
                def noop(self):
                    return None

                def keep(self, a):
                    self.a = a

                def give(self):
                    return self.a

                def pid(self):
                    return os.getpid()

            self.actors = [Engine.remote() for _ in range(n)]  # type: ignore[attr-defined]
            ray.get([a.noop.remote() for a in self.actors])

    def stop(self) -> None:
        import shutil

        import ray

        self.actors = []
        ray.shutdown()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _r(self, f: Any) -> Any:
        import ray

        r = self._remote.get(f)
        if r is None:
            r = self._remote[f] = ray.remote(f)
        return r

    def call_direct(self, f: Any) -> Any:
        import ray

        return ray.get(self.actors[0].noop.remote())

    def call_balanced(self, f: Any) -> Any:
        import ray

        return ray.get(self._r(f).remote())

    def map(self, f: Any, items: list[Any]) -> list[Any]:
        import ray

        r = self._r(f)
        return ray.get([r.remote(x) for x in items])

    def submit_many(self, f: Any, n: int) -> None:
        import ray

        r = self._r(f)
        ray.get([r.remote() for _ in range(n)])

    def push(self, a: Any) -> None:
        import ray

        ray.get(self.actors[0].keep.remote(a))

    def pull(self) -> Any:
        import ray

        return ray.get(self.actors[0].give.remote())

    def scatter(self, a: Any) -> None:
        import numpy as np
        import ray

        parts = np.array_split(a, self.n)
        ray.get([actor.keep.remote(p) for actor, p in zip(self.actors, parts)])

    def gather(self) -> Any:
        import numpy as np
        import ray

        return np.concatenate(ray.get([actor.give.remote() for actor in self.actors]))

    def controller_pids(self) -> list[int]:
        return measure.find(lambda p: _name(p) in ("gcs_server", "raylet"))

    def engine_pids(self) -> list[int]:
        return measure.find(lambda p: measure.cmdline(p).startswith("ray::"))


def _name(p: Any) -> str:
    try:
        return p.name()
    except Exception:
        return ""

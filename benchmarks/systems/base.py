"""The surface every system adapter offers to the workloads.

Each method is one user-level operation, done the way that system's users would do it; the
workloads in ``benchmarks.worker`` time these calls and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class System:
    name = "?"

    def __init__(self, workdir: Path) -> None:
        #: a private scratch folder (profile dirs, spill and temp dirs) removed after the run
        self.workdir = workdir

    @staticmethod
    def version() -> str:
        raise NotImplementedError

    # -- lifecycle (workload 1; the shared cluster of workloads 2-6) ----------------------------
    def start(self, n: int, *, session: bool = False) -> None:
        """Start a local cluster and return once ``n`` engines can take work.

        ``session=True`` for the long-lived cluster of workloads 2-6 (a system may then host
        its central process apart from this one, so that its memory can be read on its own)."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    # -- workload 2 ------------------------------------------------------------------------------
    def call_direct(self, f: Any) -> Any:
        """Run ``f()`` on one fixed engine and wait for the result."""
        raise NotImplementedError

    def call_balanced(self, f: Any) -> Any:
        """Run ``f()`` wherever the system's scheduler puts it, and wait for the result."""
        raise NotImplementedError

    # -- workloads 3 and 5 -----------------------------------------------------------------------
    def map(self, f: Any, items: list[Any]) -> list[Any]:
        """Load-balanced map with default flags; results in order."""
        raise NotImplementedError

    def submit_many(self, f: Any, n: int) -> None:
        """Submit ``f()`` ``n`` times without waiting (an ``apply_async`` loop), then wait for all."""
        raise NotImplementedError

    # -- workload 4 ------------------------------------------------------------------------------
    def push(self, a: Any) -> None:
        """Send array ``a`` to one engine, to be kept there."""
        raise NotImplementedError

    def pull(self) -> Any:
        """Fetch the array kept by :meth:`push`."""
        raise NotImplementedError

    def scatter(self, a: Any) -> None:
        """Split ``a`` over all engines, to be kept there."""
        raise NotImplementedError

    def gather(self) -> Any:
        """Fetch and concatenate the parts kept by :meth:`scatter`."""
        raise NotImplementedError

    # -- workload 6 ------------------------------------------------------------------------------
    def controller_pids(self) -> list[int]:
        """The system's central processes (controller, scheduler, GCS + raylet)."""
        raise NotImplementedError

    def engine_pids(self) -> list[int]:
        raise NotImplementedError

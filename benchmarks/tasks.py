"""The functions the workloads run on engines.

They are made inside :func:`make`, so every system ships them *by value* (cloudpickle), as it
would a function typed into a notebook: no engine, worker or Ray process has to import the
``benchmarks`` package, and no system gets the cheaper by-reference path that the others lack.
"""

from __future__ import annotations

from types import SimpleNamespace


def make() -> SimpleNamespace:
    def busy(seconds):
        """``seconds`` of CPU work: a busy loop, not a sleep."""
        import time

        end = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < end:
            n += 1
        return n

    def getpid():
        import os

        return os.getpid()

    return SimpleNamespace(
        noop=lambda: None,  # the issue's `apply_sync(lambda: None)`
        noop1=lambda x: None,  # the same with one argument, for map
        busy=busy,
        getpid=getpid,
    )

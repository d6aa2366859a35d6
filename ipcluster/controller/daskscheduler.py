"""The dask.distributed Scheduler that ``Client.become_dask`` starts in the controller process.

As in ipyparallel, the scheduler runs where the controller does: engines and clients already
reach the controller, so they reach the scheduler too. It runs on a thread and event loop of its
own, so dask's work never delays the router's; :meth:`DaskScheduler.start` and
:meth:`~DaskScheduler.stop` block (the router calls them in a worker thread) until the scheduler
listens or is closed.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .._aio import LoopThread
from ..protocol.daskworker import require_distributed

WILDCARDS = ("*", "0.0.0.0", "")


class DaskScheduler:
    """At most one dask Scheduler, on its own thread.

    Parameters
    ----------
    ip:
        The interface the controller listens on (``*`` for all); the scheduler listens there too.
    location:
        The address engines and clients reach the controller at; the scheduler's address uses it.
    timeout:
        Seconds to wait for the scheduler to start or to close.
    """

    def __init__(self, ip: str = "127.0.0.1", location: str = "127.0.0.1", timeout: float = 30.0,
                 log: logging.Logger | None = None) -> None:
        self.host = "0.0.0.0" if ip in WILDCARDS else ip
        self.location = location or self.host
        self.timeout = timeout
        self.log = log or logging.getLogger(__name__)
        self._lock = threading.Lock()
        self._thread: LoopThread | None = None
        self._scheduler: Any = None
        self._address = ""

    @property
    def address(self) -> str | None:
        """The running scheduler's address, or None."""
        return self._address or None

    def start(self, port: int = 0, scheduler_args: dict[str, Any] | None = None) -> str:
        """Start the scheduler unless one runs; return its address. Blocks: call it in a thread."""
        with self._lock:
            if self._scheduler is not None:
                return self._address
            distributed = require_distributed("the controller")
            args = dict(scheduler_args or {})
            chosen_host = "host" in args
            args.setdefault("host", self.host)
            args.setdefault("port", int(port))
            thread = LoopThread("ipcluster-dask-scheduler")
            try:
                scheduler = thread.run(self._start(distributed.Scheduler, args), self.timeout)
            except BaseException:
                thread.stop()
                raise
            self._thread, self._scheduler = thread, scheduler
            if chosen_host or args["host"] != "0.0.0.0":
                self._address = str(scheduler.address)
            else:  # listening everywhere: say where engines find the controller
                self._address = f"tcp://{self.location}:{scheduler.port}"
            self.log.info("dask scheduler started at %s", self._address)
            return self._address

    @staticmethod
    async def _start(cls: Any, args: dict[str, Any]) -> Any:
        scheduler = cls(**args)
        await scheduler  # listens
        return scheduler

    def stop(self) -> bool:
        """Close the scheduler and its thread; return whether one was running. Blocks."""
        with self._lock:
            thread, scheduler = self._thread, self._scheduler
            if thread is None:
                return False
            self._thread = self._scheduler = None
            self._address = ""
            try:
                thread.run(scheduler.close(), self.timeout)
            finally:
                thread.stop(self.timeout)
            self.log.info("dask scheduler stopped")
            return True

"""A dask.distributed worker inside an engine process (``Client.become_dask``).

:func:`start_worker` and :func:`stop_worker` run on engines: the client sends them in ordinary
``apply_request``\\ s, pickled by reference, so they live here, where an engine imports them
without importing the client. :func:`require_distributed` is shared by the three roles: each
names the missing package the same way.

The worker runs on a thread and event loop of its own, not on the engine's loop (the one
exception to "one loop per engine"): the engine runs each task on its loop's thread, so a worker
there would stop answering dask's scheduler for as long as any task ran, and starting or closing
it could not be waited for from inside a task. On its own loop, :func:`start_worker` returns once
the worker is registered with the scheduler, and :func:`stop_worker` once it is closed and its
threads are gone. With ``nanny=True`` a dask ``Nanny`` runs there instead and the worker is its
child process, as dask's nanny does it.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from .._aio import LoopThread

#: seconds to wait for a worker to start or stop, unless the caller says
TIMEOUT = 30.0

_lock = threading.Lock()
_running: list[tuple[LoopThread, Any]] = []  # at most one (thread, Worker or Nanny)


def require_distributed(who: str) -> Any:
    """The ``distributed`` module, or an ImportError that says where it is missing and how to
    install it (``who``: "the client", "the controller", "engine 3"...)."""
    try:
        import distributed
    except ImportError as e:
        raise ImportError(
            f"become_dask() needs dask.distributed in {who} ({sys.executable}): pip install distributed"
        ) from e
    return distributed


def start_worker(address: str, nanny: bool = False, timeout: float = TIMEOUT, **worker_args: Any) -> str:
    """Runs on an engine: start a dask Worker (a Nanny when ``nanny``) for the scheduler at
    ``address``, with ``worker_args`` as its keywords; return the worker's address once it has
    registered with the scheduler. If this engine already has one, return that one's address."""
    distributed = require_distributed("this engine")
    with _lock:
        if _running:
            return str(_running[0][1].address)
        cls = distributed.Nanny if nanny else distributed.Worker
        thread = LoopThread("ipcluster-dask-worker")
        try:
            server = thread.run(_start(cls, address, worker_args), timeout)
        except BaseException:
            thread.stop()
            raise
        _running.append((thread, server))
        return str(server.address)


async def _start(cls: Any, address: str, kwargs: dict[str, Any]) -> Any:
    server = cls(address, **kwargs)
    await server  # starts it: listens, registers with the scheduler
    return server


def stop_worker(timeout: float = TIMEOUT) -> bool:
    """Runs on an engine: close its dask worker (and nanny) and their thread; return whether one
    was running."""
    with _lock:
        if not _running:
            return False
        thread, server = _running.pop()
        try:
            thread.run(server.close(), timeout)
        finally:
            thread.stop(timeout)
        return True


def worker_address() -> str | None:
    """Runs on an engine: the address of its dask worker, or None."""
    with _lock:
        return str(_running[0][1].address) if _running else None

"""Engines as the client numbers them, and the processes behind those numbers.

The client knows engines by id; launchers know processes by pid. These helpers bridge the two
(for ``Cluster.signal_engine`` and ``Cluster.restart_engine``) and wait for engines to register,
failing fast when one of the cluster's processes exits instead. They are the only places the
Cluster relies on the client's API, which is imported lazily by the caller.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Sequence
from typing import Any

from ..error import ClusterTimeout, IPClusterError
from ..launchers import Launcher
from ..launchers.process import Process


async def wait_registered(client: Any, n: int, timeout: float | None) -> None:
    """Wait until ``client`` sees ``n`` engines (its ``wait_for_engines``, without blocking a thread)."""
    result = client.wait_for_engines(n, timeout=timeout, block=False)
    if asyncio.isfuture(result) or asyncio.iscoroutine(result):
        await result
    elif hasattr(result, "result"):  # a concurrent.futures.Future
        await asyncio.wrap_future(result)


def pid_from_client(client: Any, engine_id: int) -> int | None:
    """The pid in the client's engine table, if the client exposes one.

    Looks for ``client.engine_info`` (a dict, or a method returning one) mapping engine ids to
    dicts with a ``"pid"``.
    """
    info = getattr(client, "engine_info", None)
    if callable(info):
        info = info()
    if isinstance(info, dict):
        entry = info.get(engine_id) or info.get(str(engine_id))
        if isinstance(entry, dict) and entry.get("pid"):
            return int(entry["pid"])
    return None


def id_of_pid(client: Any, pid: int) -> int | None:
    """The engine id the client knows the process ``pid`` by (the inverse of :func:`pid_from_client`)."""
    info = getattr(client, "engine_info", None)
    if callable(info):
        info = info()
    if isinstance(info, dict):
        for eid, entry in info.items():
            if isinstance(entry, dict) and entry.get("pid") == pid:
                return int(eid)
    return None


def process_of(client: Any, engine_id: int, launchers: Iterable[Launcher]) -> tuple[Launcher, int]:
    """The launcher, and the index in it, of the process behind engine ``engine_id``.

    The engine's pid is the one it registered with, which the controller tells every client;
    only a process one of ``launchers`` started is ever named.
    """
    pid = pid_from_client(client, engine_id)
    if not pid:
        raise IPClusterError(f"engine {engine_id} is not registered (engines: {client.ids})")
    for launcher in launchers:
        if pid in launcher.pids:
            return launcher, launcher.pids.index(pid)
    raise IPClusterError(f"engine {engine_id} (pid {pid}) was not started by this cluster")


async def wait_watching(
    client: Any,
    n: int,
    timeout: float,
    launchers: Sequence[Launcher],
    unconfirmed: Sequence[tuple[Launcher, Process]],
) -> None:
    """Wait until ``client`` sees ``n`` engines, failing as soon as a watched process exits.

    ``unconfirmed`` are the processes started since the last successful wait: they must not have
    exited already. Of the others, only those running now are watched (an engine that died long
    ago is not news). Raises :class:`~ipcluster.error.ProcessExited` or
    :class:`~ipcluster.error.ClusterTimeout`.
    """
    for launcher, proc in unconfirmed:
        if not proc.running:
            raise launcher.exited_error(proc, " before the engines registered")
    unbounded = math.isinf(timeout)  # the client was told to wait as long as it takes
    ready = asyncio.ensure_future(wait_registered(client, n, None if unbounded else timeout))
    exits = {
        asyncio.ensure_future(proc.wait()): (launcher, proc)
        for launcher in launchers
        for proc in launcher.processes
        if proc.running
    }
    # batch launchers poll their queue and return the error of a job that ended on its own
    jobs = {asyncio.ensure_future(launcher.watch_jobs()) for launcher in launchers if hasattr(launcher, "watch_jobs")}
    try:
        done, _ = await asyncio.wait(
            {ready, *exits, *jobs}, timeout=None if unbounded else timeout + 1, return_when=asyncio.FIRST_COMPLETED
        )
        if ready in done:
            ready.result()
            return
        for exit_task, (launcher, proc) in exits.items():
            if exit_task in done:
                raise launcher.exited_error(proc, " while waiting for engines to register")
        for job_task in jobs & done:
            raise job_task.result()
        raise ClusterTimeout(f"{n} engine(s) did not register within {timeout} s")
    finally:
        ready.cancel()
        for task in (*exits, *jobs):
            task.cancel()
        await asyncio.gather(ready, *exits, *jobs, return_exceptions=True)

"""Engines as the client numbers them, and the processes behind those numbers.

The client knows engines by id; launchers know processes by pid. These helpers bridge the two
(for ``Cluster.signal_engine``) and wait for engines to register. They are the only places the
Cluster relies on the client's API, which is imported lazily by the caller.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterable
from typing import Any

from ..launchers import Launcher

#: what an engine logs (EngineApp, at INFO) once it has registered
REGISTERED = re.compile(r"registered as engine (\d+)\b")
#: how much of the start of an engine's output to scan for that line
LOG_SCAN_BYTES = 64 * 1024


async def wait_registered(client: Any, n: int, timeout: float) -> None:
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


def pids_from_logs(launchers: Iterable[Launcher]) -> dict[int, int]:
    """Engine id -> pid, from the line each running engine wrote to its output when it registered."""
    found: dict[int, int] = {}
    for launcher in launchers:
        for proc in launcher.processes:
            if not proc.log_file or not proc.running:
                continue
            try:
                with open(proc.log_file, "rb") as f:
                    f.seek(proc.log_offset)
                    head = f.read(LOG_SCAN_BYTES).decode("utf-8", "replace")
            except OSError:
                continue
            match = REGISTERED.search(head)
            if match:
                found[int(match.group(1))] = proc.pid
    return found


async def ask_pid(client: Any, engine_id: int, timeout: float) -> int:
    """Ask the engine for its pid (answers only while it is idle)."""
    return (await ask_pids(client, [engine_id], timeout))[engine_id]


async def ask_pids(client: Any, ids: list[int], timeout: float) -> dict[int, int]:
    """Ask engines for their pids (they answer only while idle): engine id -> pid."""
    ar = client[ids].apply_async(os.getpid)
    pids = await asyncio.wait_for(asyncio.to_thread(ar.get, timeout), timeout + 1)
    return {eid: int(pid) for eid, pid in zip(ids, pids)}

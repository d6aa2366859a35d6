"""Engines as the client numbers them, and the processes behind those numbers.

The client knows engines by id; launchers know processes by pid. These helpers bridge the two
(for ``Cluster.signal_engine``) and wait for engines to register. They are the only places the
Cluster relies on the client's API, which is imported lazily by the caller.
"""

from __future__ import annotations

import asyncio
from typing import Any


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

"""Bytes per second the panel's websocket sends to a browser while a big map runs.

Starts a Jupyter server with the ipcluster extension, a cluster of N real engines, one
websocket client that says it is visible, and a load-balanced map of M no-op tasks
(``chunksize=1``, so every item is a task). Prints one JSON line: bytes, messages, seconds and
bytes per second received during the map.

    python -m benchmarks.panel_websocket --engines 16 --tasks 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

from tornado.websocket import websocket_connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ipcluster import Cluster  # noqa: E402
from tests.server.jupyter import start_server  # noqa: E402


def noop(x: int) -> int:
    return x


async def main(engines: int, tasks: int, panel: bool = True) -> dict[str, float]:
    server = start_server(Path(tempfile.mkdtemp(prefix="panel-bench-")))
    cluster = Cluster(ipython_dir=str(server.ipython_dir), n=engines, stop_timeout=5)
    try:
        client = await cluster.start_and_connect()
        # without the panel (--no-panel): no websocket, so the server samples nothing; for comparing map times
        conn = await websocket_connect(server.ws_url) if panel else None
        received: list[tuple[float, int]] = []
        stop = asyncio.Event()

        async def reader() -> None:
            while conn is not None and not stop.is_set():
                msg = await conn.read_message()
                if msg is None:
                    return
                received.append((time.monotonic(), len(msg)))

        task = asyncio.ensure_future(reader())
        await asyncio.sleep(2)  # the snapshot and a quiet period before the map (not measured)
        start = time.monotonic()
        ar = client.load_balanced_view().map_async(noop, range(tasks), chunksize=1)
        await asyncio.to_thread(ar.get, 600)
        end = time.monotonic()
        await asyncio.sleep(2)  # the last deltas of the map
        stop.set()
        if conn is not None:
            conn.close()
        task.cancel()
        during = [n for t, n in received if start <= t <= end + 2]
        seconds = end - start + 2
        client.close()
        return {
            "engines": engines, "tasks": tasks, "map_seconds": round(end - start, 2),
            "ws_bytes": sum(during), "ws_messages": len(during),
            "ws_bytes_per_second": round(sum(during) / seconds, 1),
            "ws_messages_per_second": round(len(during) / seconds, 2),
        }
    finally:
        await cluster.stop_cluster()
        server.stop()


if __name__ == "__main__":
    # `timeout` sends SIGTERM: leave through the finally blocks, which stop the cluster and the server
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, default=16)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--no-panel", action="store_true", help="no websocket: the map time without the panel")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.engines, args.tasks, not args.no_panel))))

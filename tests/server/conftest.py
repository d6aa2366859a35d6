"""Fixtures of the panel's server tests: a real Jupyter server with the extension, and its websocket."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from ipcluster.server.livestate import merge

from .jupyter import JupyterServer, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """One Jupyter server per test module (starting one takes seconds on a busy machine)."""
    srv = start_server(tmp_path_factory.mktemp("jupyter"))
    try:
        yield srv
    finally:
        srv.stop()
        assert srv.proc.poll() is not None


@pytest.fixture(autouse=True)
def no_leaked_clusters(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test stops every cluster it made: no controller or engine outlives it."""
    if "server" not in request.fixturenames:
        yield
        return
    srv: JupyterServer = request.getfixturevalue("server")
    yield
    _, body = srv.api("GET", "ipcluster/clusters")
    leftovers = [c for c in body["clusters"] if c["state"] not in ("created", "stopped")]
    for card in leftovers:
        srv.api("DELETE", f"ipcluster/clusters/{card['key']}")
    assert not leftovers, f"test left clusters running: {[c['key'] for c in leftovers]}"


class Stream:
    """The panel's websocket as a browser tab sees it: the merged view, and what was received."""

    def __init__(self, conn: WebSocketClientConnection) -> None:
        self.conn = conn
        self.view: dict[str, Any] = {"clusters": {}, "live": {}}
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.bytes = 0

    async def next(self, timeout: float = 30) -> dict[str, Any]:
        text = await asyncio.wait_for(self.conn.read_message(), timeout)
        assert text is not None, "the server closed the websocket"
        self.bytes += len(text)
        msg = json.loads(text)
        self.messages.append((time.monotonic(), msg))
        update = {k: v for k, v in msg.items() if k in ("clusters", "live")}
        if msg["t"] == "snapshot":
            self.view = {"clusters": {}, "live": {}, **update}
        else:
            self.view = merge(self.view, update)
        return msg

    async def until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        """Read messages until ``predicate(view)`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate(self.view):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"websocket view never matched; last view: {json.dumps(self.view)[:2000]}")
            await self.next(left)
        return self.view

    def send(self, msg: dict[str, Any]) -> None:
        self.conn.write_message(json.dumps(msg))


async def close_websocket(conn: WebSocketClientConnection, timeout: float = 10) -> None:
    """Close ``conn`` and wait until its socket is closed.

    tornado's ``close()`` only sends the close frame; the socket closes when the server's answer
    arrives. A test whose event loop ends before then leaves the socket to the garbage
    collector, which warns (a ResourceWarning that fails the whole run at exit).
    """
    conn.close()
    async with asyncio.timeout(timeout):
        while await conn.read_message() is not None:  # messages still queued, then None once closed
            pass


@asynccontextmanager
async def stream(server: JupyterServer) -> AsyncIterator[Stream]:
    conn = await asyncio.wait_for(websocket_connect(server.ws_url), 30)
    try:
        yield Stream(conn)
    finally:
        await close_websocket(conn)


def card_of(view: dict[str, Any], key: str) -> dict[str, Any]:
    return view["clusters"].get(key) or {}


def cluster_pids(cluster_file: str | Path) -> list[int]:
    """Controller and engine pids recorded in a cluster file."""
    state = json.loads(Path(cluster_file).read_text())
    launchers = [state.get("controller") or {}, *(state.get("engines") or {}).values()]
    return [int(p["pid"]) for launcher in launchers for p in launcher.get("processes") or []]


def wait_gone(pids: list[int], timeout: float = 30) -> None:
    """Wait for processes (not our children) to exit; fail if any is still running."""
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"still running: {alive}"

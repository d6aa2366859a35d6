"""The controller's dask scheduler (``become_dask_request`` / ``stop_dask_request``), in process:
answered once the scheduler is up, while the router goes on serving; errors are replies."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from .conftest import WAIT, Controller

distributed = pytest.importorskip("distributed")

START = {"port": 0, "scheduler_args": {"dashboard": False}}


@pytest.fixture
async def dask_controller(controller: Controller) -> AsyncIterator[Controller]:
    try:
        yield controller
    finally:
        await asyncio.to_thread(controller.router.dask.stop)


def scheduler_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "ipcluster-dask-scheduler"]


async def test_the_router_serves_other_queries_while_the_scheduler_starts(
        dask_controller: Controller, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def slow_start(port: int, args: dict[str, Any]) -> str:
        assert release.wait(WAIT)
        return "tcp://127.0.0.1:1"

    monkeypatch.setattr(dask_controller.router.dask, "start", slow_start)
    client = dask_controller.peer("client")
    await client.send("become_dask_request", START)
    await client.send("queue_request", {"targets": None, "verbose": False})
    _, first = await client.recv()
    assert first["msg_type"] == "queue_reply"  # while become_dask waits
    release.set()
    _, second = await client.recv()
    assert second["msg_type"] == "become_dask_reply" and second["content"]["address"] == "tcp://127.0.0.1:1"


async def test_a_scheduler_starts_once_listens_and_stops(dask_controller: Controller) -> None:
    client = dask_controller.peer("client")
    await client.send("become_dask_request", START)
    _, reply = await client.recv(timeout=30)
    assert reply["content"]["status"] == "ok", reply["content"]
    address = reply["content"]["address"]
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    assert host == "127.0.0.1"
    with socket.create_connection((host, int(port)), timeout=WAIT):
        pass  # it listens
    await client.send("become_dask_request", START)
    _, again = await client.recv(timeout=30)
    assert again["content"]["address"] == address  # the one running
    assert scheduler_threads() == ["ipcluster-dask-scheduler"]
    await client.send("stop_dask_request", {})
    _, stopped = await client.recv(timeout=30)
    assert stopped["content"] == {"status": "ok", "stopped": True}
    assert scheduler_threads() == []
    await client.send("stop_dask_request", {})
    _, none = await client.recv(timeout=30)
    assert none["content"] == {"status": "ok", "stopped": False}


async def test_a_controller_without_distributed_answers_an_error_naming_it(
        dask_controller: Controller, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    client = dask_controller.peer("client")
    await client.send("become_dask_request", START)
    _, reply = await client.recv()
    content = reply["content"]
    assert reply["msg_type"] == "become_dask_reply" and content["status"] == "error"
    assert content["ename"] == "ImportError" and "the controller" in content["evalue"]
    assert "pip install distributed" in content["evalue"] and scheduler_threads() == []

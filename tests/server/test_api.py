"""The panel's REST API and websocket against a real Jupyter server and real clusters."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from urllib.parse import quote

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from ipcluster import Cluster

from .conftest import card_of, close_websocket, cluster_pids, stream, wait_gone
from .jupyter import JupyterServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


async def call(server: JupyterServer, method: str, path: str, body: object = None, **kw: object) -> tuple[int, dict]:
    return await asyncio.to_thread(server.api, method, path, body, **kw)


def url(key: str, action: str = "") -> str:
    return f"ipcluster/clusters/{quote(key, safe='')}" + (f"/{action}" if action else "")


async def test_requests_need_the_servers_token(server: JupyterServer) -> None:
    status, body = await call(server, "GET", "ipcluster/clusters", token=False)
    assert status == 403 and "message" in body
    status, body = await call(server, "GET", "ipcluster/options")
    assert status == 200 and "local" in body["launchers"] and "default" in body["profiles"]


def login_cookie(server: JupyterServer) -> str:
    """The cookie a browser gets after opening the server's URL with its token."""
    with urllib.request.urlopen(f"{server.url}api/status?token={server.token}", timeout=30) as resp:
        cookies = resp.headers.get_all("Set-Cookie") or []
    return "; ".join(c.split(";")[0] for c in cookies)


async def test_websocket_needs_login_and_the_servers_origin(server: JupyterServer) -> None:
    """A browser is logged in by a cookie; a page from another origin cannot use it."""
    anonymous = server.ws_url.split("?")[0]
    with pytest.raises(HTTPClientError) as err:
        await asyncio.wait_for(websocket_connect(anonymous), 30)
    assert err.value.code == 403
    cookie = await asyncio.to_thread(login_cookie, server)
    foreign = HTTPRequest(anonymous, headers={"Cookie": cookie, "Origin": "http://elsewhere.example"})
    with pytest.raises(HTTPClientError) as err:
        await asyncio.wait_for(websocket_connect(foreign), 30)
    assert err.value.code == 403
    same = HTTPRequest(anonymous, headers={"Cookie": cookie, "Origin": server.url.rstrip("/")})
    conn = await asyncio.wait_for(websocket_connect(same), 30)
    try:
        msg = await asyncio.wait_for(conn.read_message(), 30)
        assert msg is not None and json.loads(msg)["t"] == "snapshot"
    finally:
        await close_websocket(conn)


async def test_errors_are_json_with_a_message(server: JupyterServer) -> None:
    status, body = await call(server, "POST", "ipcluster/clusters", {"n": "two"})
    assert status == 400 and "whole number" in body["message"]
    status, body = await call(server, "POST", "ipcluster/clusters", {"launcher": "carrier-pigeon"})
    assert status == 400 and "unknown launcher 'carrier-pigeon'" in body["message"]
    status, body = await call(server, "GET", url("default:nope"))
    assert status == 404 and body == {"message": "no cluster 'default:nope'"}
    status, card = await call(server, "POST", "ipcluster/clusters", {"n": 1})
    assert status == 201 and card["state"] == "created"
    status, body = await call(server, "POST", url(card["key"], "scale"), {"n": 3})
    assert status == 409 and "not running" in body["message"]
    status, body = await call(server, "POST", url(card["key"], "scale"), {})
    assert status == 400 and "number of engines" in body["message"]
    status, _ = await call(server, "DELETE", url(card["key"]))
    assert status == 204


async def test_create_start_scale_stop_delete(server: JupyterServer) -> None:
    async with stream(server) as ws:
        await ws.next()  # the snapshot
        status, card = await call(server, "POST", "ipcluster/clusters", {"profile": "panel", "n": 1, "start": True})
        assert status == 201, card
        key = card["key"]
        assert card["state"] == "running" and card["profile"] == "panel" and card["launcher"] == "local"
        assert card["engines_requested"] == 1 and card["owner"] == "panel"
        await ws.until(lambda v: card_of(v, key).get("engines_registered") == 1)
        pids = cluster_pids(card["cluster_file"])

        status, card = await call(server, "POST", url(key, "scale"), {"n": 3})
        assert status == 200 and card["engines_requested"] == 3, card
        await ws.until(lambda v: card_of(v, key).get("engines_registered") == 3)
        pids += cluster_pids(card["cluster_file"])

        status, card = await call(server, "POST", url(key, "scale"), {"n": 1})
        assert status == 200 and card["engines_requested"] == 1, card
        await ws.until(lambda v: card_of(v, key).get("engines_registered") == 1)

        status, card = await call(server, "POST", url(key, "stop"))
        assert status == 200 and card["state"] == "stopped", card
        wait_gone(pids)
        await ws.until(lambda v: card_of(v, key).get("state") == "stopped")

        status, _ = await call(server, "DELETE", url(key))
        assert status == 204
        await ws.until(lambda v: key not in v["clusters"])
        status, body = await call(server, "GET", "ipcluster/clusters")
        assert key not in {c["key"] for c in body["clusters"]}


async def test_cluster_started_elsewhere_is_listed_scaled_and_stopped(server: JupyterServer) -> None:
    cluster = Cluster(ipython_dir=str(server.ipython_dir), profile="notebook", n=1, stop_timeout=5)
    await cluster.start_cluster()
    try:
        key = f"notebook:{cluster.cluster_id}"
        async with stream(server) as ws:
            await ws.until(lambda v: card_of(v, key).get("engines_registered") == 1)
            assert card_of(ws.view, key)["owner"] == "python"
            status, card = await call(server, "POST", url(key, "scale"), {"n": 2})
            assert status == 200 and card["engines_requested"] == 2, card
            await ws.until(lambda v: card_of(v, key).get("engines_registered") == 2)
            pids = cluster_pids(card["cluster_file"])
            status, card = await call(server, "POST", url(key, "stop"))
            assert status == 200, card
            await ws.until(lambda v: key not in v["clusters"])  # its file is gone with it
            wait_gone(pids)
    finally:
        await cluster.stop_cluster()


async def test_cluster_started_by_the_ipcluster_command_is_listed_and_stopped(server: JupyterServer) -> None:
    env = {**os.environ, "IPYTHONDIR": str(server.ipython_dir)}
    argv = [sys.executable, "-m", "ipcluster", "start", "-n", "1", "--daemonize", "--profile=cli", "--cluster-id=cmd"]
    out = await asyncio.to_thread(
        subprocess.run, argv, env=env, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL
    )
    assert out.returncode == 0, out.stdout + out.stderr
    cluster_file = server.ipython_dir / "profile_cli" / "security" / "cluster-cmd.json"
    pids = cluster_pids(cluster_file)
    owner = json.loads(cluster_file.read_text())["cluster"]["owner_pid"]
    try:
        async with stream(server) as ws:
            await ws.until(lambda v: card_of(v, "cli:cmd").get("engines_registered") == 1)
            assert card_of(ws.view, "cli:cmd")["owner"] == "ipcluster"
            status, card = await call(server, "POST", url("cli:cmd", "stop"))
            assert status == 200 and card["state"] == "stopped", card
            await ws.until(lambda v: "cli:cmd" not in v["clusters"])
        wait_gone([*pids, owner])  # the `ipcluster start` daemon exits with its cluster
    finally:
        if cluster_file.exists():
            subprocess.run([*argv[:3], "stop", "--profile=cli", "--cluster-id=cmd"], env=env, timeout=60,
                           capture_output=True, stdin=subprocess.DEVNULL)


async def test_live_view_progress_stream_rate_bound_and_pause(server: JupyterServer) -> None:
    cluster = Cluster(ipython_dir=str(server.ipython_dir), n=2, stop_timeout=5)
    client = await cluster.start_and_connect()
    key = f"default:{cluster.cluster_id}"
    try:
        async with stream(server) as ws:
            await ws.until(lambda v: key in v["live"] and len(v["live"][key]["engines"]) == 2)
            first = len(ws.messages)
            started = time.monotonic()
            bytes_before = ws.bytes
            ar = client.load_balanced_view().map_async(time.sleep, [0.01] * 400, chunksize=1)
            view = await ws.until(lambda v: v["live"][key]["progress"].get("done", 0) > 0)
            assert view["live"][key]["progress"]["total"] > 0
            assert view["live"][key]["progress"]["rate"] >= 0
            await ws.until(lambda v: v["live"][key]["completed"] >= 400)
            assert any(key in msg.get("stream", {}) for _, msg in ws.messages[first:])
            assert await asyncio.to_thread(ar.get, 60) == [None] * 400
            elapsed = time.monotonic() - started
            rate = (ws.bytes - bytes_before) / elapsed
            print(f"websocket: {ws.bytes - bytes_before} bytes in {elapsed:.1f} s = {rate:.0f} B/s during a 400-task map")
            # a bounded rate: on average at most 1 / (sample_interval / 2) = 4 messages a second
            times = [t for t, _ in ws.messages[first:]]
            assert len(times) <= 4 * (times[-1] - times[0]) + 2

            ws.send({"visible": False})  # the panel is hidden: nothing more is sent
            with pytest.raises(asyncio.TimeoutError):
                while True:  # anything already in flight arrives within one interval; then silence
                    await ws.next(timeout=1.5)
            ws.send({"visible": True})
            msg = await ws.next()
            assert msg["t"] == "snapshot" and key in msg["clusters"]
    finally:
        client.close()
        await cluster.stop_cluster()


def groups_named(view: dict, key: str, name: str) -> list[dict]:
    return [g for g in view["live"].get(key, {}).get("groups", {}).values() if g["name"] == name]


async def test_live_view_counts_a_labelled_maps_items_and_shows_a_failure_with_its_traceback(
    server: JupyterServer,
) -> None:
    cluster = Cluster(ipython_dir=str(server.ipython_dir), n=2, stop_timeout=5)
    client = await cluster.start_and_connect()
    key = f"default:{cluster.cluster_id}"

    def square(x: int) -> int:
        import time

        time.sleep(0.01)
        if x == 13:
            raise ValueError(f"no square for {x}")
        return x * x

    try:
        async with stream(server) as ws:
            await ws.until(lambda v: key in v["live"] and len(v["live"][key]["engines"]) == 2)
            first = len(ws.messages)
            view = client.load_balanced_view(label="squares")
            # 20 tasks of 10 items: progress is counted in items
            ar = view.map_async(square, range(200), chunksize=10, return_exceptions=True)
            v = await ws.until(lambda v: any(0 < g["d"] < 200 for g in groups_named(v, key, "squares")))
            (running,) = groups_named(v, key, "squares")
            assert running["n"] == 200 and running["kind"] == "label" and running["fn"] == "square"
            assert "done" not in running and running["rate"] >= 0
            v = await ws.until(lambda v: bool(v["live"][key]["failures"]))
            (failure,) = v["live"][key]["failures"].values()
            assert failure["n"] == "ValueError" and failure["v"] == "no square for 13" and failure["g"] == "squares"
            assert failure["e"] in (0, 1)
            assert "Traceback" in failure["tb"] and "in square" in failure["tb"]
            assert failure["tb"].rstrip().endswith("ValueError: no square for 13")
            results = await asyncio.to_thread(ar.get, 60)
            errors = [r for r in results if isinstance(r, Exception)]
            assert len(errors) == 1 and len(results) == 191  # the failed chunk's one exception
            v = await ws.until(lambda v: any(g.get("done") for g in groups_named(v, key, "squares")))
            (done,) = groups_named(v, key, "squares")
            assert (done["n"], done["d"], done["f"]) == (200, 190, 10)
            assert v["live"][key]["fns"][0] == "square"
            # the stream: items done per function per engine, and the failed chunk apart
            ticks = [t for _, msg in ws.messages[first:] for t in msg.get("stream", {}).get(key, [])]
            assert sum(n for t in ticks for n in t[2].get("0", {}).values()) == 190
            assert sum(n for t in ticks if len(t) > 3 for n in t[3].values()) == 10
    finally:
        client.close()
        await cluster.stop_cluster()

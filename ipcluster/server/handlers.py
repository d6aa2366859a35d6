"""Tornado handlers of the panel: REST under ``/ipcluster/clusters`` and one websocket per tab.

They only translate HTTP to :class:`~.manager.ClusterManager` calls and back. Every handler
requires the Jupyter server's own authentication (``@tornado.web.authenticated`` for REST,
``ws_authenticated`` for the websocket, whose origin is checked by the server as for kernels), so
the panel is exactly as protected as the server, behind JupyterHub or a proxy too: nothing
listens on another port.

Errors are JSON ``{"message": ...}`` with a 4xx/5xx status, as ``APIHandler`` does for
``HTTPError``; the browser shows the message.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import tornado.web
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from .livestate import TabStream
from .manager import ClusterManager, PanelError


class _Base(APIHandler):
    @property
    def manager(self) -> ClusterManager:
        return self.settings["ipcluster_manager"]  # type: ignore[no-any-return]

    def body(self) -> dict[str, Any]:
        if not self.request.body:
            return {}
        try:
            data = json.loads(self.request.body)
        except ValueError as e:
            raise PanelError(400, f"request body is not JSON: {e}") from e
        if not isinstance(data, dict):
            raise PanelError(400, "request body must be a JSON object")
        return data

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, PanelError):
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"message": exc.message}))
            return
        super().write_error(status_code, **kwargs)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, PanelError):
            status_code = exc.status
        super().send_error(status_code, **kwargs)


class ClustersHandler(_Base):
    """``GET``: every cluster's card; ``POST {profile, n, launcher, start}``: create (and start) one."""

    @tornado.web.authenticated
    async def get(self) -> None:
        self.reply({"clusters": list(self.manager.cards().values())})

    @tornado.web.authenticated
    async def post(self) -> None:
        body = self.body()
        card = await self.manager.create(
            profile=body.get("profile", "default"), n=body.get("n"), launcher=body.get("launcher", "local")
        )
        if body.get("start"):
            card = await self.manager.start(card["key"])
        self.reply(card, 201)


class ClusterHandler(_Base):
    """``GET``: one card; ``DELETE``: stop if running and forget."""

    @tornado.web.authenticated
    async def get(self, key: str) -> None:
        self.reply(self.manager.get(unquote(key)))

    @tornado.web.authenticated
    async def delete(self, key: str) -> None:
        await self.manager.delete(unquote(key))
        self.set_status(204)
        self.finish()


class ClusterActionHandler(_Base):
    """``POST .../start {n}``, ``.../scale {n}``, ``.../stop``: lifecycle actions; reply with the card."""

    @tornado.web.authenticated
    async def post(self, key: str, action: str) -> None:
        key, body = unquote(key), self.body()
        if action == "start":
            card = await self.manager.start(key, body.get("n"))
        elif action == "scale":
            if "n" not in body:
                raise PanelError(400, "scale needs the number of engines: {\"n\": <engines>}")
            card = await self.manager.scale(key, body["n"])
        elif action == "stop":
            card = await self.manager.stop(key)
        else:
            raise PanelError(404, f"unknown action {action!r} (start, scale, stop)")
        self.reply(card)


class OptionsHandler(_Base):
    """``GET``: profiles and launchers for the New dialog."""

    @tornado.web.authenticated
    async def get(self) -> None:
        self.reply(self.manager.options())


class StreamHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """One websocket per browser tab: a snapshot, then deltas at most every sample interval.

    The browser sends ``{"visible": true|false}`` when the panel is shown or hidden, and
    ``{"watch": [keys]}`` for the clusters whose live view it shows. Messages:
    ``{"t": "snapshot"|"delta", "clusters": {...}, "live": {...}, "stream": {key: [[tick, time, {eid: n}]]}}``.
    """

    @property
    def manager(self) -> ClusterManager:
        return self.settings["ipcluster_manager"]  # type: ignore[no-any-return]

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        res = super().get(*args, **kwargs)
        if res is not None:
            await res

    def open(self, *args: Any, **kwargs: Any) -> None:
        super().open(*args, **kwargs)
        self.tab = TabStream()
        self.watch: set[str] = set()
        self.bytes_sent = 0
        self.manager.subscribe(self, self.flush_update)
        self.manager.set_visible(self, True)
        self.flush_update()  # the snapshot, without waiting for the next sample

    def on_message(self, message: str | bytes) -> None:
        try:
            msg = json.loads(message)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        if "watch" in msg and isinstance(msg["watch"], list):
            self.watch = {str(k) for k in msg["watch"]}
        if "visible" in msg:
            visible = bool(msg["visible"])
            if visible:
                self.tab.reset()  # it missed deltas while hidden: start again from a snapshot
            self.manager.set_visible(self, visible)

    def flush_update(self) -> None:
        """Send what changed since the last message to this tab (nothing if nothing did)."""
        cards = self.manager.current_cards()
        live, stream = {}, {}
        for key in self.watch or cards:
            view = self.manager.live_view(key)
            if view is not None:
                live[key] = view
                stream[key] = self.manager.stream_since(key, 0)
        msg = self.tab.message({"clusters": cards, "live": live}, stream)
        if msg is None:
            return
        text = json.dumps(msg, separators=(",", ":"))
        try:
            self.write_message(text)
        except WebSocketClosedError:
            self.manager.unsubscribe(self)
            return
        self.bytes_sent += len(text)

    def on_close(self) -> None:
        self.manager.unsubscribe(self)
        self.log.debug("ipcluster panel websocket closed after %d bytes", getattr(self, "bytes_sent", 0))

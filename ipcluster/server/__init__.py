"""Jupyter Server extension ``ipcluster``: the REST API and websocket behind the JupyterLab panel.

The extension is loaded by the server when ``jupyter_server_config.d/ipcluster.json`` (installed
with the package) enables ``ipcluster``; the server then calls
:func:`_load_jupyter_server_extension`, reached through ``ipcluster._jupyter_server_extension_points``.
It only adds handlers under ``<base_url>/ipcluster/`` and a :class:`~.manager.ClusterManager`;
nothing runs until a browser asks.

Routes (``<key>`` is ``<profile>:<cluster id>``, URL-encoded):

- ``GET /ipcluster/clusters``, ``POST /ipcluster/clusters`` (create; ``{"start": true}`` starts too)
- ``GET|DELETE /ipcluster/clusters/<key>``
- ``POST /ipcluster/clusters/<key>/(start|scale|stop)``
- ``GET /ipcluster/options``: profiles and launchers
- ``/ipcluster/stream``: the websocket of live deltas
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "ipcluster.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Add the panel's handlers to a running Jupyter server."""
    from jupyter_server.utils import url_path_join

    from .handlers import ClusterActionHandler, ClusterHandler, ClustersHandler, OptionsHandler, StreamHandler
    from .manager import ClusterManager

    manager = ClusterManager(parent=serverapp, log=serverapp.log)
    web_app = serverapp.web_app
    web_app.settings["ipcluster_manager"] = manager
    base = url_path_join(web_app.settings["base_url"], "ipcluster")
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "clusters"), ClustersHandler),
            (url_path_join(base, "clusters", "([^/]+)"), ClusterHandler),
            (url_path_join(base, "clusters", "([^/]+)", "(start|scale|stop|[^/]+)"), ClusterActionHandler),
            (url_path_join(base, "options"), OptionsHandler),
            (url_path_join(base, "stream"), StreamHandler),
        ],
    )
    serverapp.log.info("ipcluster panel: REST and websocket under %s", base)


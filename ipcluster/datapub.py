"""``publish_data`` (ipyparallel's ``ipyparallel.datapub``): an engine sends data to the client
while a task runs; the client reads it as ``ar.data``.

>>> def work():
...     from ipcluster.datapub import publish_data
...     for i in range(10):
...         publish_data({"step": i})
...         ...
>>> ar = view.apply_async(work)
>>> ar.data            # {"step": 4} while it runs: each publication updates the dict

Importing this module imports no process role, so a client may import it to send a function
that calls it; ``publish_data`` itself only works inside an engine.
"""

from __future__ import annotations

import sys
from typing import Any

from .protocol.datapub import MSG_TYPE, encode_data

__all__ = ["publish_data"]


def _engine_iopub() -> Any:
    """The IOPub publisher of the engine this code runs in."""
    app_module = sys.modules.get("ipcluster.engine.app")
    app = None
    if app_module is not None and app_module.EngineApp.initialized():
        app = app_module.EngineApp.instance()
    kernel = getattr(app, "kernel", None)
    if kernel is None:
        raise RuntimeError("publish_data() works only in code running on an ipcluster engine")
    return kernel.iopub


def publish_data(data: dict[str, Any]) -> None:
    """Publish ``data`` on the engine's IOPub channel for the task running now.

    Parameters
    ----------
    data:
        The data to publish. Think of it as a namespace: the client merges each publication
        into the task's ``data`` dict (``ar.data``), so later values replace earlier ones of
        the same name.
    """
    _engine_iopub().publish(MSG_TYPE, encode_data(data))

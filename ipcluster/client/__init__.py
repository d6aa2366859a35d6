"""The ipcluster client: connect to a cluster and send it work.

Names resolve lazily, so that engines unpickling a ``Reference`` or a ``@require``-wrapped
function import only the small module it lives in, not the client's sockets.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Client": ".client",
    "DirectView": ".view",
    "LoadBalancedView": ".balanced",
    "BroadcastView": ".view",
    "View": ".view",
    "ViewExecutor": ".executor",
    "AsyncResult": ".asyncresult",
    "AsyncMapResult": ".asyncresult",
    "AsyncHubResult": ".asyncresult",
    "Reference": ".reference",
    "interactive": ".namespace",
    "remote": ".remotefunction",
    "parallel": ".remotefunction",
    "RemoteFunction": ".remotefunction",
    "ParallelFunction": ".remotefunction",
    "depend": ".dependency",
    "require": ".dependency",
    "Dependency": ".dependency",
    "ExecuteReply": ".task",
    "Metadata": ".task",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ipcluster.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

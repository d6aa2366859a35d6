"""The ipcluster client: connect to a cluster and send it work.

Names resolve lazily, so that ``import ipcluster.client`` stays cheap. What engines unpickle
(``Reference``, ``interactive``, the dependency wrappers) lives in :mod:`ipcluster.protocol`, and
is re-exported here.
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
    "AsyncHubResult": ".hubresult",
    "Reference": "..protocol.reference",
    "interactive": "..protocol.interactive",
    "remote": ".remotefunction",
    "parallel": ".remotefunction",
    "RemoteFunction": ".remotefunction",
    "ParallelFunction": ".remotefunction",
    "depend": ".dependency",
    "require": ".dependency",
    "Dependency": "..protocol.dependency",
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

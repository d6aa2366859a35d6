"""ipcluster: interactive parallel computing for IPython and Jupyter.

Public names are resolved lazily (PEP 562 ``__getattr__``), so that starting an engine or a
controller never imports the client, and ``import ipcluster`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Client": "ipcluster.client",
    "DirectView": "ipcluster.client",
    "LoadBalancedView": "ipcluster.client",
    "BroadcastView": "ipcluster.client",
    "AsyncResult": "ipcluster.client",
    "AsyncMapResult": "ipcluster.client",
    "AsyncHubResult": "ipcluster.client",
    "Reference": "ipcluster.protocol.reference",  # the client-engine contract: no client import
    "interactive": "ipcluster.protocol.interactive",
    "remote": "ipcluster.client",
    "parallel": "ipcluster.client",
    "depend": "ipcluster.client",
    "require": "ipcluster.client",
    "Dependency": "ipcluster.protocol.dependency",
    "Cluster": "ipcluster.cluster",
    "ClusterManager": "ipcluster.cluster",
    "RemoteError": "ipcluster.error",
    "CompositeError": "ipcluster.error",
    "bind_kernel": "ipcluster.engine.bind",
    "FIRST_COMPLETED": "concurrent.futures",
    "FIRST_EXCEPTION": "concurrent.futures",
    "ALL_COMPLETED": "concurrent.futures",
    "error": "ipcluster.error",
    # the rest of ipyparallel's top-level names
    "RemoteFunction": "ipcluster.client",
    "ParallelFunction": "ipcluster.client",
    "ViewExecutor": "ipcluster.client",
    "dependent": "ipcluster.protocol.dependency",
    **dict.fromkeys(
        ["can", "uncan", "can_map", "uncan_map", "serialize_object", "deserialize_object", "pack_apply_message",
         "unpack_apply_message", "PrePickled", "use_dill", "use_cloudpickle", "use_pickle"],
        "ipcluster.serialize",
    ),
    **dict.fromkeys(
        ["IPythonError", "KernelError", "TimeoutError", "UnmetDependency", "ImpossibleDependency",
         "DependencyTimeout", "InvalidDependency", "EngineError", "TaskAborted", "TaskTimeout", "TaskRejectError",
         "NoEnginesRegistered", "AlreadyDisplayedError", "wrap_exception"],
        "ipcluster.error",
    ),
}
#: names whose attribute has another name in its module
_RENAMED = {
    "register_joblib_backend": ("ipcluster.joblib", "register"),
    "load_jupyter_server_extension": ("ipcluster.server", "_load_jupyter_server_extension"),
}
#: subpackages reachable as attributes, as in ipyparallel (``ipp.serialize.can``)
_SUBMODULES = {"serialize", "util", "client", "cluster", "datapub", "joblib"}

#: ipyparallel's tuple form of the version
version_info = tuple(int(part) for part in __version__.split("."))

__all__ = sorted([*_LAZY, *_RENAMED, "version_info"])  # not the subpackages: `import *` stays cheap


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"ipcluster.{name}")
    module, attr = _RENAMED.get(name) or (_LAZY.get(name), name)
    if module is None:
        raise AttributeError(f"module 'ipcluster' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if name == "error" else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, *_RENAMED])


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext ipcluster``: register the %px family of magics."""
    from .magics import load_ipython_extension as load

    load(ip)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The Jupyter Server extension ``ipcluster`` (the lab panel's API) lives in ``ipcluster.server``.

    Here, not there, because the server looks the hook up on the package named in its config.
    """
    return [{"module": "ipcluster.server"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """The prebuilt lab extension, for ``jupyter labextension develop`` (pip installs it as data files)."""
    return [{"src": "server/labextension", "dest": "ipcluster-panel"}]

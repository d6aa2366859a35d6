"""One adapter per system under test, all with the same small surface (see ``base.System``).

``load(name)`` imports only the adapter asked for, so a peer's venv never needs the others.
"""

from __future__ import annotations

import importlib

from .base import System

_ADAPTERS = {
    "ipcluster": ("ipp_style", "IPClusterSystem"),
    "ipyparallel": ("ipp_style", "IPyParallelSystem"),
    "dask": ("dask_system", "DaskSystem"),
    "ray": ("ray_system", "RaySystem"),
}


def load(name: str) -> type[System]:
    """The adapter class; ``ipcluster@REV`` (an earlier revision, see ``--baseline``) is ipcluster's."""
    module, cls = _ADAPTERS[name.partition("@")[0]]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)

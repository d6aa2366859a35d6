"""Functions the client sends to engines to work on their user namespace.

Each is marked :func:`interactive`: it travels by value and the engine runs it with its user
namespace as globals, so ``globals()`` below *is* the engine's namespace. (``interactive`` and
``in_user_namespace`` are part of the client-engine contract: :mod:`ipcluster.protocol.interactive`.)
"""

from __future__ import annotations

from typing import Any

from ..protocol.interactive import in_user_namespace, interactive

__all__ = ["interactive", "in_user_namespace", "push_names", "pull_names", "import_names"]


@interactive
def push_names(**ns: Any) -> None:
    """Runs on an engine: assign each keyword argument in the user namespace."""
    globals().update(ns)


@interactive
def pull_names(names: Any) -> Any:
    """Runs on an engine: the value of one name (a str), or of each name in a list."""
    g = globals()

    def one(name: str) -> Any:
        if name in g:
            return g[name]
        if "." in name:  # "obj.attr"
            return eval(name, g)
        raise NameError(f"name {name!r} is not defined on the engine")

    if isinstance(names, str):
        return one(names)
    return [one(name) for name in names]


@interactive
def import_names(name: str, fromlist: Any) -> None:
    """Runs on an engine: ``import name`` or ``from name import *fromlist`` into the namespace."""
    import importlib

    g = globals()
    module = importlib.import_module(name)
    if fromlist:
        for item in fromlist:
            if item == "*":
                public = getattr(module, "__all__", None)
                keys = public if public is not None else [k for k in vars(module) if not k.startswith("_")]
                for key in keys:
                    g[key] = getattr(module, key)
                continue
            try:
                g[item] = getattr(module, item)
            except AttributeError:
                g[item] = importlib.import_module(f"{name}.{item}")
    else:
        top = name.partition(".")[0]
        g[top] = importlib.import_module(top)

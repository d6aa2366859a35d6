"""Functions the client sends to engines to work on their user namespace.

Each is marked :func:`interactive`: it travels by value and the engine runs it with its user
namespace as globals, so ``globals()`` below *is* the engine's namespace.
"""

from __future__ import annotations

import builtins
import sys
import types
from typing import Any, TypeVar

F = TypeVar("F")
_MISSING = object()


def interactive(f: F) -> F:
    """Make ``f`` run in the engine's namespace: names it reads that are not local resolve in
    the engine's user namespace (where ``push`` and ``execute`` put things), and ``global``
    statements assign there.

    It marks the function as defined interactively (``__module__ = "__main__"``), which is what
    the engine looks for.
    """
    f.__module__ = "__main__"  # type: ignore[attr-defined]
    return f


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


def in_user_namespace(f: Any) -> Any:
    """Runs on an engine: ``f`` with the engine's user namespace as globals, when ``f`` was
    defined interactively on a client and arrived nested in another call (a function passed to
    ``map``, or wrapped by ``@depend``), where the engine does not rebind it itself.

    The user namespace is the ``__main__`` module's ``__dict__``. Names the function captured on
    the client (imported modules, typically) stay visible behind it, through the function's
    builtins, as for functions the engine calls directly.
    """
    if type(f) is not types.FunctionType or f.__module__ != "__main__":
        return f
    main = sys.modules.get("__main__")
    ns = getattr(main, "__dict__", None)
    if ns is None or f.__globals__ is ns:
        return f
    captured = {k: v for k, v in f.__globals__.items() if not k.startswith("__")}
    saved = ns.get("__builtins__", _MISSING)
    if captured:
        captured.update(builtins.__dict__)
        ns["__builtins__"] = captured
    try:
        g = types.FunctionType(f.__code__, ns, f.__name__, f.__defaults__, f.__closure__)
    finally:
        if saved is _MISSING:
            ns.pop("__builtins__", None)
        else:
            ns["__builtins__"] = saved
    g.__kwdefaults__ = f.__kwdefaults__
    g.__qualname__ = f.__qualname__
    return g

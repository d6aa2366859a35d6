"""Functions that run in an engine's user namespace: the part of the client-engine contract
that travels as code.

A function defined interactively on a client (``__module__ == "__main__"``: lambdas, closures,
everything marked :func:`interactive`) arrives pickled by value, and users expect it to run *in
the engine's namespace*: ``execute("a = 5")`` then ``apply(lambda: a)`` returns 5, and a
``global`` statement assigns into the namespace. :func:`rebind` gives such a function the user
namespace as its globals. cloudpickle also captured the client-side globals the function read
(typically imported modules such as ``np``); those stay reachable as a fallback, behind the user
namespace, through the function's builtins. Nothing of the client leaks into the namespace.

The engine rebinds the function of each request itself. A function that arrives *nested* (the
function of a ``map``, one wrapped by ``@depend``) is rebound by whoever calls it on the engine,
through :func:`in_user_namespace`: :func:`map_chunk` and :func:`call_part` here, and the wrappers
of :mod:`.dependency`. They live in ``protocol/`` because they are pickled by reference: an
engine imports this module to unpickle them, and must never import the client to do so.
"""

from __future__ import annotations

import builtins
import sys
import types
from typing import Any, TypeVar

from .serialize import loads

F = TypeVar("F")
_FunctionType = types.FunctionType
_builtins_dict = builtins.__dict__
_MISSING = object()


def interactive(f: F) -> F:
    """Make ``f`` run in the engine's namespace: names it reads that are not local resolve in
    the engine's user namespace (where ``push`` and ``execute`` put things), and ``global``
    statements assign there.

    It marks the function as defined interactively (``__module__ = "__main__"``), which is what
    the engine looks for.
    """
    f.__module__ = "__main__"
    return f


def rebind(f: Any, user_ns: dict[str, Any]) -> Any:
    """Return ``f`` running in ``user_ns`` if it was defined in a client's ``__main__``.

    Names the function reads resolve in ``user_ns`` first; names cloudpickle captured from the
    client (and not defined on the engine) come next, then the real builtins.
    """
    if type(f) is not _FunctionType or f.__module__ != "__main__":
        return f
    captured = f.__globals__
    if captured is user_ns:
        return f
    extra = [k for k in captured if not k.startswith("__")]
    if extra:
        # a function's builtins are fixed when it is created (from its globals' __builtins__):
        # build it with builtins that fall back on what the client captured
        fallback = {k: captured[k] for k in extra}
        fallback.update(_builtins_dict)
        saved = user_ns.get("__builtins__", _MISSING)
        user_ns["__builtins__"] = fallback
        try:
            g = _FunctionType(f.__code__, user_ns, f.__name__, f.__defaults__, f.__closure__)
        finally:
            if saved is _MISSING:
                user_ns.pop("__builtins__", None)
            else:
                user_ns["__builtins__"] = saved
    else:
        g = _FunctionType(f.__code__, user_ns, f.__name__, f.__defaults__, f.__closure__)
    g.__kwdefaults__ = f.__kwdefaults__
    g.__qualname__ = f.__qualname__
    g.__doc__ = f.__doc__
    if f.__dict__:
        g.__dict__.update(f.__dict__)
    return g


def in_user_namespace(f: Any) -> Any:
    """Runs on an engine: ``f`` with the engine's user namespace (the ``__main__`` module's
    ``__dict__``) as globals, for a function defined interactively on a client that arrived
    nested in another call, where the engine does not rebind it itself."""
    if type(f) is not _FunctionType or f.__module__ != "__main__":
        return f
    ns = getattr(sys.modules.get("__main__"), "__dict__", None)
    if ns is None:
        return f
    return rebind(f, ns)


def map_chunk(f: Any, *seqs: Any) -> list[Any]:
    """Runs on an engine: ``f`` over one part of the mapped sequences.

    ``f`` may arrive pickled (bytes), so that a map pickles its function once, not once per part.
    """
    if isinstance(f, bytes):
        f = loads(f)
    return list(map(in_user_namespace(f), *seqs))


def call_part(f: Any, *args: Any, **kwargs: Any) -> Any:
    """Runs on an engine: ``f`` on one part (``@parallel`` functions called directly)."""
    if isinstance(f, bytes):
        f = loads(f)
    return in_user_namespace(f)(*args, **kwargs)


#: code of the wrappers above: a user's traceback starts below them
_WRAPPER_CODE = frozenset({map_chunk.__code__, call_part.__code__})


def user_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """An engine's traceback of a call from the user's code on: past the engine's own frame (the
    first) and a map's or ``@parallel``'s wrapper, which are not the user's code."""
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
        while tb.tb_next is not None and tb.tb_frame.f_code in _WRAPPER_CODE:
            tb = tb.tb_next
    return tb

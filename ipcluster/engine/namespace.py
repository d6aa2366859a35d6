"""The engine's user namespace, and how functions sent by clients see it.

The namespace is the ``__dict__`` of a module named ``__main__`` that the engine installs as
``sys.modules["__main__"]``: ``execute`` (IPython), ``apply`` and pickling all agree on it, and
IPython, when it is started, adopts the same module rather than making its own.

A function defined interactively on a client (``__module__ == "__main__"``, which covers lambdas,
closures and everything marked ``@interactive``) arrives pickled by value. Users expect it to run
*in the engine's namespace*: ``execute("a = 5")`` then ``apply(lambda: a)`` returns 5, and a
``global`` statement assigns into the namespace. :func:`rebind` gives the function the user
namespace as its globals (it is shared with the client-side helpers that rebind nested functions,
in :mod:`ipcluster.protocol.interactive`).

Functions are cached (:class:`FunctionCache`): a map or a loop of applies sends the same function
pickle again and again, and rebuilding a function by value (cloudpickle) costs several times a
whole no-op task. A function whose pickle bytes were seen before is the same function object,
so, as for a function defined on the engine, state it keeps (a mutable default, a captured list)
persists between calls until the cache forgets it or the namespace is cleared.
"""

from __future__ import annotations

import builtins
import sys
import types
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from ..protocol.interactive import rebind
from ..protocol.reference import REFERENCE_ATTR
from ..protocol.serialize import deserialize_object, unpack_apply

__all__ = ["FunctionCache", "clear_namespace", "make_user_module", "module_attributes", "rebind", "resolve_references"]


def make_user_module() -> types.ModuleType:
    """A fresh ``__main__`` module, installed in ``sys.modules``; its ``__dict__`` is the user
    namespace."""
    module = types.ModuleType("__main__", "The engine's user namespace.")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    return module


#: what makes the namespace a module, kept when it is cleared: code run on the engine reads them
#: (multiprocessing's "spawn", and so dask's nanny, reads ``sys.modules["__main__"].__spec__``)
MODULE_ATTRS = ("__name__", "__doc__", "__builtins__", "__spec__", "__loader__", "__package__")


def module_attributes(ns: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``ns`` that :func:`clear_namespace` keeps."""
    return {k: ns[k] for k in MODULE_ATTRS if k in ns}


def clear_namespace(ns: dict[str, Any]) -> None:
    """Empty the namespace, keeping what makes it a module (:data:`MODULE_ATTRS`)."""
    keep = module_attributes(ns)
    ns.clear()
    ns.update(keep)


def resolve_references(
    args: tuple[Any, ...], kwargs: dict[str, Any], user_ns: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Replace arguments that name an engine variable (``Reference``) by its value.

    Only top-level positional and keyword arguments are looked at; a missing name raises
    ``NameError`` (an error reply naming it).
    """
    if any(_ref_name(a) is not None for a in args):
        args = tuple(_resolve(a, user_ns) for a in args)
    if kwargs and any(_ref_name(v) is not None for v in kwargs.values()):
        kwargs = {k: _resolve(v, user_ns) for k, v in kwargs.items()}
    return args, kwargs


def _ref_name(obj: Any) -> str | None:
    try:
        name = getattr(obj, REFERENCE_ATTR, None)
    except Exception:  # exotic __getattr__: not a reference
        return None
    return name if isinstance(name, str) else None


def _resolve(obj: Any, user_ns: dict[str, Any]) -> Any:
    name = _ref_name(obj)
    if name is None:
        return obj
    try:
        return user_ns[name]
    except KeyError:
        raise NameError(f"name {name!r} is not defined on the engine") from None



class FunctionCache:
    """Turns an ``apply_request``'s buffers into ``(function, args, kwargs)``, reusing functions.

    Only a function pickled without out-of-band buffers (then the buffers are exactly the
    function's pickle and the arguments' pickle) and at most :attr:`max_bytes` long is cached:
    its bytes are then the whole function. Cached functions are already rebound to the user
    namespace. The cache keeps the ``size`` most recently used functions.
    """

    max_bytes = 64 * 1024

    def __init__(self, user_ns: dict[str, Any], size: int = 128) -> None:
        self.user_ns = user_ns
        self.size = size
        self._cache: OrderedDict[bytes, Any] = OrderedDict()

    def clear(self) -> None:
        self._cache.clear()

    def load(self, buffers: Sequence[Any]) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        if len(buffers) != 2 or self.size <= 0:
            f, args, kwargs = unpack_apply(buffers)
            return rebind(f, self.user_ns), args, kwargs
        fbuf, abuf = buffers
        key = bytes(fbuf) if len(fbuf) <= self.max_bytes else None
        cache = self._cache
        f = cache.get(key) if key is not None else None
        if f is None:
            f = rebind(deserialize_object(iter((fbuf,))), self.user_ns)
            if key is not None:
                cache[key] = f
                if len(cache) > self.size:
                    cache.popitem(last=False)
        else:
            cache.move_to_end(key)  # type: ignore[arg-type]
        args, kwargs = deserialize_object(iter((abuf,)))
        return f, args, kwargs

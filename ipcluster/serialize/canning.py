"""Canning: wrapping objects that plain ``pickle`` cannot carry into ones it can, and back.

ipyparallel users meet this API when they write their own serialization on top of ours (custom
``serialize_object`` calls, sending objects over their own sockets, unit tests). ipcluster itself
does not can anything on its hot path: it pickles with protocol 5 and falls back on cloudpickle
(:mod:`ipcluster.protocol.serialize`). This module gives the documented ipyparallel names the
documented behaviour on top of that:

- :func:`can` turns an object into something stdlib ``pickle`` can store. Functions (lambdas and
  closures included), ``functools.partial`` objects and classes defined interactively become
  ``Canned*`` wrappers; numpy arrays, ``bytes`` and ``memoryview`` become wrappers whose raw data
  sits in ``.buffers``, so a transport may send that data as separate frames without copying it;
  anything else is returned unchanged.
- :func:`uncan` inverts it. ``g`` is the namespace a function is rebuilt in: an interactively
  defined function then reads its globals from ``g``, as it would had it been defined there
  (that is how engines run functions in their user namespace).

The wrappers keep ipyparallel's names and attributes (``CannedArray.shape``, ``.dtype``,
``.pickled``, ``.buffers``; every wrapper's ``get_object(g=None)``), because code that subclasses
or inspects them exists. The byte format is ours: a canned object pickled by ipyparallel does
not unpickle here, and the reverse.
"""

from __future__ import annotations

import copy
import functools
import pickle
import sys
import types
from collections.abc import Callable, Iterable
from typing import Any

from ..protocol.serialize import PICKLE_PROTOCOL, dumps_by_value

__all__ = [
    "CannedArray",
    "CannedBuffer",
    "CannedBytes",
    "CannedClass",
    "CannedFunction",
    "CannedMemoryView",
    "CannedObject",
    "CannedPartial",
    "can",
    "can_class",
    "can_dict",
    "can_map",
    "can_sequence",
    "istype",
    "sequence_types",
    "uncan",
    "uncan_dict",
    "uncan_map",
    "uncan_sequence",
]

#: containers whose elements :func:`can_sequence` cans one by one
sequence_types: tuple[type, ...] = (list, tuple, set)

#: the attribute that marks ipcluster's ``Reference`` (read here so this module imports no role)
_REFERENCE_ATTR = "__ipcluster_reference__"


def _by_value(obj: Any) -> bytes:
    """Pickle ``obj`` by value (cloudpickle, keeping code file names), never by reference."""
    return dumps_by_value(obj, None)


class CannedObject:
    """A picklable stand-in for ``obj``; :meth:`get_object` gives the object back.

    Parameters
    ----------
    obj:
        The object to can. It is shallow-copied, so canning never changes the caller's object.
    keys:
        Names of attributes of ``obj`` that are canned (and uncanned) explicitly, for an object
        that holds, say, a lambda in an attribute.
    hook:
        A callable ``hook(obj, g)`` run on the uncanned object, for extra rebuilding work.

    ``buffers`` holds raw data (``bytes``/``memoryview``) that a transport may send beside the
    pickle instead of inside it. Subclasses with data fill it; here it is empty.
    """

    def __init__(self, obj: Any, keys: Iterable[str] = (), hook: Callable[..., Any] | None = None) -> None:
        self.keys = list(keys)
        self.obj = copy.copy(obj)
        self.hook = can(hook)
        for key in self.keys:
            setattr(self.obj, key, can(getattr(obj, key)))
        self.buffers: list[Any] = []

    def get_object(self, g: dict[str, Any] | None = None) -> Any:
        """The original object, rebuilt; functions in it see ``g`` as their globals."""
        if g is None:
            g = {}
        obj = self.obj
        for key in self.keys:
            setattr(obj, key, uncan(getattr(obj, key), g))
        if self.hook:
            uncan(self.hook, g)(obj, g)
        return obj

    def __getstate__(self) -> dict[str, Any]:
        # a memoryview cannot be pickled: one that is still attached (nobody took it out to
        # send it separately) travels inside the pickle as bytes
        state = dict(self.__dict__)
        if any(isinstance(b, memoryview) for b in state.get("buffers", ())):
            state["buffers"] = [b.tobytes() if isinstance(b, memoryview) else b for b in state["buffers"]]
        return state


class CannedFunction(CannedObject):
    """A function, pickled by value: lambdas, closures and functions defined in ``__main__``
    (a notebook, a script) travel with their code rather than as a name to import."""

    def __init__(self, f: Callable[..., Any]) -> None:
        if not isinstance(f, types.FunctionType):
            raise TypeError(f"CannedFunction cans Python functions, not {type(f).__name__}")
        self.name = f.__name__
        self.module = f.__module__
        self.pickled = _by_value(f)
        self.buffers = []

    def get_object(self, g: dict[str, Any] | None = None) -> Any:
        f = pickle.loads(self.pickled)
        if g is None or self.module != "__main__" or not isinstance(f, types.FunctionType):
            return f
        # an interactively defined function reads its globals where it is uncanned
        rebuilt = types.FunctionType(f.__code__, g, f.__name__, f.__defaults__, f.__closure__)
        rebuilt.__kwdefaults__ = f.__kwdefaults__
        rebuilt.__dict__.update(f.__dict__)
        rebuilt.__qualname__ = f.__qualname__
        rebuilt.__doc__ = f.__doc__
        rebuilt.__module__ = f.__module__
        return rebuilt


class CannedPartial(CannedObject):
    """A ``functools.partial``: its function, arguments and keywords are canned each."""

    def __init__(self, f: functools.partial[Any]) -> None:
        if not isinstance(f, functools.partial):
            raise TypeError(f"CannedPartial cans functools.partial objects, not {type(f).__name__}")
        self.func = can(f.func)
        self.args = [can(a) for a in f.args]
        self.keywords = {k: can(v) for k, v in f.keywords.items()}
        self.buffers = []

    def get_object(self, g: dict[str, Any] | None = None) -> Any:
        func = uncan(self.func, g)
        args = [uncan(a, g) for a in self.args]
        keywords = {k: uncan(v, g) for k, v in self.keywords.items()}
        return functools.partial(func, *args, **keywords)


class CannedClass(CannedObject):
    """A class defined interactively (in ``__main__``), rebuilt from its name, bases and
    attributes. The rebuilt class is a new class object, equal in behaviour, not identical:
    ``uncan(can(C)) is C`` is false, as in ipyparallel."""

    def __init__(self, cls: type) -> None:
        if not isinstance(cls, type):
            raise TypeError(f"CannedClass cans classes, not {type(cls).__name__}")
        self.name = cls.__name__
        self.parents = [can(base) for base in cls.__bases__ if base is not object]
        self.metaclass = can(type(cls)) if type(cls) is not type else None
        self._canned_dict = {
            k: can(v) for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")
        }
        self.buffers = []

    def get_object(self, g: dict[str, Any] | None = None) -> type:
        parents = tuple(uncan(p, g) for p in self.parents) or (object,)
        namespace = {k: uncan(v, g) for k, v in self._canned_dict.items()}
        meta = uncan(self.metaclass, g) if self.metaclass is not None else type
        return meta(self.name, parents, namespace)  # type: ignore[no-any-return]


class CannedArray(CannedObject):
    """A numpy array: ``shape``, ``dtype`` and its raw data as ``buffers[0]``.

    The data is not copied when canning (a C-contiguous array is shared; others are made
    contiguous once). ``pickled`` is true for arrays of Python objects, whose "data" is the
    pickle of the whole array. The array :meth:`get_object` returns shares the buffer's memory,
    and is read-only when the buffer is (``bytes``).
    """

    def __init__(self, obj: Any) -> None:
        import numpy

        self.shape = obj.shape
        # the .npy format's own description: a str for plain dtypes, a list for structured
        # ones, and it round-trips padding and nested fields
        self.dtype = numpy.lib.format.dtype_to_descr(obj.dtype)
        self.pickled = bool(obj.dtype.hasobject)
        if self.pickled:
            self.buffers = [pickle.dumps(obj, PICKLE_PROTOCOL)]
        else:
            data = numpy.ascontiguousarray(obj)
            flat: Any = data.reshape(-1) if data.ndim else data.reshape(1)
            self.buffers = [memoryview(flat).cast("B")]

    def get_object(self, g: dict[str, Any] | None = None) -> Any:
        import numpy

        data = self.buffers[0]
        if self.pickled:
            return pickle.loads(data)
        dtype = numpy.lib.format.descr_to_dtype(self.dtype)
        return numpy.frombuffer(data, dtype=dtype).reshape(self.shape)


class CannedBytes(CannedObject):
    """``bytes``, carried as ``buffers[0]``; uncanned as ``bytes`` again."""

    def __init__(self, obj: Any) -> None:
        self.buffers = [obj]

    def get_object(self, g: dict[str, Any] | None = None) -> Any:
        data = self.buffers[0]
        return data if type(data) is bytes else bytes(data)


class CannedMemoryView(CannedBytes):
    """A ``memoryview`` (or other buffer), carried as ``buffers[0]``; uncanned as a memoryview."""

    def get_object(self, g: dict[str, Any] | None = None) -> Any:
        return memoryview(self.buffers[0])


#: ipyparallel's older name for :class:`CannedMemoryView`
CannedBuffer = CannedMemoryView


def istype(obj: Any, check: type | tuple[type, ...]) -> bool:
    """Like ``isinstance(obj, check)``, but strict: a subclass does not match."""
    if isinstance(check, tuple):
        return any(type(obj) is t for t in check)
    return type(obj) is check


def can_class(obj: type) -> Any:
    """Classes defined interactively are canned; importable classes go by name, unchanged."""
    if getattr(obj, "__module__", None) == "__main__":
        return CannedClass(obj)
    return obj


def _can_array(obj: Any) -> Any:
    return CannedArray(obj)


#: type -> canning callable. Keys may be dotted names (``"numpy.ndarray"``), resolved the first
#: time :func:`can` runs once the module is imported, so numpy is never imported by canning.
can_map: dict[Any, Callable[[Any], Any]] = {
    "numpy.ndarray": _can_array,
    types.FunctionType: CannedFunction,
    functools.partial: CannedPartial,
    bytes: CannedBytes,
    memoryview: CannedMemoryView,
    type: can_class,
}


def _resolve_names() -> None:
    """Replace dotted-name keys of :data:`can_map` by their types, once their module is loaded."""
    for key in [k for k in can_map if isinstance(k, str)]:
        module, _, name = key.rpartition(".")
        mod = sys.modules.get(module)
        if mod is not None and hasattr(mod, name):
            can_map[getattr(mod, name)] = can_map.pop(key)


def can(obj: Any) -> Any:
    """Prepare ``obj`` for pickling: a ``Canned*`` wrapper for what :data:`can_map` lists,
    ``obj`` itself otherwise. Containers are not entered (see :func:`can_sequence`,
    :func:`can_dict`), except that an object marked by ipcluster's ``Reference`` is kept."""
    if any(isinstance(k, str) for k in can_map):
        _resolve_names()
    canner = can_map.get(type(obj))
    if canner is None:
        for cls, candidate in can_map.items():
            # subclasses match too, but not of ndarray: a masked array or a matrix would lose
            # what makes it one, and pickle keeps it whole
            if not isinstance(cls, str) and isinstance(obj, cls) and cls is not type and candidate is not _can_array:
                canner = candidate
                break
        else:
            if isinstance(obj, type):
                canner = can_map.get(type)
    return canner(obj) if canner is not None else obj


def can_dict(obj: Any) -> Any:
    """Can the *values* of a dict (keys stay); anything else goes to :func:`can`."""
    if istype(obj, dict):
        return {k: can(v) for k, v in obj.items()}
    return can(obj)


def can_sequence(obj: Any) -> Any:
    """Can the elements of a list, tuple or set; anything else goes to :func:`can`."""
    if istype(obj, sequence_types):
        return type(obj)(can(item) for item in obj)
    return can(obj)


def _uncan_reference(obj: Any, g: dict[str, Any] | None) -> Any:
    if g is None:
        return obj
    return eval(getattr(obj, _REFERENCE_ATTR), g)  # a name or a dotted attribute path


def uncan(obj: Any, g: dict[str, Any] | None = None) -> Any:
    """Invert :func:`can`: a ``Canned*`` wrapper gives its object back (functions rebuilt in
    ``g``); a dict has its values uncanned; a ``Reference`` reads its name from ``g``; anything
    else is returned unchanged."""
    for cls, uncanner in uncan_map.items():
        if isinstance(obj, cls):
            return uncanner(obj, g)
    if not isinstance(obj, type) and isinstance(getattr(obj, _REFERENCE_ATTR, None), str):
        return _uncan_reference(obj, g)
    return obj


def uncan_dict(obj: Any, g: dict[str, Any] | None = None) -> Any:
    """Uncan the values of a dict; anything else goes to :func:`uncan`."""
    if istype(obj, dict):
        return {k: uncan(v, g) for k, v in obj.items()}
    return uncan(obj, g)


def uncan_sequence(obj: Any, g: dict[str, Any] | None = None) -> Any:
    """Uncan the elements of a list, tuple or set; anything else goes to :func:`uncan`."""
    if istype(obj, sequence_types):
        return type(obj)(uncan(item, g) for item in obj)
    return uncan(obj, g)


#: type -> uncanning callable ``(obj, g)``, tried in order with ``isinstance``
uncan_map: dict[type, Callable[[Any, dict[str, Any] | None], Any]] = {
    CannedObject: lambda obj, g: obj.get_object(g),
    dict: uncan_dict,
}

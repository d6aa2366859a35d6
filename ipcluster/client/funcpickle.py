"""Pickling the function of an apply request, once instead of once per call.

A function defined interactively (in ``__main__``, a lambda, a closure) must travel by value, and
cloudpickle takes ~25 µs for even a one-line function: most of the client's cost per task in a
loop of ``apply_async(f, i)``. The pickle depends only on the function's own state (code,
defaults, closure, name) and the values of the globals it reads, so it can be reused as long as
none of those changed. That is checked on each call by identity, which is only sound when the
values cannot change in place: the cache is used only when every global the function reads, and
every closure cell and default, is immutable (numbers, strings, tuples of them), a module, or a
function or class that pickles by reference. Anything else (a list, a dict, an array, a helper
defined in ``__main__``) is pickled afresh each time, exactly as before.
"""

from __future__ import annotations

import sys
import types
import weakref
from typing import Any

from ..protocol.serialize import _needs_value, remember_cache, serialize_object

_MISSING = object()
_IMMUTABLE = frozenset({int, float, complex, str, bytes, bool, type(None), type(Ellipsis), range})
_BY_REFERENCE = (types.BuiltinFunctionType, types.FunctionType, type)
_NAMED = frozenset({types.BuiltinFunctionType, types.FunctionType})


def _code_names(code: types.CodeType, out: set[str]) -> set[str]:
    """Global names read by ``code`` and the code objects nested in it."""
    out.update(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_names(const, out)
    return out


def _stable(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` pickles the same as long as it is the same object."""
    t = type(value)
    if t in _IMMUTABLE or t is types.ModuleType:
        return True
    if t is tuple or t is frozenset:
        return depth < 3 and len(value) <= 64 and all(_stable(v, depth + 1) for v in value)
    if isinstance(value, _BY_REFERENCE):
        module = getattr(value, "__module__", None)
        qualname = getattr(value, "__qualname__", "") or ""
        return module not in (None, "__main__") and "<" not in qualname and module in sys.modules
    return False


class _Entry:
    __slots__ = ("ref", "code", "defaults", "kwdefaults", "closure", "names", "values", "ident", "data")
    ref: "weakref.ref[Any]"
    code: types.CodeType
    defaults: Any
    kwdefaults: Any
    closure: tuple[Any, ...]
    names: tuple[str, ...]
    values: tuple[Any, ...]
    ident: tuple[str, str, str]
    data: bytes

    def matches(self, f: Any) -> bool:
        if (
            f.__code__ is not self.code
            or f.__defaults__ is not self.defaults
            or f.__kwdefaults__ is not self.kwdefaults
            or (f.__module__, f.__qualname__, f.__name__) != self.ident
            or f.__dict__
        ):
            return False
        closure = f.__closure__
        if closure:
            cells = self.closure
            for cell, old in zip(closure, cells):
                try:
                    if cell.cell_contents is not old:
                        return False
                except ValueError:  # empty cell
                    return False
        g = f.__globals__
        for name, old in zip(self.names, self.values):
            if g.get(name, _MISSING) is not old:
                return False
        return True


class FunctionPickleCache:
    """Remembers the pickle of recently sent by-value functions (at most ``maxsize``)."""

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self._entries: dict[int, _Entry] = {}
        self._by_name: dict[Any, bytes] = {}
        self._names: dict[types.CodeType, tuple[str, ...]] = {}
        remember_cache(self)  # pickles of one pickler must not outlive a switch to another

    def clear(self) -> None:
        """Forget every pickle (the process switched between cloudpickle and dill)."""
        self._entries.clear()
        self._by_name.clear()

    def dumps(self, f: Any) -> list[Any]:
        """``serialize_object(f)`` as the apply request needs it; a new list each call."""
        named = self._by_name.get(f) if type(f) in _NAMED else None
        if named is not None:
            return [named]
        by_value = _needs_value(f)
        if not by_value:
            bufs = serialize_object(f)
            if type(f) in _NAMED and len(bufs) == 1 and b"cloudpickle" not in bufs[0] and b"dill" not in bufs[0]:
                # a pickle by reference (module and name): the same for as long as f exists
                if len(self._by_name) >= self.maxsize:
                    self._by_name.pop(next(iter(self._by_name)))
                self._by_name[f] = bufs[0]
            return bufs
        if type(f) is not types.FunctionType:
            return serialize_object(f, by_value=True)
        entry = self._entries.get(id(f))
        if entry is not None and entry.ref() is f and entry.matches(f):
            return [entry.data]
        bufs = serialize_object(_as_interactive(f), by_value=True)
        if len(bufs) == 1:
            self._remember(f, bufs[0])
        return bufs

    def _remember(self, f: Any, data: bytes) -> None:
        if f.__dict__:
            return
        defaults = f.__defaults__ or ()
        kwdefaults = f.__kwdefaults__ or {}
        if not all(_stable(v) for v in defaults) or not all(_stable(v) for v in kwdefaults.values()):
            return
        cells = []
        for cell in f.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:
                return
            if not _stable(value):
                return
            cells.append(value)
        code = f.__code__
        names = self._names.get(code)
        if names is None:
            names = tuple(sorted(_code_names(code, set())))
            if len(self._names) > 4 * self.maxsize:
                self._names.clear()
            self._names[code] = names
        g = f.__globals__
        values = []
        for name in names:
            value = g.get(name, _MISSING)
            if value is not _MISSING and not _stable(value):
                return
            values.append(value)
        key = id(f)
        entries = self._entries
        def forget(ref: "weakref.ref[Any]", _forget: Any = _forget) -> None:
            # _forget bound now: at interpreter exit module globals may already be None
            _forget(entries, key, ref)

        ref = weakref.ref(f, forget)
        entry = _Entry()
        entry.ref = ref
        entry.code = code
        entry.defaults = f.__defaults__
        entry.kwdefaults = f.__kwdefaults__
        entry.closure = tuple(cells)
        entry.names = names
        entry.values = tuple(values)
        entry.ident = (f.__module__, f.__qualname__, f.__name__)
        entry.data = data
        if len(entries) >= self.maxsize:
            entries.pop(next(iter(entries)))
        entries[key] = entry


def _as_interactive(f: types.FunctionType) -> types.FunctionType:
    """``f`` marked as defined interactively (``__module__ == "__main__"``), copied if it is not.

    A function that travels by value (a lambda or closure, wherever defined) runs on the engine
    in the user namespace, as in ipyparallel: names it reads resolve there first (then in what
    cloudpickle captured). The engine rebinds functions marked so; the caller's own function is
    left as it is.
    """
    if f.__module__ == "__main__":
        return f
    g = types.FunctionType(f.__code__, f.__globals__, f.__name__, f.__defaults__, f.__closure__)
    g.__kwdefaults__ = f.__kwdefaults__
    g.__qualname__ = f.__qualname__
    g.__doc__ = f.__doc__
    g.__dict__.update(f.__dict__)
    g.__module__ = "__main__"
    return g


def _forget(entries: dict[int, _Entry], key: int, ref: Any) -> None:
    entry = entries.get(key)
    if entry is not None and entry.ref is ref:
        del entries[key]

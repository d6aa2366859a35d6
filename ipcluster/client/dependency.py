"""Task dependencies: ``Dependency`` (``after``/``follow`` sets of msg_ids), ``@depend`` and
``@require``.

``Dependency`` is sent in a load-balanced request's metadata; the controller's scheduler decides
when and where the task may run. ``@depend(check, ...)`` and ``@require(modules...)`` wrap a
function so that, on the engine, the check runs first (or the modules are imported into the
function's namespace); when it fails the engine raises ``UnmetDependency`` and the scheduler
tries another engine.

This module must stay importable on engines without the rest of the client: wrapped functions
are unpickled there.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable, Iterable
from typing import Any

from ..error import UnmetDependency
from .namespace import in_user_namespace


def _msg_ids(dep: Any) -> list[str]:
    if dep is None:
        return []
    if isinstance(dep, str):
        return [dep]
    ids = getattr(dep, "msg_ids", None)  # an AsyncResult
    if ids is not None and not isinstance(dep, Dependency):
        return list(ids)
    if isinstance(dep, Iterable):
        out: list[str] = []
        for d in dep:
            out.extend(_msg_ids(d))
        return out
    raise TypeError(f"a dependency is a msg_id, an AsyncResult or a list of them, not {dep!r}")


class Dependency(set):
    """A set of msg_ids a task depends on, with how they must have finished.

    Parameters
    ----------
    dependencies : msg_id, AsyncResult, or an iterable of them
    all : bool
        Whether all the tasks must finish (else any one of them).
    success : bool
        Whether a successful finish counts as met.
    failure : bool
        Whether a failed finish counts as met.
    """

    all: bool
    success: bool
    failure: bool

    def __init__(self, dependencies: Any = (), all: bool = True, success: bool = True, failure: bool = False) -> None:
        if isinstance(dependencies, dict):
            all = dependencies.get("all", True)
            success = dependencies.get("success", success)
            failure = dependencies.get("failure", failure)
            dependencies = dependencies.get("msg_ids", [])
        super().__init__(_msg_ids(dependencies))
        self.all = bool(all)
        self.success = bool(success)
        self.failure = bool(failure)
        if not (self.success or self.failure):
            raise ValueError("a Dependency must be met by success, failure or both")

    def check(self, completed: Iterable[str], failed: Iterable[str] = ()) -> bool:
        """Whether the dependency is met, given finished msg_ids."""
        if not self:
            return True
        met: set[str] = set()
        if self.success:
            met.update(completed)
        if self.failure:
            met.update(failed)
        return self.issubset(met) if self.all else not self.isdisjoint(met)

    def unreachable(self, completed: Iterable[str], failed: Iterable[str] = ()) -> bool:
        """Whether the dependency can no longer be met."""
        if not self:
            return False
        bad: set[str] = set()
        if not self.success:
            bad.update(completed)
        if not self.failure:
            bad.update(failed)
        return not self.isdisjoint(bad) if self.all else self.issubset(bad)

    def as_dict(self) -> dict[str, Any]:
        """The wire form: ``{"msg_ids", "all", "success", "failure"}``."""
        return {"msg_ids": sorted(self), "all": self.all, "success": self.success, "failure": self.failure}

    def render(self) -> Any:
        """A plain msg_id list when the flags are the defaults, else :meth:`as_dict`."""
        if self.all and self.success and not self.failure:
            return sorted(self)
        return self.as_dict()

    def __reduce__(self) -> Any:
        return (Dependency, (self.as_dict(),))

    def __repr__(self) -> str:
        return f"Dependency({sorted(self)!r}, all={self.all}, success={self.success}, failure={self.failure})"


def render_dependency(dep: Any) -> Any:
    """A view's ``after``/``follow`` flag in wire form (an empty list for none)."""
    if dep is None:
        return []
    if isinstance(dep, Dependency):
        return dep.render()
    if isinstance(dep, dict):
        return Dependency(dep).render()
    return _msg_ids(dep)


class dependent:
    """A function that runs only where ``check(*args, **kwargs)`` is true (see :func:`depend`)."""

    def __init__(self, f: Callable[..., Any], check: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.f = f
        self.check = check
        self.args = args
        self.kwargs = kwargs
        self.__name__ = getattr(f, "__name__", "f")
        self.__doc__ = getattr(f, "__doc__", None)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not in_user_namespace(self.check)(*self.args, **self.kwargs):
            raise UnmetDependency(f"dependency {getattr(self.check, '__name__', self.check)!r} not met on this engine")
        return in_user_namespace(self.f)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<dependent {self.__name__} on {getattr(self.check, '__name__', self.check)}>"


def depend(check: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], dependent]:
    """Decorator: the task runs only on an engine where ``check(*args, **kwargs)`` returns true.

    >>> @depend(platform_is, "linux")
    ... def task(): ...
    """

    def decorate(f: Callable[..., Any]) -> dependent:
        return dependent(f, check, *args, **kwargs)

    return decorate


class required:
    """A function that imports modules and binds objects in its namespace before running
    (see :func:`require`)."""

    def __init__(self, f: Callable[..., Any], modules: list[str], objects: dict[str, Any]) -> None:
        self.f = f
        self.modules = modules
        self.objects = objects
        self.__name__ = getattr(f, "__name__", "f")
        self.__doc__ = getattr(f, "__doc__", None)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        f = in_user_namespace(self.f)
        target = f
        while isinstance(target, (required, dependent)):
            target = in_user_namespace(target.f)
        g = target.__globals__ if isinstance(target, types.FunctionType) else None
        for name in self.modules:
            try:
                module = importlib.import_module(name)
            except ImportError as e:
                raise UnmetDependency(f"cannot import {name!r} on this engine: {e}") from e
            if g is not None:
                top = name.partition(".")[0]
                g[top] = importlib.import_module(top)
                if top != name:
                    g.setdefault(name.rpartition(".")[2], module)
        if g is not None:
            g.update(self.objects)
        return f(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<required {self.__name__}: {', '.join([*self.modules, *self.objects])}>"


def require(*objects: Any, **mapping: Any) -> Callable[[Callable[..., Any]], required]:
    """Decorator: modules (by name or module object) are imported, and other objects bound by
    name, in the function's namespace on the engine before it runs.

    >>> @require("numpy", helper, scale=2)
    ... def task(x): return numpy.sqrt(helper(x) * scale)

    An engine where a module cannot be imported raises ``UnmetDependency``, so a load-balanced
    task goes to another engine.
    """
    modules: list[str] = []
    bound: dict[str, Any] = {}
    for obj in objects:
        if isinstance(obj, str):
            modules.append(obj)
        elif isinstance(obj, types.ModuleType):
            modules.append(obj.__name__)
        else:
            name = getattr(obj, "__name__", None)
            if not name:
                raise TypeError(f"require needs a name for {obj!r}: pass it as a keyword argument")
            bound[name] = obj
    bound.update(mapping)

    def decorate(f: Callable[..., Any]) -> required:
        return required(f, modules, bound)

    return decorate

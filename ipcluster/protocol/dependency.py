"""Task dependencies, as both sides of the wire know them.

- :class:`Dependency`: a set of msg_ids a load-balanced task waits for (``after``) or follows to
  their engine (``follow``), with how they must have finished. It travels in the request's
  metadata in wire form (:meth:`Dependency.as_dict`); the controller's scheduler reads it.
- :class:`dependent` and :class:`required`: the wrappers ``@depend`` and ``@require`` put around a
  function. They run on the engine, before the function: a failed check or import raises
  ``UnmetDependency``, and the scheduler tries another engine.

They live in ``protocol/`` because they are pickled by reference: an engine imports this module
to unpickle a wrapped function, and must never import the client to do so. The decorators that
build them are client API (:mod:`ipcluster.client.dependency`).
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable, Iterable
from typing import Any

from ..error import UnmetDependency
from .interactive import in_user_namespace


def msg_ids_of(dep: Any) -> list[str]:
    """The msg_ids a dependency names: a msg_id, an AsyncResult, or an iterable of them."""
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
            out.extend(msg_ids_of(d))
        return out
    raise TypeError(f"a dependency is a msg_id, an AsyncResult or a list of them, not {dep!r}")


class Dependency(set[str]):
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
        super().__init__(msg_ids_of(dependencies))
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

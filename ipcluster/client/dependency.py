"""Task dependencies, the client's side: ``@depend``, ``@require`` and the ``after``/``follow``
flags of load-balanced views.

What an engine unpickles (:class:`Dependency`, and the :class:`dependent` and :class:`required`
wrappers the decorators build) is part of the client-engine contract and lives in
:mod:`ipcluster.protocol.dependency`; it is importable from here too.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from ..protocol.dependency import Dependency, dependent, msg_ids_of, required

__all__ = ["Dependency", "dependent", "depend", "required", "require", "render_dependency"]


def render_dependency(dep: Any) -> Any:
    """A view's ``after``/``follow`` flag in wire form (an empty list for none)."""
    if dep is None:
        return []
    if isinstance(dep, Dependency):
        return dep.render()
    if isinstance(dep, dict):
        return Dependency(dep).render()
    return msg_ids_of(dep)


def depend(check: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], dependent]:
    """Decorator: the task runs only on an engine where ``check(*args, **kwargs)`` returns true.

    >>> @depend(platform_is, "linux")
    ... def task(): ...
    """

    def decorate(f: Callable[..., Any]) -> dependent:
        return dependent(f, check, *args, **kwargs)

    return decorate


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

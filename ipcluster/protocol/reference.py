"""``Reference``: an argument that stands for a variable in the engine's namespace.

Part of the client-engine contract: a client pickles it, an engine unpickles it (by reference
to this module) and replaces it by the variable's value, so it lives in ``protocol/``, which
both import. Users import it as ``ipcluster.Reference`` or ``ipcluster.client.Reference``.
"""

from __future__ import annotations

from typing import Any

#: the attribute an engine looks for on a top-level argument: its value names the variable
REFERENCE_ATTR = "__ipcluster_reference__"


class Reference:
    """Pass ``Reference("a")`` to ``apply`` and the function receives the engine's ``a``.

    >>> view.push({"data": big})
    >>> view.apply(len, Reference("data"))

    The engine replaces top-level positional and keyword arguments that carry the
    ``__ipcluster_reference__`` attribute by ``user_ns[name]`` (a missing name is a
    ``NameError`` on the engine).
    """

    __slots__ = ("__ipcluster_reference__",)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"Reference needs a variable name (a non-empty str), not {name!r}")
        self.__ipcluster_reference__ = name

    @property
    def name(self) -> str:
        return self.__ipcluster_reference__

    def __reduce__(self) -> tuple[Any, ...]:
        return (Reference, (self.__ipcluster_reference__,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reference) and other.name == self.name

    def __hash__(self) -> int:
        return hash((Reference, self.name))

    def __repr__(self) -> str:
        return f"<Reference: {self.name!r}>"

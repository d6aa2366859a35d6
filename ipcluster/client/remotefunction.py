"""``@remote`` and ``@parallel``: functions that run on a view's engines when called."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..protocol.interactive import interactive

__all__ = ["RemoteFunction", "ParallelFunction", "remote", "parallel", "interactive", "getname"]


def getname(f: Any) -> str:
    """A name for ``f`` in reprs and progress bars."""
    name = getattr(f, "__name__", None)
    if isinstance(name, str):
        return name
    return type(f).__name__


class RemoteFunction:
    """Calling it is ``view.apply(f, *args, **kwargs)`` with the given flags.

    Parameters
    ----------
    view : DirectView or LoadBalancedView
    f : callable
    block : bool or None
        Whether calls wait for the result (``None``: the view's ``block`` at call time).
    **flags
        Other view flags for each call (``targets``, ``after``, ``retries``...).
    """

    def __init__(self, view: Any, f: Callable[..., Any], block: bool | None = None, **flags: Any) -> None:
        self.view = view
        self.func = f
        self.block = block
        self.flags = flags
        functools.update_wrapper(self, f, updated=())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        block = self.view.block if self.block is None else self.block
        return self.view._really_apply(self.func, args, kwargs, block=block, **self.flags)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getname(self.func)} on {self.view!r}>"


class ParallelFunction(RemoteFunction):
    """Calling it splits its sequence arguments among the engines and calls ``f`` once per part,
    with the parts as arguments (``f`` receives sublists); ``.map(*sequences)`` calls ``f`` on each
    element instead. The parts' results are joined back (lists and arrays concatenated).

    Parameters
    ----------
    dist : str
        How to split: ``"b"`` (contiguous blocks; the only kind).
    chunksize : int or None
        Items per task on a load-balanced view (default: about 32 tasks per engine).
    ordered : bool
        Whether iterating the result follows the input order (a load-balanced view can also
        yield parts as they finish).
    """

    def __init__(
        self,
        view: Any,
        f: Callable[..., Any],
        dist: str = "b",
        block: bool | None = None,
        chunksize: int | None = None,
        ordered: bool = True,
        **flags: Any,
    ) -> None:
        if dist != "b":
            raise ValueError(f"dist must be 'b' (contiguous blocks), not {dist!r}")
        super().__init__(view, f, block=block, **flags)
        self.dist = dist
        self.chunksize = chunksize
        self.ordered = ordered

    def _run(self, sequences: tuple[Any, ...], kwargs: dict[str, Any], elementwise: bool) -> Any:
        block = self.view.block if self.block is None else self.block
        return self.view._parallel(
            self.func, sequences, kwargs, elementwise=elementwise, block=block,
            chunksize=self.chunksize, ordered=self.ordered, **self.flags,
        )

    def __call__(self, *sequences: Any, **kwargs: Any) -> Any:
        return self._run(sequences, kwargs, elementwise=False)

    def map(self, *sequences: Any) -> Any:
        """``f`` on each element of the zipped sequences, in parallel."""
        return self._run(sequences, {}, elementwise=True)


def remote(view: Any, block: bool | None = None, **flags: Any) -> Callable[[Callable[..., Any]], RemoteFunction]:
    """Decorator: calling the function runs it on ``view`` (``view.apply``).

    >>> @remote(rc[:], block=True)
    ... def getpid():
    ...     import os; return os.getpid()
    """

    def decorate(f: Callable[..., Any]) -> RemoteFunction:
        return RemoteFunction(view, f, block=block, **flags)

    return decorate


def parallel(
    view: Any, dist: str = "b", block: bool | None = None, ordered: bool = True, **flags: Any
) -> Callable[[Callable[..., Any]], ParallelFunction]:
    """Decorator: calling the function splits its sequence arguments among ``view``'s engines
    (see :class:`ParallelFunction`).

    >>> @parallel(rc[:], block=True)
    ... def total(xs):
    ...     return [sum(xs)]
    """

    def decorate(f: Callable[..., Any]) -> ParallelFunction:
        return ParallelFunction(view, f, dist=dist, block=block, ordered=ordered, **flags)

    return decorate

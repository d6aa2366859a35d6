"""``view.executor``: a :class:`concurrent.futures.Executor` that runs on a view's engines."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from typing import Any

from ..error import TimeoutError


class ViewExecutor(Executor):
    """``submit`` is ``view.apply_async`` (the futures are AsyncResults); ``map`` is
    ``view.map_async``, yielding results in order. ``shutdown`` waits for what was submitted
    but leaves the engines running."""

    def __init__(self, view: Any) -> None:
        self.view = view

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return self.view.apply_async(fn, *args, **kwargs)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int | None = None) -> Iterator[Any]:
        """Like ``Executor.map``. ``chunksize`` (items per task) applies to load-balanced views;
        left out, the view picks one (a few tasks per engine)."""
        kwargs = {}
        if chunksize is not None:
            if "chunksize" not in inspect.signature(self.view.map).parameters:
                raise TypeError(f"{type(self.view).__name__} splits maps by engine and takes no chunksize")
            kwargs["chunksize"] = chunksize
        amr = self.view.map_async(fn, *iterables, **kwargs)
        deadline = None if timeout is None else time.monotonic() + timeout

        def results() -> Iterator[Any]:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if not amr.wait(max(remaining, 0)):
                    raise TimeoutError(f"map did not finish within {timeout} s")
            yield from amr

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            self.view.abort(block=False)
        if wait:
            self.view.wait()

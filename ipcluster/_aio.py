"""Bridges between blocking callers and the asyncio code that does the work.

The blocking API is written by hand next to the async one (``start_sync = run_sync(start)``)
rather than generated, so it is visible to readers, type checkers and IPython's completer.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class LoopThread:
    """An asyncio event loop running in a daemon thread, owned by one object (a Client, a Cluster).

    Blocking callers hand coroutines to it with :meth:`run`; the thread is stopped by :meth:`stop`.
    """

    def __init__(self, name: str = "ipcluster-io") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop thread and wait for its result (from another thread)."""
        if threading.current_thread() is self.thread:
            raise RuntimeError("LoopThread.run called from its own loop thread (would deadlock)")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except BaseException:
            fut.cancel()
            raise

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule a plain callable on the loop from any thread."""
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)


def run_sync(coro_fn: Callable[P, Awaitable[T]]) -> Callable[P, T]:
    """Make the blocking twin of an async method.

    The coroutine runs on the owner's ``_loop_thread`` (a :class:`LoopThread`), so the twin works
    from plain scripts and from inside a running loop (a notebook cell) alike. The wait has no
    timeout of its own: every coroutine given to this bounds its waits with its owner's traits.
    """

    @functools.wraps(coro_fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        loop_thread = getattr(args[0] if args else None, "_loop_thread", None)
        if not isinstance(loop_thread, LoopThread):
            raise TypeError(f"{coro_fn.__qualname__}: run_sync needs an owner with a _loop_thread")
        return loop_thread.run(coro_fn(*args, **kwargs))  # type: ignore[arg-type]

    wrapper.__doc__ = f"Blocking version of :meth:`{coro_fn.__name__}`.\n\n{coro_fn.__doc__ or ''}"
    return wrapper

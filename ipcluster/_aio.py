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
    """Make the blocking twin of an async method or function.

    If the object the method is bound to has a ``_loop_thread`` (a :class:`LoopThread`), the
    coroutine runs there; otherwise it runs in a fresh event loop with ``asyncio.run`` — which
    refuses to run inside a running loop, so from a notebook cell call the async form with ``await``
    or give the object a loop thread.
    """

    @functools.wraps(coro_fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        owner = args[0] if args else None
        loop_thread = getattr(owner, "_loop_thread", None)
        if isinstance(loop_thread, LoopThread):
            return loop_thread.run(coro_fn(*args, **kwargs))  # type: ignore[arg-type]
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro_fn(*args, **kwargs))  # type: ignore[arg-type]
        # inside a running loop (a notebook): run in a helper thread with its own loop
        result: list[Any] = []

        def target() -> None:
            try:
                result.append((True, asyncio.run(coro_fn(*args, **kwargs))))  # type: ignore[arg-type]
            except BaseException as e:  # re-raised in the caller's thread
                result.append((False, e))

        t = threading.Thread(target=target, daemon=True)
        t.start()
        t.join()
        ok, value = result[0]
        if ok:
            return value
        raise value

    wrapper.__doc__ = f"Blocking version of :meth:`{coro_fn.__name__}`.\n\n{coro_fn.__doc__ or ''}"
    return wrapper

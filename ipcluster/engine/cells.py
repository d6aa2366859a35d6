"""Running ``execute_request`` cells in the engine's IPython shell.

The shell is created on first use: importing IPython and building a shell costs ~0.3 s, which an
engine that only maps functions never pays. User code that imports IPython itself (to call
``display()`` from a function run by ``apply``) starts it too, through a one-shot import hook,
so rich output is published as from ``execute``.

Kept apart from :mod:`.kernel` (the request loop), because it changes with IPython rather than
with the protocol.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from traitlets.config import Configurable

from ..protocol.messages import ExecuteRequest
from .interrupts import Interrupts
from .iopub import IOPub, safe_str
from .running_loop import hide_running_loop, restore_running_loop


class Cells:
    """The engine's IPython side: its shell, and how a cell runs in it.

    Parameters
    ----------
    parent:
        The configurable whose config the shell inherits (the kernel).
    error_content:
        Error-reply content for the exception being handled, given the method name.
    """

    def __init__(self, parent: Configurable, user_module: Any, iopub: IOPub, interrupts: Interrupts,
                 engine_info: dict[str, Any], error_content: Callable[[str], dict[str, Any]],
                 log: logging.Logger) -> None:
        self.parent = parent
        self.user_module = user_module
        self.iopub = iopub
        self.interrupts = interrupts
        self.engine_info = engine_info
        self.error_content = error_content
        self.log = log
        self.shell: Any = None
        self._import_hook: _ShellOnImport | None = None
        self._cell_interrupted = False

    # -- the shell ----------------------------------------------------------------------------
    def watch_imports(self) -> None:
        """Start the shell as soon as user code imports IPython (unless it is imported already)."""
        if "IPython" not in sys.modules and self._import_hook is None:
            self._import_hook = _ShellOnImport(self._shell_on_import)
            sys.meta_path.insert(0, self._import_hook)

    def unwatch_imports(self) -> None:
        if self._import_hook is not None:
            self._import_hook.remove()
            self._import_hook = None

    def get_shell(self) -> Any:
        """The IPython shell, created on first use (importing IPython costs ~0.3 s)."""
        if self.shell is None:
            self.unwatch_imports()  # we import IPython ourselves now
            t0 = time.perf_counter()
            from .shell import make_shell

            self.shell = make_shell(self.parent, self.user_module, self.iopub)
            self.log.info("IPython shell ready in %.0f ms", (time.perf_counter() - t0) * 1000)
        return self.shell

    def _shell_on_import(self) -> None:
        """User code imported IPython: start the shell now, so ``display()`` publishes."""
        try:
            self.get_shell()
        except Exception:
            self.log.warning("could not start the IPython shell on import", exc_info=True)

    @property
    def execution_count(self) -> int:
        return self.shell.execution_count if self.shell is not None else 0

    def reset(self) -> bool:
        """Reset the shell's namespace and history; False when there is no shell yet."""
        if self.shell is None:
            return False
        self.shell.reset(new_session=False)
        return True

    # -- running a cell -----------------------------------------------------------------------
    async def execute(self, content: ExecuteRequest) -> dict[str, Any]:
        """Run a cell (an ``execute_request``'s content); the reply's content."""
        code = content.get("code", "")
        silent = bool(content.get("silent", False))
        store_history = bool(content.get("store_history", not silent))
        try:
            shell = self.get_shell()
        except Exception:
            self.log.exception("could not start the IPython shell")
            return {**self.error_content("execute"), "execution_count": 0}
        count = shell.execution_count
        if not silent:
            self.iopub.publish("execute_input", {"code": code, "execution_count": count})
        shell.last_traceback = None
        try:
            transformed = shell.transform_cell(code)
            exc_tuple = None
        except Exception:
            transformed, exc_tuple = code, sys.exc_info()
        if shell.should_run_async(code, transformed_cell=transformed, preprocessing_exc_tuple=exc_tuple):
            try:
                result = await self._run_cell_async(shell, code, store_history, silent, transformed)
            except KeyboardInterrupt:
                return {**self.error_content("execute"), "execution_count": count}
        else:
            loop = asyncio.get_running_loop()
            intr = self.interrupts
            hide_running_loop()
            intr.armed = True
            try:
                result = shell.run_cell(code, store_history=store_history, silent=silent)
            except BaseException:  # an interrupt that landed in IPython's code around the cell
                return {**self.error_content("execute"), "execution_count": count}
            finally:
                intr.disarm()
                restore_running_loop(loop)
        error = result.error_before_exec or result.error_in_exec
        if error is None:
            return {"status": "ok", "execution_count": count}
        tb = shell.last_traceback or []
        ename, evalue = type(error).__name__, safe_str(error)
        if isinstance(error, asyncio.CancelledError) and self._cell_interrupted:
            ename, evalue = "KeyboardInterrupt", "cell interrupted"  # SIGINT cancelled the awaiting cell
        return {
            "status": "error",
            "execution_count": count,
            "ename": ename,
            "evalue": evalue,
            "traceback": "\n".join(tb),
            "engine_info": {**self.engine_info, "method": "execute"},
        }

    async def _run_cell_async(self, shell: Any, code: str, store_history: bool, silent: bool, transformed: str) -> Any:
        """A cell with top-level ``await`` runs as a task on our loop; SIGINT cancels it."""
        loop = asyncio.get_running_loop()
        cell = loop.create_task(
            shell.run_cell_async(
                code,
                store_history=store_history,
                silent=silent,
                transformed_cell=transformed,
                preprocessing_exc_tuple=None,
            )
        )

        def interrupt() -> None:
            self._cell_interrupted = True
            loop.call_soon_threadsafe(cell.cancel)

        self._cell_interrupted = False
        self.interrupts.cancel = interrupt
        try:
            return await cell
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the engine is shutting down
            raise KeyboardInterrupt("cell interrupted") from None
        finally:
            self.interrupts.cancel = None
            shell.events.trigger("post_execute")
            if not silent:
                shell.events.trigger("post_run_cell", cell.result() if cell.done() and not cell.cancelled() else None)


class _ShellOnImport:
    """A one-shot ``sys.meta_path`` finder: runs a callback right after ``IPython`` is imported.

    ``IPython.display.display()`` prints plain text unless an IPython shell exists. The engine
    creates its shell lazily, so when user code run by ``apply`` imports IPython, this hook
    creates the shell as soon as the ``IPython`` package has finished loading, before the
    user's ``display`` call, and rich output is published as it would be from ``execute``.
    """

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback

    def remove(self) -> None:
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "IPython":
            return None
        self.remove()
        spec = importlib.util.find_spec(fullname)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module
        callback = self._callback

        def exec_then_start(module: Any) -> None:
            exec_module(module)
            callback()

        loader.exec_module = exec_then_start  # type: ignore[method-assign]
        return spec

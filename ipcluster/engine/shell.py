"""The IPython shell that runs ``execute_request`` code on an engine.

Created lazily (see :meth:`.kernel.Kernel.get_shell`): importing and building an IPython shell
costs a few hundred milliseconds, which engines that only ever ``apply`` should not pay at
start-up. It adopts the engine's user module, so ``execute`` and ``apply`` share one namespace.

What differs from a plain ``InteractiveShell``: rich output goes to IOPub (:mod:`.display`), a
traceback is published as an ``error`` message (and remembered for the reply) instead of being
printed, and the SQLite history is off by default (an engine has no one to recall it; the file
would be shared by every engine of a profile).
"""

from __future__ import annotations

import re
from typing import Any

from IPython.core.interactiveshell import InteractiveShell
from traitlets import Any as AnyTrait
from traitlets import Type
from traitlets.config import Config, Configurable

from .display import EngineDisplayHook, EngineDisplayPublisher
from .iopub import safe_str

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class EngineShell(InteractiveShell):
    """An ``InteractiveShell`` whose output goes to the engine's IOPub."""

    displayhook_class = Type(EngineDisplayHook)
    display_pub_class = Type(EngineDisplayPublisher)
    iopub = AnyTrait(help="The engine's IOPub publisher (set by the engine).")

    #: the traceback lines of the last error shown, for the execute_reply
    last_traceback: list[str] | None = None

    def _showtraceback(self, etype: type[BaseException], evalue: BaseException, stb: Any) -> None:
        # plain text whatever the colour setting: the client colours it as its own shell does
        lines = [_ANSI.sub("", line) for line in ([stb] if isinstance(stb, str) else stb)]
        self.last_traceback = lines
        self.iopub.publish(
            "error",
            {"ename": getattr(etype, "__name__", str(etype)), "evalue": safe_str(evalue), "traceback": lines},
        )

    def enable_gui(self, gui: str | None = None) -> None:
        """GUI event loops cannot run on an engine (it has its own loop and no display)."""
        if gui:
            raise NotImplementedError("GUI event loop integration is not available on an engine")


def make_shell(parent: Configurable, user_module: Any, iopub: Any) -> EngineShell:
    """Build the engine's shell (the ``InteractiveShell`` singleton, so ``display()`` finds it)."""
    config = Config({"HistoryManager": {"enabled": False}, "InteractiveShell": {"colors": "nocolor"}})
    config.merge(parent.config)
    return EngineShell.instance(parent=parent, config=config, user_module=user_module, iopub=iopub)

"""The one exception tree of ipcluster.

Every error a user can see comes from here, so that ``except ipcluster.error.X`` works the same
whether the failure happened locally, in the controller or on an engine. Names follow
ipyparallel's ``ipyparallel.error`` so code written for it keeps working after an import change.
"""

from __future__ import annotations

import builtins
import re
from typing import Any


class IPClusterError(Exception):
    """Base class of every ipcluster error."""


#: ipyparallel's name for the base of its errors
IPythonError = IPClusterError


class ProtocolError(IPClusterError):
    """A message could not be parsed, or its signature did not verify."""


class AuthenticationError(ProtocolError):
    """The peer rejected our messages because they were signed with another key."""


class ConnectionFileError(IPClusterError):
    """A connection file that must not be used: readable by others than its owner, or without a key."""


class LauncherError(IPClusterError):
    """A process launcher could not start or stop what it was asked to."""


class ProcessExited(LauncherError):
    """A launched process exited early; carries its exit code and the tail of its output."""

    def __init__(self, message: str, exit_code: int | None = None, output: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.output = output

    def __str__(self) -> str:
        text = super().__str__()
        if self.output:
            text += "\n--- output tail ---\n" + self.output
        return text


class KernelError(IPClusterError):
    """An engine could not run a task as asked: ipyparallel's base of the task errors (dependency
    errors, aborted, timed-out, rejected and lost tasks, and the engines' RemoteError)."""


class NoEnginesError(KernelError):
    """No engines are registered, or none match the requested targets."""


# ipyparallel's name for the same condition
NoEnginesRegistered = NoEnginesError


class NoEnginesWarning(UserWarning):
    """A load-balanced task was submitted while no engine is registered: it waits for one."""


class ClusterTimeout(IPClusterError, builtins.TimeoutError):
    """A wait on the cluster ran out of time."""


# ipyparallel's name for a timed-out wait on a result; also a builtins.TimeoutError
TimeoutError = ClusterTimeout


class TaskTimeout(ClusterTimeout, KernelError):
    """A task was not started or finished within its ``timeout``."""


class TaskAborted(KernelError):
    """A task was aborted before it ran."""


class TaskRejected(KernelError):
    """An engine refused a task. Raised by a task (as ``TaskRejectError``), it fails like any
    other error, and a task sent with ``retries`` is tried again, on another engine if any."""


#: ipyparallel's name
TaskRejectError = TaskRejected


class UnmetDependency(KernelError):
    """A task's dependencies are not met yet on an engine."""


class ImpossibleDependency(UnmetDependency):
    """A task's dependencies can never be met."""


class DependencyTimeout(ImpossibleDependency):
    """A task's dependencies were not met within its timeout."""


class InvalidDependency(ImpossibleDependency):
    """A dependency names something that does not exist."""


class EngineError(KernelError):
    """The engine running a task died or went away before the task finished."""


class TaskKilledEngines(EngineError):
    """A load-balanced task was running on ``ControllerApp.task_kill_limit`` engines when they died,
    so it is not retried again (it would most likely kill the next engine too)."""


class ControllerError(IPClusterError):
    """The controller went away or refused a request."""


class SerializationError(IPClusterError):
    """An object could not be serialized for sending."""


class RemoteError(KernelError):
    """An exception raised on an engine, carried back with the engine's traceback.

    ``ename`` and ``evalue`` are the remote exception's type name and ``str``; ``traceback`` is
    the formatted remote traceback text; ``engine_id`` says which engine raised it.
    """

    engine_info: dict[str, Any]

    def __init__(
        self,
        ename: str,
        evalue: str,
        traceback: str = "",
        engine_info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(ename, evalue)
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback
        self.engine_info = engine_info or {}

    @property
    def engine_id(self) -> int | None:
        return self.engine_info.get("engine_id")

    def __repr__(self) -> str:
        where = f"[{self.engine_id}:{self.engine_info.get('method', 'apply')}]"
        return f"{where} {self.ename}: {self.evalue}"

    def __str__(self) -> str:
        return f"{self.ename}({self.evalue})" if self.evalue else self.ename

    def render_traceback(self) -> list[str]:
        """The remote traceback as plain lines, headed by the engine id.

        A file name that is a cell of this process's IPython shell reads ``Cell In[n]``, as in
        IPython's own tracebacks.
        """
        eid = self.engine_id if self.engine_id is not None else "?"
        header = f"[{eid}:{self.engine_info.get('method', 'apply')}]: "  # ipyparallel's "[0:execute]: "
        lines = [_cell_names(line) for line in (self.traceback or f"{self.ename}: {self.evalue}").splitlines()]
        return [header + lines[0], *lines[1:]] if lines else [header + self.ename]

    def print_traceback(self) -> None:
        print("\n".join(self.render_traceback()))

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of the (uninteresting) local traceback, in its colours."""
        return _colored(self.render_traceback())

    @classmethod
    def from_content(cls, content: dict[str, Any], engine_info: dict[str, Any] | None = None) -> "RemoteError":
        """Build the local exception from an error reply's content."""
        tb = content.get("traceback", "")
        if isinstance(tb, list):
            tb = "\n".join(tb)
        return cls(content.get("ename", "Error"), content.get("evalue", ""), tb, engine_info)


class CompositeError(RemoteError):
    """Several engines raised; holds every engine's error and shows each one's traceback.

    The summary lists one line per distinct error, then the first :attr:`tb_limit` tracebacks,
    each headed by its engine (``[3:execute]:``), so the user sees the cause without a wall of
    duplicates.
    """

    #: how many engines' tracebacks :meth:`render_traceback` shows in full (set it on the class
    #: or on one error), as in ipyparallel
    tb_limit = 4

    def __init__(self, message: str, elist: list[RemoteError]) -> None:
        first = elist[0] if elist else RemoteError("Error", message)
        super().__init__(first.ename, first.evalue, first.traceback, first.engine_info)
        self.msg = message
        self.elist = elist
        self.args = (message, elist)

    def __str__(self) -> str:
        """One line per distinct error, naming every engine that raised it."""
        groups: dict[tuple[str, str], list[str]] = {}
        for err in self.elist:
            groups.setdefault((err.ename, err.evalue), []).append(str(err.engine_id))
        lines = [self.msg]
        for (ename, evalue), engines in groups.items():
            lines.append(f"[{','.join(engines)}] {ename}: {evalue}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"CompositeError({len(self.elist)} engine errors)"

    def render_traceback(self, excid: int | None = None) -> list[str]:
        """The summary, then engine ``excid``'s traceback, or the first :attr:`tb_limit` ones."""
        lines = [str(self)]
        shown = [self.elist[excid]] if excid is not None else self.elist[: max(self.tb_limit, 0)]
        for err in shown:
            lines.append("")
            lines.extend(err.render_traceback())
        if excid is None and len(self.elist) > len(shown):
            lines += ["", f"... {len(self.elist) - len(shown)} more traceback(s): e.print_traceback(i) shows engine i's"]
        return lines

    def _render_traceback_(self) -> list[str]:
        return _colored(self.render_traceback())

    def print_traceback(self, excid: int | None = None) -> None:
        print("\n".join(self.render_traceback(excid)))

    def raise_exception(self, excid: int = 0) -> None:
        """Raise the ``excid``-th engine's error on its own."""
        raise self.elist[excid]


# "  File "<name>", line 3, in f" as the traceback module writes a frame
_FRAME = re.compile(
    r'^(?P<indent>\s*)(?:File "(?P<file>[^"]+)"|(?P<cell>Cell In\[\d+\])), line (?P<line>\d+)(?:, in (?P<name>.+))?$'
)
# an exception line: "ZeroDivisionError: division by zero" or "pkg.Error" (optionally after "[0] ")
_EXC_LINE = re.compile(r"^(?P<head>\[[^\]]*\] )?(?P<ename>[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Warning))(?P<rest>:.*)?$")
_ANSI = {"file": "\x1b[32m", "line": "\x1b[32m", "name": "\x1b[36m", "ename": "\x1b[1;31m", "reset": "\x1b[0m"}


def _shell() -> Any:
    """This process's IPython shell, if IPython is imported and one is running."""
    import sys

    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def _cell_names(line: str) -> str:
    """``File "<ipython-input-3-…>", line 2`` as IPython writes it: ``Cell In[3], line 2``."""
    m = _FRAME.match(line)
    if m is None or m["file"] is None:
        return line
    shell = _shell()
    count = getattr(getattr(shell, "compile", None), "_filename_map", {}).get(m["file"])
    if count is None:
        return line
    tail = f", in {m['name']}" if m["name"] else ""
    return f"{m['indent']}Cell In[{count}], line {m['line']}{tail}"


def _colored(lines: list[str]) -> list[str]:
    """``lines`` with frames and the exception name coloured, if the IPython shell uses colours.

    Engines always send plain text, so what a user captures or prints never holds escape codes;
    colour is added here, following the colour setting of the shell that shows the error.
    """
    shell = _shell()
    scheme = str(getattr(shell, "colors", "nocolor")).lower()
    if shell is None or scheme == "nocolor":
        return lines
    c = _ANSI
    out = []
    for line in lines:
        m = _FRAME.match(line)
        if m is not None:
            tail = f", in {c['name']}{m['name']}{c['reset']}" if m["name"] else ""
            where = m["cell"] or f'File "{m["file"]}"'
            line = f'{m["indent"]}{c["file"]}{where}{c["reset"]}, line {c["line"]}{m["line"]}{c["reset"]}{tail}'
        else:
            e = _EXC_LINE.match(line)
            if e is not None:
                line = f"{e['head'] or ''}{c['ename']}{e['ename']}{c['reset']}{e['rest'] or ''}"
        out.append(line)
    return out


class AlreadyDisplayedError(RemoteError):
    """A remote error whose traceback ``%px`` has already shown with the engine's output."""


def wrap_exception(engine_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Describe the exception being handled as error-reply content (used by engine and controller)."""
    import sys
    import traceback as tb_mod

    etype, evalue, tb = sys.exc_info()
    assert etype is not None
    content: dict[str, Any] = {
        "status": "error",
        "ename": etype.__name__,
        "evalue": str(evalue),
        "traceback": "".join(tb_mod.format_exception(etype, evalue, tb)),
    }
    if engine_info is not None:
        content["engine_info"] = engine_info
    return content


def error_content(exc: BaseException) -> dict[str, Any]:
    """Error-reply content for ``exc`` without a traceback (for controller-side refusals)."""
    return {"status": "error", "ename": type(exc).__name__, "evalue": str(exc), "traceback": ""}
